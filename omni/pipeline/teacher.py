"""The teacher stage: train the image and the video teacher on the target clips (omni/learning/teacher.py)."""
from __future__ import annotations

from .unit import Unit, curve_png, no_target_clips, run_options, take_core_share, target_samples


def body(u: Unit) -> dict:
    from ..config import AugmentConfig, ModelConfig
    from ..learning.teacher import train_teacher

    take_core_share(u)
    s = u.settings
    samples = target_samples(u)
    if not (samples["split"] == "train").any():
        raise no_target_clips("train")
    res = train_teacher(ModelConfig(**s["model"]), samples, u.workdir, s["classes"], u.dir,
                        u.keys[u.name], seed=s["seed"], amp=s["amp"], augment=AugmentConfig(**s["augment"]),
                        run=run_options(u.runtime), progress=u.progress, should_stop=u.should_stop)
    if u.ranks.main:
        curve_png(u, res)
    return {k: v for k, v in res.items() if k != "curve"}
