"""One Prefect flow per stage; each loads the config and runs the stage's units as tasks.

A unit (``extract/gg_img``, ``train/baseline``...) is one task run named after it, so the
UI shows what ran and what was a cache hit. GPU stages' tasks are tagged ``gpu`` so that a
tag concurrency limit (``prefect concurrency-limit create gpu 1``) keeps two of them off one GPU.
"""
from __future__ import annotations

import logging
import time

from flows import env

env.apply()

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_progress_artifact, update_progress_artifact  # noqa: E402
from prefect.logging import get_run_logger  # noqa: E402
from prefect.states import Completed, State  # noqa: E402

from omni import stages  # noqa: E402
from omni.config import load_config  # noqa: E402
from omni.progress import TextProgress  # noqa: E402

# Prefect ships the library's records to the UI (PREFECT_LOGGING_EXTRA_LOGGERS=omni) but leaves
# the logger at the root's WARNING level: let its progress lines (loss, ETA, counts) through.
logging.getLogger("omni").setLevel(logging.INFO)


class ArtifactProgress:
    """A Prefect progress artifact fed by the library's (done, total) callback, throttled."""

    def __init__(self, unit: str):
        self.unit = unit
        self.id = None
        self.last = 0.0
        self.text = TextProgress(unit)

    def __call__(self, done: int, total: int) -> None:
        self.text(done, total)
        pct = 100.0 * done / total if total else 100.0
        now = time.monotonic()
        try:
            if self.id is None:
                key = "progress-" + "".join(c if c.isalnum() else "-" for c in self.unit.lower())
                self.id = create_progress_artifact(progress=pct, key=key, description=f"{self.unit} progress")
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


@task(retries=1, retry_delay_seconds=5, retry_condition_fn=_retry_unless_user_error, task_run_name="{unit}")
def run_unit_task(config_path: str, overrides: list[str] | None, unit: str) -> stages.StageResult:
    cfg = load_config(config_path, overrides or [])
    res = stages.run_unit(cfg, unit, progress=ArtifactProgress(unit))
    get_run_logger().info("%s: %s (%s)", unit, "cache hit" if res.cached else "done", res.key[:12])
    if res.cached:  # shown as "Cached" in the UI, not as a 1-second "Completed"
        return Completed(name="Cached", message=f"cache hit ({res.key[:12]})", data=res)
    return res


def _run_stage(stage: str, config_path: str, overrides: list[str] | None) -> list[stages.StageResult]:
    cfg = load_config(config_path, overrides or [])
    tags = ["gpu"] if stage in stages.GPU_STAGES else []
    results = [run_unit_task.with_options(tags=tags)(config_path, overrides, unit) for unit in stages.units(cfg, stage)]
    return [r.result() if isinstance(r, State) else r for r in results]  # a "Cached" state carries the result


@flow(name="ingest", log_prints=True)
def ingest_flow(config_path: str, overrides: list[str] | None = None):
    """Fetch, validate and de-duplicate the target clips and every crawl list."""
    return _run_stage("ingest", config_path, overrides)


@flow(name="extract", log_prints=True)
def extract_flow(config_path: str, overrides: list[str] | None = None):
    """Decode frames and clips into the frame store."""
    return _run_stage("extract", config_path, overrides)


@flow(name="teacher", log_prints=True)
def teacher_flow(config_path: str, overrides: list[str] | None = None):
    """Train the image and video teachers on the target set."""
    return _run_stage("teacher", config_path, overrides)


@flow(name="score", log_prints=True)
def score_flow(config_path: str, overrides: list[str] | None = None):
    """Score every web sample with its teacher."""
    return _run_stage("score", config_path, overrides)


@flow(name="filter", log_prints=True)
def filter_flow(config_path: str, overrides: list[str] | None = None):
    """Keep the web samples the teacher agrees with."""
    return _run_stage("filter", config_path, overrides)


@flow(name="manifest", log_prints=True)
def manifest_flow(config_path: str, overrides: list[str] | None = None):
    """Write the Parquet manifests."""
    return _run_stage("manifest", config_path, overrides)


@flow(name="train", log_prints=True)
def train_flow(config_path: str, overrides: list[str] | None = None):
    """Train the target-only baseline and the OmniSource student."""
    return _run_stage("train", config_path, overrides)


@flow(name="evaluate", log_prints=True)
def evaluate_flow(config_path: str, overrides: list[str] | None = None):
    """Evaluate the trained models on the target val set."""
    return _run_stage("evaluate", config_path, overrides)


STAGE_FLOWS = {"ingest": ingest_flow, "extract": extract_flow, "teacher": teacher_flow, "score": score_flow,
               "filter": filter_flow, "manifest": manifest_flow, "train": train_flow, "evaluate": evaluate_flow}
assert tuple(STAGE_FLOWS) == stages.STAGES
