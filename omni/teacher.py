"""Teachers: train on the target set only, then score every web sample.

The 2D teacher (TSN over a timm backbone) scores web images; the 3D teacher scores web
videos and untrimmed windows. Every sample keeps its full probability vector.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .config import Config, ModelConfig
from .data import ClipDataset
from .models import is_2d
from .train import classification_metrics, fit, load_model, predict


def _dataset(samples: pd.DataFrame, store: Path, m: ModelConfig, train: bool, image_frames: int | None = None,
             seed: int = 0) -> ClipDataset:
    return ClipDataset(samples, store, m.num_frames, m.input_size, train, pseudo_clip="replicate",
                       image_frames=image_frames, seed=seed)


def train_teachers(cfg: Config, extract_dir: Path, out_dir: Path, key: str,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    samples = pd.read_parquet(Path(extract_dir) / "samples.parquet")
    samples = samples[samples["status"] == "ok"]
    store = Path(extract_dir) / "frames"
    train = samples[samples["split"] == "train"]
    val = samples[samples["split"] == "val"]
    if train.empty:
        raise ValueError("no usable target training clips: every target train item failed ingest or extract")
    num_classes = len(cfg.class_names())
    needed = {s.kind for s in cfg.sources}
    summary = {}
    for name, m in (("image", cfg.teacher.image), ("video", cfg.teacher.video)):
        if name == "image" and "image" not in needed:
            continue
        if name == "video" and not needed & {"video", "untrimmed"}:
            continue
        ds = _dataset(train, store, m, True, seed=cfg.train.seed)
        res = fit(m, num_classes, ds, Path(out_dir) / name, key=f"{key}:{name}", seed=cfg.train.seed,
                  device=cfg.train.device, amp=cfg.train.amp, progress=progress)
        if len(val):
            model, _ = load_model(Path(out_dir) / name / "model.pt", cfg.train.device)
            vds = _dataset(val, store, m, False)
            probs = predict(model, vds, views=1, amp=cfg.train.amp)
            res["val"] = {k: v for k, v in classification_metrics(probs, vds.labels, num_classes).items()
                          if k in ("top1", "top5", "mean_class_accuracy")}
        summary[name] = res
    (Path(out_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def score_items(cfg: Config, extract_dir: Path, teacher_dir: Path, out_dir: Path,
                progress: Callable[[int, int], None] | None = None) -> dict:
    """Score every web sample; writes ``scores.parquet`` (sample_id, teacher_label, teacher_score, probs)."""
    samples = pd.read_parquet(Path(extract_dir) / "samples.parquet")
    web = samples[(samples["split"] == "web") & (samples["status"] == "ok")].reset_index(drop=True)
    store = Path(extract_dir) / "frames"
    rows = []
    groups = [("image", web[web["kind"] == "image"]), ("video", web[web["kind"] != "image"])]
    total = sum(len(g) for _, g in groups)
    done = 0
    for teacher, part in groups:
        if part.empty:
            continue
        model, m = load_model(Path(teacher_dir) / teacher / "model.pt", cfg.train.device)
        # images go to the 2D teacher as one frame; videos and windows as clips
        image_frames = 1 if is_2d(m.arch) else m.num_frames
        ds = ClipDataset(part, store, m.num_frames, m.input_size, False, pseudo_clip="replicate",
                         image_frames=image_frames, group_by_item=False)
        probs = predict(model, ds, views=1, amp=cfg.train.amp)
        for sid, label, p in zip(part["sample_id"], part["label"], probs):
            rows.append({"sample_id": sid, "teacher": teacher, "teacher_label": int(p.argmax()),
                         "teacher_score": float(p[int(label)]) if label >= 0 else 0.0,
                         "teacher_probs": p.astype(np.float32).tolist()})
        done += len(part)
        if progress:
            progress(done, total)
    out = pd.DataFrame(rows, columns=["sample_id", "teacher", "teacher_label", "teacher_score", "teacher_probs"])
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out.to_parquet(Path(out_dir) / "scores.parquet", index=False)
    return {"scored": len(out)}
