"""A plain reference: a small, well-tuned 3D CNN trained on a world's target clips alone.

Independent of omni on purpose (plain PyTorch + PyAV): it decodes the target train/val videos
listed in ``<world>/target/{train,val}.csv``, keeps ``frames`` frames spread evenly over each clip
(what omni's extract stores), and trains with AdamW, a step-based warmup + cosine schedule, label
smoothing, random resized crops and flips. ``benchmarks/learning_quality.py`` runs it beside omni
so that "the baseline is within a few points of a plain, well-tuned model" is checked side by side.

    python benchmarks/reference_model.py WORLD_DIR [--steps 400] [--seed 0]
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn


def load_split(world: Path, split: str, frames: int = 8) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """uint8[N, T, H, W, 3] clips (even frame spacing, as omni's extract) and int labels."""
    import av

    names = [n.strip() for n in (world / "classes.txt").read_text().splitlines() if n.strip()]
    rows = pd.read_csv(world / "target" / f"{split}.csv")
    clips = []
    for rel in rows["path"]:
        with av.open(str(world / "target" / rel)) as c:
            all_f = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        idx = np.clip(((np.arange(frames) + 0.5) * len(all_f) / frames).astype(int), 0, len(all_f) - 1)
        clips.append(all_f[idx])
    h = min(c.shape[1] for c in clips); w = min(c.shape[2] for c in clips)
    x = torch.from_numpy(np.stack([c[:, :h, :w] for c in clips]))
    y = torch.tensor([names.index(lb) for lb in rows["label"]])
    return x, y, names


def net(num_classes: int, w: int = 24) -> nn.Module:
    """Stride-2 2D stem, then 3x3x3 conv blocks (conv-BN-ReLU, pooled) at 2w, 4w, 4w channels."""
    def blk(cin, cout, k, pool, stride=1):
        return [nn.Conv3d(cin, cout, k, stride=(1, stride, stride), padding=tuple(i // 2 for i in k), bias=False),
                nn.BatchNorm3d(cout), nn.ReLU(inplace=True)] + ([nn.MaxPool3d(pool)] if pool else [])
    return nn.Sequential(*blk(3, w, (1, 5, 5), None, stride=2), *blk(w, 2 * w, (3, 3, 3), (1, 2, 2)),
                         *blk(2 * w, 4 * w, (3, 3, 3), (2, 2, 2)), *blk(4 * w, 4 * w, (3, 3, 3), None),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * w, num_classes))


def batch_input(x: torch.Tensor, size: int, train: bool) -> torch.Tensor:
    """uint8[B, T, H, W, 3] -> float[B, 3, T, size, size]; random crop (70-100% of the short side) + flip."""
    x = x.permute(0, 4, 1, 2, 3).float().div(255).sub(0.45).div(0.225)
    b, c, t, h, w = x.shape
    out = []
    for i in range(b):
        s = int(min(h, w) * (np.random.uniform(0.7, 1.0) if train else 1.0))
        y0 = np.random.randint(0, h - s + 1) if train else (h - s) // 2
        x0 = np.random.randint(0, w - s + 1) if train else (w - s) // 2
        v = x[i, :, :, y0:y0 + s, x0:x0 + s].transpose(0, 1)  # [T, C, s, s]
        v = F.interpolate(v, size=(size, size), mode="bilinear", align_corners=False).transpose(0, 1)
        out.append(v.flip(-1) if train and np.random.rand() < 0.5 else v)
    return torch.stack(out)


def train_reference(world: Path, steps: int = 400, batch: int = 16, lr: float = 2e-3, wd: float = 0.05,
                    width: int = 24, size: int = 48, smoothing: float = 0.1, seed: int = 0,
                    data=None, frames: int = 8) -> dict:
    torch.manual_seed(seed); np.random.seed(seed)
    (xtr, ytr, names), (xva, yva, _) = data or (load_split(world, "train", frames), load_split(world, "val", frames))
    model = net(len(names), width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))))
    t0 = time.time()
    model.train()
    for step in range(steps):
        idx = torch.randint(len(ytr), (min(batch, len(ytr)),))
        loss = F.cross_entropy(model(batch_input(xtr[idx], size, True)), ytr[idx], label_smoothing=smoothing)
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    train_s = time.time() - t0
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(batch_input(xva[i:i + 64], size, False)).argmax(1) for i in range(0, len(yva), 64)])
    return {"top1": float((pred == yva).float().mean()), "train_s": round(train_s, 1), "steps": steps,
            "n_train": len(ytr), "n_val": len(yva)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("world", type=Path)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(train_reference(a.world, a.steps, a.batch, a.lr, width=a.width, seed=a.seed))
