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
from prefect.artifacts import (  # noqa: E402
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.logging import get_run_logger  # noqa: E402
from prefect.states import Completed, State  # noqa: E402

from flows.params import RunSettings, all_overrides  # noqa: E402
from omni import pipeline  # noqa: E402
from omni.config import load_config  # noqa: E402
from omni.runtime.progress import TextProgress  # noqa: E402

# Prefect ships the library's records to the UI (PREFECT_LOGGING_EXTRA_LOGGERS=omni) but leaves
# the logger at the root's WARNING level: let its progress lines (loss, ETA, counts) through.
logging.getLogger("omni").setLevel(logging.INFO)


def config_label(config_path) -> str:
    """A config path as run names show it: ``demo/config.yaml``."""
    from pathlib import Path

    p = Path(str(config_path))
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def run_name(stage: str):
    """Flow run names that say what ran on what: ``train · demo/config.yaml``."""

    def name() -> str:
        from prefect.runtime import flow_run

        return f"{stage} · {config_label(flow_run.parameters.get('config_path', ''))}"

    return name


def artifact_key(text: str) -> str:
    """Artifact keys may hold lowercase letters, digits and dashes only."""
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


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
                key = artifact_key("progress-" + self.unit)
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
    from omni.fetching.lists import ListError

    from omni.runtime.diskspace import NoSpace

    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, (ConfigError, ListError, pipeline.StageError, NoSpace))


@task(retries=1, retry_delay_seconds=5, retry_condition_fn=_retry_unless_user_error, task_run_name="{unit}")
def run_unit_task(config_path: str, overrides: list[str] | None, unit: str) -> pipeline.StageResult:
    cfg = load_config(config_path, overrides or [])
    res = pipeline.run_unit(cfg, unit, progress=ArtifactProgress(unit))
    get_run_logger().info("%s: %s (%s)", unit, "cache hit" if res.cached else "done", res.key[:12])
    if res.cached:  # shown as "Cached" in the UI, not as a 1-second "Completed"
        return Completed(name="Cached", message=f"cache hit ({res.key[:12]})", data=res)
    return res


def publish_stage(cfg, stage: str) -> None:
    """The stage's counts as a table artifact and each of its pictures as a markdown artifact with
    the image inline (the UI shows those; an image artifact would print its whole data URL too).
    Keyed, so they are listed on the Artifacts page and keep their history across runs."""
    from omni.reporting.plots import data_url
    from omni.reporting.stage_tables import stage_pictures, stage_table

    logger = get_run_logger()
    try:
        rows = stage_table(cfg, stage)
        if rows:
            create_table_artifact(table=rows, key=artifact_key(f"{stage}-counts"),
                                  description=f"{stage}: what each part of the stage did ({cfg.workdir})")
        for title, png in stage_pictures(cfg, stage):
            create_markdown_artifact(markdown=f"### {title}\n\n![{title}]({data_url(png)})\n\nFile: `{png}`\n",
                                     key=artifact_key(title), description=title)
    except Exception as exc:  # showing the work must never fail it
        logger.warning("%s: artifacts not published: %s", stage, exc)


def _run_stage(stage: str, config_path: str, overrides: list[str] | None,
               settings: RunSettings | None = None) -> list[pipeline.StageResult]:
    overrides = all_overrides(overrides, settings)
    cfg = load_config(config_path, overrides)  # a bad config or override fails here, before any unit
    tags = ["gpu"] if stage in pipeline.GPU_STAGES else []
    results = [run_unit_task.with_options(tags=tags)(config_path, overrides, unit) for unit in pipeline.units(cfg, stage)]
    results = [r.result() if isinstance(r, State) else r for r in results]  # a "Cached" state carries the result
    publish_stage(cfg, stage)
    return results


@task(task_run_name="retry-failed")
def retry_failed_task(config_path: str, overrides: list[str] | None, reasons: list[str] | None) -> list[dict]:
    """Fetch again only the rows that failed for a transient reason (omni/fetching/retry.py)."""
    counts = pipeline.retry_failed(load_config(config_path, overrides or []), reasons)
    for c in counts:
        print(c.line())
    return [c.as_dict() for c in counts]


@flow(name="ingest", flow_run_name=run_name("ingest"), log_prints=True)
def ingest_flow(config_path: str, overrides: list[str] | None = None, settings: RunSettings | None = None,
                retry_failed: bool = False, retry_reasons: list[str] | None = None):
    """Fetch, validate and de-duplicate the target clips and every crawl list. With ``retry_failed``,
    first fetch again only the rows whose download failed for a transient reason (``retry_reasons``:
    only these classes, e.g. ``["timeout", "5xx"]``; empty: all)."""
    if retry_failed:
        retry_failed_task(config_path, all_overrides(overrides, settings), retry_reasons)
    return _run_stage("ingest", config_path, overrides, settings)


@flow(name="extract", flow_run_name=run_name("extract"), log_prints=True)
def extract_flow(config_path: str, overrides: list[str] | None = None, settings: RunSettings | None = None):
    """Decode frames and clips into the frame store."""
    return _run_stage("extract", config_path, overrides, settings)


@flow(name="teacher", flow_run_name=run_name("teacher"), log_prints=True)
def teacher_flow(config_path: str, overrides: list[str] | None = None, settings: RunSettings | None = None):
    """Train the image and video teachers on the target set."""
    return _run_stage("teacher", config_path, overrides, settings)


@flow(name="score", flow_run_name=run_name("score"), log_prints=True)
def score_flow(config_path: str, overrides: list[str] | None = None, settings: RunSettings | None = None):
    """Score every web sample with its teacher."""
    return _run_stage("score", config_path, overrides, settings)


@flow(name="filter", flow_run_name=run_name("filter"), log_prints=True)
def filter_flow(config_path: str, overrides: list[str] | None = None, settings: RunSettings | None = None):
    """Keep the web samples the teacher agrees with."""
    return _run_stage("filter", config_path, overrides, settings)


@flow(name="manifest", flow_run_name=run_name("manifest"), log_prints=True)
def manifest_flow(config_path: str, overrides: list[str] | None = None, settings: RunSettings | None = None):
    """Write the Parquet manifests."""
    return _run_stage("manifest", config_path, overrides, settings)


@flow(name="train", flow_run_name=run_name("train"), log_prints=True)
def train_flow(config_path: str, overrides: list[str] | None = None, settings: RunSettings | None = None):
    """Train the target-only baseline and the OmniSource student."""
    return _run_stage("train", config_path, overrides, settings)


@flow(name="evaluate", flow_run_name=run_name("evaluate"), log_prints=True)
def evaluate_flow(config_path: str, overrides: list[str] | None = None, settings: RunSettings | None = None):
    """Evaluate the trained models on the target val set."""
    return _run_stage("evaluate", config_path, overrides, settings)


STAGE_FLOWS = {"ingest": ingest_flow, "extract": extract_flow, "teacher": teacher_flow, "score": score_flow,
               "filter": filter_flow, "manifest": manifest_flow, "train": train_flow, "evaluate": evaluate_flow}
assert tuple(STAGE_FLOWS) == pipeline.STAGES
