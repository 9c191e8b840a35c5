"""The evaluate stage: each trained model on the target val clips (omni/learning/evaluate.py)."""
from __future__ import annotations

import logging

from ..runtime.atomic import write_json_atomic
from .unit import Unit, no_target_clips, take_core_share, target_samples

log = logging.getLogger("omni")


def body(u: Unit) -> dict:
    from ..learning.evaluate import evaluate_model

    take_core_share(u)
    val = target_samples(u)
    val = val[val["split"] == "val"]
    if val.empty:
        raise no_target_clips("val")
    metrics = evaluate_model(u.input(f"train/{u.part}") / "model.pt", val, u.workdir,
                             num_clips=u.settings["evaluate"]["num_clips"], amp=u.settings["amp"],
                             device=u.runtime["train.device"], batch_size=u.runtime["evaluate.batch_size"],
                             loader_workers=u.runtime["train.loader_workers"])
    metrics["run"] = u.part
    write_json_atomic(u.dir / "metrics.json", metrics)
    from ..reporting.plots import confusion_png

    try:
        confusion_png(metrics["confusion"], metrics["class_names"],
                      f"{u.part}: top-1 {100 * metrics['top1']:.1f}% on {metrics['num_samples']} val clips",
                      u.dir / "confusion.png")
    except Exception as exc:  # a picture must never fail the stage
        log.warning("%s: no confusion matrix picture: %s", u.name, exc)
    return {k: metrics[k] for k in ("top1", "top5", "mean_class_accuracy", "clip_top1", "num_samples")}
