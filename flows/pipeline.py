"""The whole OmniSource pipeline as one Prefect flow: its stages as subflows in this process, or
(``stages_on_pools``) each as a run of its own deployment on its work pool (flows/dispatch.py)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from flows import env

env.apply()

from prefect import flow  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from flows.params import RunSettings, all_overrides  # noqa: E402
from flows.stages import STAGE_FLOWS, run_name  # noqa: E402
from omni.config import load_config  # noqa: E402
from omni.reporting.report import pipeline_report, report_markdown  # noqa: E402
from omni.pipeline import check_config  # noqa: E402


@flow(name="omnisource", flow_run_name=run_name("omnisource"), log_prints=True)
def omnisource(config_path: str, overrides: list[str] | None = None, settings: RunSettings | None = None,
               stages_on_pools: bool = False, worker_wait_s: Annotated[int, Field(ge=1)] = 600) -> dict:
    """ingest -> extract -> teacher -> score -> filter -> manifest -> train -> evaluate.

    Args:
        config_path: the pipeline config (YAML), a path every worker sees
        overrides: config values as key=value, applied after the settings
        settings: the commonly changed settings; empty fields keep the config's values
        stages_on_pools: run each stage as a run of its own deployment on that deployment's work
            pool (ingest, extract, filter, manifest on omni-cpu; teacher, score, train, evaluate on
            omni-gpu); the workdir must be on storage every worker sees. Off: every stage runs
            in this flow run's process.
        worker_wait_s: with stages_on_pools, how long a stage may wait while its pool has no
            online worker before the run fails (seconds)
    """
    overrides = all_overrides(overrides, settings)
    cfg = load_config(config_path, overrides)  # a bad config or override fails here, before any stage
    check_config(cfg)
    if stages_on_pools:
        from flows.dispatch import run_stages_on_pools

        run_stages_on_pools(STAGE_FLOWS, config_path, overrides, worker_wait_s)
    else:
        for stage_flow in STAGE_FLOWS.values():
            stage_flow(config_path, overrides)
    report = pipeline_report(cfg)
    try:
        create_markdown_artifact(markdown=report_markdown(report), key="omnisource-report",
                                 description="OmniSource run summary")
    except Exception:
        pass
    return report
