"""Evaluate a trained model on the target val clips: multi-view testing.

Video-level accuracy averages ``num_clips`` temporal x spatial views per video (the paper's
multi-view testing); clip-level accuracy judges every view alone.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .data import ClipDataset
from .metrics import classification_metrics, clip_top1
from .predict import predict_views
from .train import load_model


def evaluate_model(model_path: Path, val: pd.DataFrame, root: Path, *, num_clips: int, amp: bool | str = "auto",
                   device: str = "auto", batch_size: int = 32, loader_workers: int = 0) -> dict:
    model, m, class_names = load_model(model_path, device)
    ds = ClipDataset.for_model(val, root, m, train=False)
    views = predict_views(model, ds, batch_size, views=num_clips, amp=amp, loader_workers=loader_workers)
    metrics = classification_metrics(views.mean(axis=1), ds.labels, len(class_names))
    metrics["clip_top1"] = clip_top1(views, ds.labels)
    metrics["per_class_accuracy"] = {class_names[int(c)]: v for c, v in metrics["per_class_accuracy"].items()}
    metrics["class_names"] = class_names
    metrics["views"] = num_clips
    return metrics
