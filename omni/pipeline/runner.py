"""Running units: the workdir's ownership and lock, a unit run unless its key is done (resume:
a unit's folder is redone only when omni made it for another key), torchrun ranks, and the
pipeline loop that the CLI, the flows and the tests share."""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .. import cache
from ..runtime import diskspace
from ..runtime.atomic import write_json_atomic
from ..config import Config
from ..runtime.cores import CoreShare
from ..runtime.ranks import Ranks, current as current_ranks
from .evaluate import body as evaluate_body
from .extract import body as extract_body
from .filter import body as filter_body
from .ingest import body as ingest_body
from .keys import Keys, runtime_settings, unit_settings
from .layout import RANKED_STAGES, STAGES, STARTED, WORKDIR_MARKER, StageError, StageResult, stage_dir, units, upstream
from .manifest import body as manifest_body
from .score import body as score_body
from .teacher import body as teacher_body
from .train import body as train_body
from .unit import Progress, Unit, require

log = logging.getLogger("omni")

# each stage's body: a function of its Unit, in the module named after the stage
BODIES: dict[str, Callable[[Unit], dict]] = {
    "ingest": ingest_body, "extract": extract_body, "teacher": teacher_body, "score": score_body,
    "filter": filter_body, "manifest": manifest_body, "train": train_body, "evaluate": evaluate_body,
}


def _is_empty_dir(d: Path) -> bool:
    return d.is_dir() and not any(d.iterdir())


def claim_workdir(cfg: Config) -> Path:
    """Make (or re-open) the workdir; refuse a file, or a non-empty folder omni did not make."""
    wd = Path(cfg.workdir)
    if wd.exists() and not wd.is_dir():
        raise StageError(f"workdir {wd} is a file, not a folder")
    marker = wd / WORKDIR_MARKER
    if wd.is_dir() and not marker.exists() and not _is_empty_dir(wd):
        raise StageError(f"workdir {wd} is not empty and was not made by omni: refusing to write into it "
                         f"(choose an empty or new folder)")
    try:
        wd.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            write_json_atomic(marker, {"made_by": "omni"})
    except OSError as exc:
        raise StageError(f"workdir {wd}: cannot write: {exc.strerror or exc}") from None
    return wd


def _owned(d: Path) -> bool:
    return (d / STARTED).exists() or cache.done_marker(d).exists()


class workdir_lock:
    """Held while a unit runs: one workdir is never worked on by two omni processes at once."""

    def __init__(self, cfg: Config):
        self.path = Path(cfg.workdir) / ".omni-lock"
        self.fh = None

    def __enter__(self) -> "workdir_lock":
        import fcntl

        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise StageError(f"workdir {self.path.parent} is in use by another omni run ({holder}): wait for it "
                             f"to finish or use another workdir") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()}")
        self.fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()  # closing releases the lock


def run_unit(cfg: Config, unit: str, keys: Keys | None = None, progress: Progress | None = None,
             should_stop: Callable[[], bool] | None = None) -> StageResult:
    """Run one unit unless its key is already done; returns what it did."""
    keys = keys or Keys(cfg)
    ranks = current_ranks()
    if ranks.many:  # a torchrun job: rank 0 prepares and records, every rank of a RANKED_STAGES unit works
        return _run_ranked_unit(cfg, unit, keys, progress, should_stop, ranks)
    claim_workdir(cfg)
    with workdir_lock(cfg):
        return _run_unit(cfg, unit, keys, progress, should_stop)


def _run_ranked_unit(cfg: Config, unit: str, keys: Keys, progress: Progress | None,
                     should_stop: Callable[[], bool] | None, ranks: Ranks) -> StageResult:
    stage = unit.partition("/")[0]
    d = stage_dir(cfg, unit)
    if cache.is_done(d, keys[unit]):  # every rank sees the same files: the previous unit ended at a barrier
        ranks.barrier()
        return StageResult(unit, keys[unit], True, cache.read_done(d) or {})
    error = None
    if ranks.main:
        claim_workdir(cfg)
        try:
            with workdir_lock(cfg):
                result = _run_unit(cfg, unit, keys, progress, should_stop, ranks,
                                   prepared=lambda: ranks.barrier() if stage in RANKED_STAGES else None)
        except BaseException as exc:
            error = exc
    else:
        try:
            if stage in RANKED_STAGES:
                ranks.barrier()  # rank 0 has cleared and claimed the unit's folder
                _run_body(cfg, unit, keys, None, should_stop, ranks)
        except BaseException as exc:
            error = exc
    if error is not None:
        raise error  # the others stop at their next collective call when this process exits
    ranks.barrier()  # rank 0 has recorded the unit as done
    return result if ranks.main else StageResult(unit, keys[unit], False, cache.read_done(d) or {})


def _run_unit(cfg: Config, unit: str, keys: Keys, progress: Progress | None,
              should_stop: Callable[[], bool] | None, ranks: Ranks = Ranks(),
              prepared: Callable[[], None] | None = None) -> StageResult:
    stage, _, part = unit.partition("/")
    d = stage_dir(cfg, unit)
    key = keys[unit]
    if cache.is_done(d, key):
        log.info("%s: cache hit (%s)", unit, key[:12])
        return StageResult(unit, key, True, cache.read_done(d) or {})
    if (cache.read_done(d) or {}).get("key") == key:  # done, but an output went missing or changed size
        log.warning("%s: %s: redoing the unit", unit, cache.damage(d))
        cache.remove_outputs(d)
    for up in upstream(cfg, unit):
        require(cfg, keys, up)
    started_file = d / STARTED
    try:
        started = json.loads(started_file.read_text())
    except (OSError, ValueError):
        started = None
    if d.exists() and not _owned(d) and not _is_empty_dir(d):
        raise StageError(f"{d} exists and was not made by omni: move it away, omni will not overwrite it")
    keeps_partial = stage == "ingest"  # the downloads journal outlives list edits
    if d.exists() and not keeps_partial and (started or {}).get("key") != key:
        shutil.rmtree(d)  # omni's own outputs of another config
    d.mkdir(parents=True, exist_ok=True)
    cache.clear_done(d)
    write_json_atomic(started_file, {"key": key})
    log.info("%s: running (%s)", unit, key[:12])
    if prepared:
        prepared()
    nproc = cfg.train.nproc_per_node
    try:
        if nproc > 1 and stage in RANKED_STAGES and not ranks.many:  # torchrun as a child: the ranks run the body
            from ..runtime.launch import run_ranked_body

            info = run_ranked_body(cfg.model_dump(mode="json"), unit, d, nproc, should_stop)
        else:
            info = _run_body(cfg, unit, keys, progress, should_stop, ranks)
        cache.mark_done(d, key, **info)
    except BaseException as exc:  # a full disk is one clear line; what was finished stays for the rerun
        if diskspace.is_disk_full(exc) and not isinstance(exc, diskspace.NoSpace):
            raise diskspace.NoSpace(d, diskspace.wanted_more(d)) from None
        raise
    log.info("%s: %s", unit, summarise(info))
    return StageResult(unit, key, False, info)


def _run_body(cfg: Config, unit: str, keys: Keys, progress: Progress | None,
              should_stop: Callable[[], bool] | None, ranks: Ranks) -> dict:
    stage, _, part = unit.partition("/")
    runtime = runtime_settings(cfg)
    with CoreShare(fixed=runtime["train.threads"], reserved=runtime["train.loader_workers"]) as cores:

        def stop_check() -> bool:  # called every training step: a cheap place to follow the core share
            cores.apply()
            return bool(should_stop and should_stop())

        ctx = Unit(unit, part, unit_settings(cfg, unit), runtime, stage_dir(cfg, unit), Path(cfg.workdir), keys,
                   cfg, progress, stop_check, cores, ranks)
        return BODIES[stage](ctx)


def run_body_on_ranks(cfg: Config, unit: str) -> None:
    """``omni _unit``: one unit's body on every rank of a torchrun job started by omni/runtime/launch.py
    (the parent process prepared the unit and records it); rank 0 leaves the result."""
    from ..runtime.launch import RESULT

    ranks = current_ranks()
    info = _run_body(cfg, unit, Keys(cfg), None, None, ranks)
    if ranks.main:
        write_json_atomic(stage_dir(cfg, unit) / RESULT, info)
    ranks.barrier()


def run_stage(cfg: Config, stage: str, keys: Keys | None = None,
              progress_for: Callable[[str], Progress | None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> list[StageResult]:
    """Run every unit of a stage, in order."""
    return list(iter_pipeline(cfg, [stage], keys, progress_for, should_stop))


def run_pipeline(cfg: Config, progress_for: Callable[[str], Progress | None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[StageResult]:
    """Run every stage in order (done units are cache hits)."""
    return list(iter_pipeline(cfg, None, None, progress_for, should_stop))


def iter_pipeline(cfg: Config, stages: Iterable[str] | None = None, keys: Keys | None = None,
                  progress_for: Callable[[str], Progress | None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> Iterator[StageResult]:
    """The one pipeline loop (the CLI without Prefect, torchrun ranks, ``omni ablate``, the tests):
    every unit of ``stages`` (default: all, in order), each result as its unit ends. The keys are
    computed once for the whole run."""
    keys = keys or Keys(cfg)
    for stage in STAGES if stages is None else stages:
        for u in units(cfg, stage):
            yield run_unit(cfg, u, keys, progress_for(u) if progress_for else None, should_stop)


def summarise(info: dict) -> str:
    """One line of a unit's result for the log."""
    return ", ".join(f"{k} {v}" for k, v in info.items() if not isinstance(v, (dict, list)))
