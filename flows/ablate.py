"""``omni ablate`` as a Prefect flow: the stages up to the manifest (cached), then the ablation
table, published as a table artifact and a markdown artifact with its bar chart."""
from __future__ import annotations

from flows import env

env.apply()

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402

from flows.params import RunSettings, all_overrides  # noqa: E402
from flows.stages import STAGE_FLOWS, ArtifactProgress, run_name  # noqa: E402
from omni import pipeline  # noqa: E402
from omni.config import load_config  # noqa: E402

UPSTREAM = pipeline.STAGES_BEFORE_TRAINING


@task(tags=["gpu"], task_run_name="ablation x {seeds} seeds")
def ablation_task(config_path: str, overrides: list[str], seeds: int):
    from omni.pipeline.ablate import run_ablation

    cfg = load_config(config_path, overrides)
    return run_ablation(cfg, pipeline.Keys(cfg), seeds, progress_for=ArtifactProgress)


@flow(name="ablate", flow_run_name=run_name("ablate"), log_prints=True)
def ablate_flow(config_path: str, overrides: list[str] | None = None, seeds: int = 1,
                settings: RunSettings | None = None) -> list[dict]:
    """Target only, each source, all sources, unfiltered, each practice off: mean and spread."""
    from omni.pipeline.ablate import summary
    from omni.reporting.plots import data_url

    overrides = all_overrides(overrides, settings)
    cfg = load_config(config_path, overrides)
    pipeline.check_config(cfg)
    for name in UPSTREAM:
        STAGE_FLOWS[name](config_path, overrides)
    table = ablation_task(config_path, overrides, seeds)
    out = cfg.workdir / "ablation"
    s = summary(table).reset_index().round(2)
    try:
        create_table_artifact(table=s.to_dict("records"), key="ablation-table",
                              description=f"ablation over {seeds} seed(s) ({cfg.workdir})")
        create_markdown_artifact(markdown=f"### Ablation\n\n{(out / 'ablation.md').read_text()}\n"
                                 f"![ablation]({data_url(out / 'ablation.png')})\n\nFiles: `{out}`\n",
                                 key="ablation-chart", description="ablation table and chart")
    except Exception:  # showing the work must never fail it
        pass
    return s.to_dict("records")
