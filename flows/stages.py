"""One Prefect flow per stage; each only loads the config and calls the omni library.

GPU stages run inside a task tagged ``gpu`` so that a tag concurrency limit
(``prefect concurrency-limit create gpu 1``) throttles them without slowing downloads.
"""
from __future__ import annotations

import time

from flows import env

env.apply()

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_progress_artifact, update_progress_artifact  # noqa: E402
from prefect.logging import get_run_logger  # noqa: E402

from omni import stages  # noqa: E402
from omni.config import load_config  # noqa: E402
from omni.progress import TextProgress  # noqa: E402


class _ArtifactProgress:
    """A Prefect progress artifact fed by the library's (done, total) callback, throttled."""

    def __init__(self, stage: str):
        self.stage = stage
        self.id = None
        self.last = 0.0
        self.text = TextProgress(stage)

    def __call__(self, done: int, total: int) -> None:
        self.text(done, total)
        pct = 100.0 * done / total if total else 100.0
        now = time.monotonic()
        try:
            if self.id is None:
                self.id = create_progress_artifact(progress=pct, description=f"{self.stage} progress")
            elif now - self.last >= 1.0 or done >= total:
                update_progress_artifact(self.id, progress=pct)
            else:
                return
        except Exception:  # progress display must never fail a stage
            return
        self.last = now


def _retry_unless_user_error(task, task_run, state) -> bool:
    """Retry transient failures; a bad config, list or missing upstream stage will not heal."""
    from omni.config import ConfigError
    from omni.lists import ListError

    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, (ConfigError, ListError, stages.StageError))


def _log(results) -> None:
    logger = get_run_logger()
    for r in results if isinstance(results, list) else [results]:
        logger.info("%s: %s (%s)", r.stage, "cache hit" if r.cached else "done", r.key[:12])


def _cfg(config_path: str, overrides: list[str] | None):
    return load_config(config_path, overrides or [])


@task(name="ingest-items", retries=1, retry_delay_seconds=5, retry_condition_fn=_retry_unless_user_error)
def ingest_task(config_path: str, overrides: list[str] | None = None):
    return stages.run_ingest(_cfg(config_path, overrides), _ArtifactProgress("ingest"))


@task(name="extract-frames", retries=1, retry_delay_seconds=5, retry_condition_fn=_retry_unless_user_error)
def extract_task(config_path: str, overrides: list[str] | None = None):
    return stages.run_extract(_cfg(config_path, overrides), _ArtifactProgress("extract"))


@task(name="train-teachers", tags=["gpu"])
def teacher_task(config_path: str, overrides: list[str] | None = None):
    return stages.run_teacher(_cfg(config_path, overrides), _ArtifactProgress("teacher"))


@task(name="score-items", tags=["gpu"])
def score_task(config_path: str, overrides: list[str] | None = None):
    return stages.run_score(_cfg(config_path, overrides), _ArtifactProgress("score"))


@task(name="filter-items")
def filter_task(config_path: str, overrides: list[str] | None = None):
    return stages.run_filter(_cfg(config_path, overrides))


@task(name="write-manifest")
def manifest_task(config_path: str, overrides: list[str] | None = None):
    return stages.run_manifest(_cfg(config_path, overrides))


@task(name="train-student", tags=["gpu"])
def train_task(config_path: str, overrides: list[str] | None = None, run: str | None = None):
    return stages.run_train(_cfg(config_path, overrides), run, _ArtifactProgress(f"train {run or ''}".strip()))


@task(name="evaluate-model", tags=["gpu"])
def evaluate_task(config_path: str, overrides: list[str] | None = None, run: str | None = None):
    return stages.run_evaluate(_cfg(config_path, overrides), run)


def _stage_flow(name: str, t):
    @flow(name=name, log_prints=True)
    def _f(config_path: str, overrides: list[str] | None = None):
        res = t(config_path, overrides)
        _log(res)
        return res

    _f.__name__ = f"{name}_flow"
    return _f


ingest_flow = _stage_flow("ingest", ingest_task)
extract_flow = _stage_flow("extract", extract_task)
teacher_flow = _stage_flow("teacher", teacher_task)
score_flow = _stage_flow("score", score_task)
filter_flow = _stage_flow("filter", filter_task)
manifest_flow = _stage_flow("manifest", manifest_task)
train_flow = _stage_flow("train", train_task)
evaluate_flow = _stage_flow("evaluate", evaluate_task)

STAGE_FLOWS = {"ingest": ingest_flow, "extract": extract_flow, "teacher": teacher_flow, "score": score_flow,
               "filter": filter_flow, "manifest": manifest_flow, "train": train_flow, "evaluate": evaluate_flow}
