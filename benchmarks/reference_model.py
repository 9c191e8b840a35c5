"""The plain reference of issue 33: a small 3D CNN trained on a world's target clips alone.

Independent of omni on purpose (plain PyTorch + PyAV), implemented exactly as the issue states it,
because it reached 73.8% on an unseen world where omni's defaults then reached 27.3%:

- every clip decoded at 4 fps (the frame shown at each 1/4 s), frames squashed (not cropped) to 64x64;
- 8 consecutive frames (about 2 s): from a random start in training, the centre at evaluation; a
  clip shorter than that repeats its last frame;
- each clip standardised per channel by its own mean and standard deviation (plus 0.05);
- training augmentation: a random shift of up to 6 px (replicate padding), per-channel gain
  x(1 +- 0.125), a brightness offset +-0.2, Gaussian noise 0.05; no mirroring, no time reversal;
- the network: a 4x4 stride-4 patch stem to 24 channels, then 3x3x3 conv-BN-ReLU blocks of 32, 64
  (stride 2 in time and space) and 96 (stride 2 in space) channels, global mean pool, dropout 0.3,
  linear head;
- AdamW lr 3e-3, weight decay 0.05, one-cycle schedule with 10% warm-up, label smoothing 0.1,
  1,000 steps of batch 16.

``web="oracle"`` adds the world's web videos that truly show their query class (from the world's
ground truth: the reference "trained with oracle-clean web videos"), ``web="all"`` every web
video, each labeled with its query, to the training pool (drawn uniformly with the target clips).

    python benchmarks/reference_model.py WORLD_DIR [--steps 1000] [--seed 0] [--web none|oracle|all]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

FPS, SIZE, FRAMES, SHIFT = 4.0, 64, 8, 6


def decode_clip(path: Path, fps: float = FPS, size: int = SIZE) -> np.ndarray:
    """uint8[T, size, size, 3]: the frame on screen at t = 0, 1/fps, 2/fps, ... (at least one),
    each squashed to size x size."""
    import av
    from PIL import Image

    frames, times = [], []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for f in c.decode(stream):
            if f.pts is None:
                continue
            frames.append(f.to_image())
            times.append(float(f.pts * stream.time_base))
    if not frames:
        raise ValueError(f"{path}: no frames")
    times = np.asarray(times) - min(times)
    order = np.argsort(times, kind="stable")
    times = times[order]
    duration = times[-1] + (np.median(np.diff(times)) if len(times) > 1 else 1 / fps)
    grid = np.arange(0.0, duration - 1e-6, 1 / fps)
    pick = np.clip(np.searchsorted(times, grid, side="right") - 1, 0, len(times) - 1)
    return np.stack([np.asarray(frames[order[i]].convert("RGB").resize((size, size), Image.BILINEAR)) for i in pick])


def load_split(world: Path, split: str) -> tuple[list[np.ndarray], torch.Tensor, list[str]]:
    """Clips (uint8[T, 64, 64, 3], T varies) and int labels of ``target/<split>.csv``."""
    names = [n.strip() for n in (world / "classes.txt").read_text().splitlines() if n.strip()]
    rows = pd.read_csv(world / "target" / f"{split}.csv")
    clips = [decode_clip(world / "target" / rel) for rel in rows["path"]]
    return clips, torch.tensor([names.index(lb) for lb in rows["label"]]), names


def load_web_videos(world: Path, which: str, names: list[str]) -> tuple[list[np.ndarray], list[int]]:
    """The world's web videos labeled with their query: all of them, or only those whose ground
    truth is the query class (``oracle``); files that do not decode are skipped."""
    lst = pd.read_json(world / "crawl" / "web_videos.jsonl", lines=True)
    truth = pd.read_parquet(world / "ground_truth.parquet").drop_duplicates("url").set_index("url")
    clips, labels = [], []
    for url, query in zip(lst["url"], lst["query"]):
        rel = url.removeprefix("../")
        if rel not in truth.index or truth.at[rel, "planted"] not in ("", None) or query not in names:
            continue  # bad files, duplicates and leaks are not clean web videos
        if which == "oracle" and truth.at[rel, "true_class"] != query:
            continue
        try:
            clips.append(decode_clip(world / rel))
        except Exception:
            continue
        labels.append(names.index(query))
    return clips, labels


def net(num_classes: int) -> nn.Module:
    def block(cin, cout, k, stride, pad):
        return [nn.Conv3d(cin, cout, k, stride=stride, padding=pad, bias=False), nn.BatchNorm3d(cout),
                nn.ReLU(inplace=True)]
    return nn.Sequential(*block(3, 24, (1, 4, 4), (1, 4, 4), 0), *block(24, 32, 3, 1, 1),
                         *block(32, 64, 3, 2, 1), *block(64, 96, 3, (1, 2, 2), 1),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(96, num_classes))


def clip_input(clip: np.ndarray, train: bool, rng: np.random.Generator) -> torch.Tensor:
    """uint8[T, 64, 64, 3] -> float[3, 8, 64, 64]: 8 consecutive frames, standardised, augmented."""
    t = len(clip)
    start = int(rng.integers(0, t - FRAMES + 1)) if train and t > FRAMES else max(0, (t - FRAMES) // 2)
    idx = np.minimum(start + np.arange(FRAMES), t - 1)
    x = torch.from_numpy(clip[idx]).permute(3, 0, 1, 2).float() / 255
    flat = x.reshape(3, -1)
    x = (x - flat.mean(1).view(3, 1, 1, 1)) / (flat.std(1).view(3, 1, 1, 1) + 0.05)
    if train:
        dy, dx = rng.integers(-SHIFT, SHIFT + 1, 2)
        x = F.pad(x, (SHIFT,) * 4, mode="replicate")[..., SHIFT + dy:SHIFT + dy + SIZE, SHIFT + dx:SHIFT + dx + SIZE]
        x = x * torch.from_numpy(rng.uniform(0.875, 1.125, 3).astype(np.float32)).view(3, 1, 1, 1)
        x = x + float(rng.uniform(-0.2, 0.2))
        x = x + torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32) * 0.05)
    return x.contiguous()


def train_reference(world: Path, steps: int = 1000, batch: int = 16, lr: float = 3e-3, wd: float = 0.05,
                    smoothing: float = 0.1, seed: int = 0, web: str = "none", data=None) -> dict:
    """Train on the target train clips (plus web videos, see ``web``) and report val top-1."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    (xtr, ytr, names), (xva, yva, _) = data or (load_split(world, "train"), load_split(world, "val"))
    pool, labels = list(xtr), [int(v) for v in ytr]
    n_web = 0
    if web != "none":
        wclips, wlabels = load_web_videos(world, web, names)
        pool, labels, n_web = pool + wclips, labels + wlabels, len(wclips)
    labels_t = torch.tensor(labels)
    model = net(len(names))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    model.train()
    for _ in range(steps):
        idx = rng.integers(len(pool), size=batch)
        x = torch.stack([clip_input(pool[i], True, rng) for i in idx])
        loss = F.cross_entropy(model(x), labels_t[idx], label_smoothing=smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    train_s = time.time() - t0
    model.eval()
    with torch.no_grad():
        x = [clip_input(c, False, rng) for c in xva]
        pred = torch.cat([model(torch.stack(x[i:i + 64])).argmax(1) for i in range(0, len(x), 64)])
    return {"top1": float((pred == yva).float().mean()), "train_s": round(train_s, 1), "steps": steps,
            "n_train": len(ytr), "n_web": n_web, "n_val": len(yva), "web": web}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("world", type=Path)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--web", choices=("none", "oracle", "all"), default="none")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(train_reference(a.world, a.steps, a.batch, a.lr, seed=a.seed, web=a.web))
