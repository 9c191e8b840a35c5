"""The train stage: the target-only baseline, the first-round student (one, or two cross-fitted
ones side by side) and the student omni hands over (on the second round's selection)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from .. import cache
from ..runtime.atomic import write_json_atomic
from .crossfit import train_crossfit
from .keys import unit_settings
from .layout import stage_dir, teacher_kinds
from .second_round import select_again
from .unit import Unit, curve_png, no_target_clips, run_options, take_core_share, target_samples

log = logging.getLogger("omni")


def _baseline_is_the_video_teacher(u: Unit, rows: pd.DataFrame) -> Path | None:
    """The done ``teacher/video`` folder when the baseline would repeat exactly its training:
    the same recipe, seed and precision on the same target train clips (omni's defaults use one
    recipe for teachers and students), and no still among the clips (the teacher replicates
    stills, a student may warp them). Its key hashes the same settings and inputs as the
    baseline's, so reusing its model is a cache hit in all but name."""
    t = u.settings["train"]
    if "video" not in teacher_kinds(u.cfg) or (rows["t"] <= 1).any():
        return None
    teacher = unit_settings(u.cfg, "teacher/video")
    if (teacher["model"], teacher["augment"], teacher["seed"], teacher["amp"], teacher["classes"]) != \
            (t["model"], t["augment"], t["seed"], t["amp"], u.settings["classes"]):
        return None
    d = stage_dir(u.cfg, "teacher/video")
    if not cache.is_done(d, u.keys["teacher/video"]) or not (d / "model.pt").exists():
        return None
    return d


def body(u: Unit) -> dict:
    from ..config import TrainConfig
    from ..learning.train import train_student

    take_core_share(u)
    if u.part == "baseline":
        rows = target_samples(u)
        rows = rows[rows["split"] == "train"]
        same = _baseline_is_the_video_teacher(u, rows)
        if same is not None:
            res = {k: v for k, v in json.loads((same / "summary.json").read_text()).items() if k != "val"}
            res.update(same_as="teacher/video", aux_units={}, target_units=len(rows))
            if u.ranks.main:
                shutil.copy2(same / "model.pt", u.dir / "model.pt")
                write_json_atomic(u.dir / "summary.json", res)
                curve_png(u, res)
            u.ranks.barrier()
            log.info("train/baseline: the same training as teacher/video (same recipe, seed and clips): its model reused")
            return {k: v for k, v in res.items() if k != "curve"}
    elif u.settings.get("crossfit"):
        return train_crossfit(u)
    elif u.settings.get("refine"):
        rows, selection = select_again(u)
        if u.settings.get("soft_target_sources"):
            from ..selection.manifest import with_judge_probs

            rows = with_judge_probs(rows, u.dir / "scores.parquet", u.settings["soft_target_sources"])
    else:
        rows = pd.read_parquet(u.input("manifest") / "train.parquet")
    if (rows["source"] == "target").sum() == 0:
        raise no_target_clips("train")
    res = train_student(rows, TrainConfig(**u.settings["train"]), u.settings["classes"], u.workdir, u.dir,
                        u.keys[u.name], run=run_options(u.runtime), progress=u.progress, should_stop=u.should_stop)
    if u.settings.get("refine"):
        res["selection"] = selection
    if u.ranks.main:
        write_json_atomic(u.dir / "summary.json", res)
        curve_png(u, res)
    return {k: v for k, v in res.items() if k != "curve"}
