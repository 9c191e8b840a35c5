"""Teachers: a 2D (image) or 3D (video) model trained on the target set only.

The 2D teacher (TSN over a timm backbone) later scores web images; the 3D teacher scores web
videos and untrimmed windows. Each teacher is its own cached unit (``teacher/image``,
``teacher/video``), trained only when some source needs it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..runtime.atomic import write_json_atomic
from ..runtime.ranks import current
from ..config import AugmentConfig, ModelConfig
from .data import ClipDataset
from .metrics import classification_metrics
from .predict import predict
from .train import RunOptions, fit, load_model

KIND_OF_SOURCE = {"image": "image", "video": "video", "untrimmed": "video"}


def teacher_dataset(samples: pd.DataFrame, root: Path, m: ModelConfig, *, train: bool, seed: int = 0,
                    image_frames: int | None = None, group_by_item: bool = True,
                    augment: AugmentConfig | None = None, class_names: list[str] | None = None) -> ClipDataset:
    return ClipDataset.for_model(samples, root, m, train=train, pseudo_clip="replicate", seed=seed,
                                 image_frames=image_frames, group_by_item=group_by_item, augment=augment,
                                 class_names=class_names)


def train_teacher(mcfg: ModelConfig, target: pd.DataFrame, root: Path, class_names: list[str], out_dir: Path,
                  key: str, *, seed: int, amp: bool | str, run: RunOptions = RunOptions(),
                  augment: AugmentConfig | None = None,
                  progress=None, should_stop=None) -> dict:
    """Train on the target train clips; report accuracy on the target val clips."""
    train = target[target["split"] == "train"]
    val = target[target["split"] == "val"]
    if train.empty:
        raise ValueError("no usable target training clips: every target train item failed ingest or extract")
    tds = teacher_dataset(train, root, mcfg, train=True, seed=seed, augment=augment, class_names=class_names)
    res = fit(mcfg, class_names, tds, out_dir, key,
              seed=seed, amp=amp, run=run, progress=progress, should_stop=should_stop)
    if not current().main:  # a torchrun rank other than 0: rank 0 reports
        return res
    if len(val):
        model, m, _ = load_model(Path(out_dir) / "model.pt", run.device)
        vds = teacher_dataset(val, root, m, train=False)
        probs = predict(model, vds, views=1, amp=amp, loader_workers=run.loader_workers)
        res["val"] = {k: v for k, v in classification_metrics(probs, vds.labels, len(class_names)).items()
                      if k in ("top1", "top5", "mean_class_accuracy")}
        from .metrics import query_auc, teacher_health  # how far from chance: the filter's warning

        res["val"].update(teacher_health(res["val"].get("top1"), query_auc(probs, vds.labels), len(class_names)))
    write_json_atomic(Path(out_dir) / "summary.json", res)
    return res
