"""What a stage body gets (``Unit``) and the few helpers every body shares."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from .. import cache
from ..config import Config
from ..runtime.cores import CoreShare
from ..runtime.ranks import Ranks
from .keys import Keys
from .layout import StageError, stage_dir

log = logging.getLogger("omni")

Progress = Callable[[int, int], None]


def require(cfg: Config, keys: Keys, unit: str) -> Path:
    """The folder of a done unit that another reads; what to run first when it is not done."""
    d = stage_dir(cfg, unit)
    if not cache.is_done(d, keys[unit]):
        broken = (cache.read_done(d) or {}).get("key") == keys[unit] and cache.damage(d)
        if broken:
            raise StageError(f"{unit}'s outputs are damaged ({broken}): run `omni {unit.split('/')[0]} CONFIG` "
                             f"(or `omni run CONFIG`) to redo it")
        raise StageError(f"{unit} has not run for this config: run `omni {unit.split('/')[0]} CONFIG` "
                         f"(or `omni run CONFIG`) first")
    return d


@dataclass
class Unit:
    """What a unit's body gets: its settings, the runtime knobs, where to read and write."""

    name: str
    part: str
    settings: dict
    runtime: dict
    dir: Path
    workdir: Path
    keys: Keys
    cfg: Config  # for paths only (workdir, lists); bodies read settings from ``settings``
    progress: Progress | None = None
    should_stop: Callable[[], bool] | None = None
    cores: CoreShare = field(default_factory=CoreShare)
    ranks: Ranks = field(default_factory=Ranks)

    def input(self, unit: str) -> Path:
        return require(self.cfg, self.keys, unit)


def target_samples(u: Unit) -> pd.DataFrame:
    """The target clips that survived ingest and extract."""
    s = pd.read_parquet(u.input("extract/target") / "samples.parquet")
    return s[s["extract_status"] == "ok"]


def no_target_clips(split: str) -> StageError:
    """The one error of a stage that finds no usable target clip of ``split``."""
    what = "training" if split == "train" else split
    return StageError(f"no usable target {what} clips: every target {split} item failed ingest or extract "
                      "(their reasons: ingest/target/targets.parquet, extract/target/samples.parquet)")


def run_options(runtime: dict):
    """How fast and where training runs, from the runtime-only settings."""
    from ..learning.train import RunOptions

    return RunOptions(device=runtime["train.device"], checkpoint_every_steps=runtime["train.checkpoint_every_steps"],
                      loader_workers=runtime["train.loader_workers"])


def take_core_share(u: Unit) -> None:
    """Compute threads for this unit: ``train.threads`` when set, else this run's share of the
    machine's cores (omni/runtime/cores.py), re-checked while it trains."""
    u.cores.apply(force=True)


def curve_png(u: Unit, res: dict) -> None:
    from ..reporting.plots import training_curve_png

    val = (res.get("val") or {}).get("top1")
    title = f"{u.name}: {res.get('steps')} steps" + (f", val top-1 {100 * val:.1f}%" if val is not None else "")
    try:
        training_curve_png(res.get("curve") or [], title, u.dir / "curve.png")
    except Exception as exc:  # a picture must never fail the stage
        log.warning("%s: no training curve picture: %s", u.name, exc)
