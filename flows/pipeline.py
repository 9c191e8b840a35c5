"""The whole OmniSource pipeline as one Prefect flow of stage subflows."""
from __future__ import annotations

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
def omnisource(config_path: str, overrides: list[str] | None = None, settings: RunSettings | None = None) -> dict:
    """ingest -> extract -> teacher -> score -> filter -> manifest -> train -> evaluate."""
    overrides = all_overrides(overrides, settings)
    cfg = load_config(config_path, overrides)  # a bad config or override fails here, before any stage
    check_config(cfg)
    for stage_flow in STAGE_FLOWS.values():
        stage_flow(config_path, overrides)
    report = pipeline_report(cfg)
    try:
        create_markdown_artifact(markdown=report_markdown(report), key="omnisource-report",
                                 description="OmniSource run summary")
    except Exception:
        pass
    return report
