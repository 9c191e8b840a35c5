"""The pipeline: eight stages, each run unit by unit, every unit cached by a key of exactly what
it reads. A reader's map:

- ``layout.py``: the stages, their units and folders, which units read which (``upstream``);
- ``keys.py``: what each unit reads (``unit_settings``) and its cache key (``Keys``);
- ``runner.py``: running a unit unless done, the workdir's ownership and lock, torchrun ranks,
  and ``run_pipeline``, the one loop the CLI, the flows and the tests use;
- one module per stage body (``ingest.py`` ... ``evaluate.py``, each a ``body(unit)``), with the
  first round's cross-fitted students in ``crossfit.py`` and the second round in
  ``second_round.py`` (both reached from ``train.py``); ``score.rescore`` is the one scoring
  that the score stage and the second round share;
- ``unit.py``: what a body gets (``Unit``); ``checks.py``: a config's problems before any run;
  ``retry.py``: ``omni ingest --retry-failed``.

The library's work (fetching, decoding, training, the filter's rules) lives in the modules of
``omni`` these call; nothing here imports Prefect.
"""
from .checks import check_config
from .keys import RUNTIME_ONLY, Keys, runtime_settings, soft_target_sources, unit_settings
from .layout import (FETCH_VERSION, GPU_STAGES, HELP, RANKED_STAGES, RUNS, STAGES, STAGES_BEFORE_TRAINING, STARTED,
                     VERSIONS, WORKDIR_MARKER, StageError, StageResult, all_units, downloads_dir, read_metrics, runs,
                     stage_dir, teacher_kinds, units, upstream)
from .retry import retry_failed
from .runner import (claim_workdir, iter_pipeline, run_body_on_ranks, run_pipeline, run_stage, run_unit, summarise,
                     workdir_lock)
from .unit import Unit, require, run_options

__all__ = [
    "FETCH_VERSION", "GPU_STAGES", "HELP", "RANKED_STAGES", "RUNS", "RUNTIME_ONLY", "STAGES",
    "STAGES_BEFORE_TRAINING", "STARTED", "VERSIONS", "WORKDIR_MARKER", "Keys", "StageError", "StageResult", "Unit",
    "all_units", "check_config", "claim_workdir", "downloads_dir", "iter_pipeline", "read_metrics", "require",
    "retry_failed", "run_body_on_ranks", "run_options", "run_pipeline", "run_stage", "run_unit", "runs",
    "runtime_settings", "soft_target_sources", "stage_dir", "summarise", "teacher_kinds", "unit_settings", "units",
    "upstream", "workdir_lock",
]
