"""Datasets over the frame store: target clips, auxiliary web samples, class resampling."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .framestore import FrameStore
from .pseudo_clip import as_clip

MEAN, STD = 0.45, 0.225


def temporal_indices(t: int, n: int, train: bool, rng: np.random.Generator, offset: float = 0.5) -> np.ndarray:
    """TSN segment sampling: one index per equal segment, random in training, at ``offset`` else."""
    if t == n:
        return np.arange(n)
    edges = np.linspace(0, t, n + 1)
    pos = edges[:-1] + (rng.random(n) if train else offset) * (edges[1:] - edges[:-1])
    return np.clip(pos.astype(int), 0, t - 1)


def spatial_crop(clip: torch.Tensor, size: int, train: bool, rng: np.random.Generator,
                 position: float = 0.5) -> torch.Tensor:
    """``float[T, 3, H, W]`` -> ``[T, 3, size, size]``: random scale-and-aspect crop with
    horizontal flip in training, else a square crop at ``position`` along the long side."""
    t, _, h, w = clip.shape
    short = min(h, w)
    if train:
        side = int(short * rng.uniform(0.7, 1.0))
        ch, cw = side, min(w, int(side * rng.uniform(0.85, 1.18)))
        ch = min(h, ch)
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
    else:
        ch = cw = short
        y = int(round((h - ch) * (position if h > w else 0.5)))
        x = int(round((w - cw) * (position if w > h else 0.5)))
    crop = clip[:, :, y:y + ch, x:x + cw]
    crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    if train and rng.random() < 0.5:
        crop = crop.flip(-1)
    return crop


def to_input(frames: np.ndarray, size: int, train: bool, rng: np.random.Generator, position: float = 0.5
             ) -> torch.Tensor:
    """uint8[T, H, W, 3] -> normalised float[3, T, size, size]."""
    x = torch.from_numpy(np.array(frames, copy=True)).permute(0, 3, 1, 2).float().div_(255)
    x = spatial_crop(x, size, train, rng, position)
    return x.sub_(MEAN).div_(STD).permute(1, 0, 2, 3).contiguous()


class ClipDataset(Dataset):
    """Samples grouped into units: a unit is one item; each visit picks one of its samples
    (an untrimmed video visits one of its kept windows at random, as in the paper)."""

    def __init__(self, samples: pd.DataFrame, root: Path, *, num_frames: int, size: int, train: bool,
                 pseudo_clip: str = "warp", warp_strength: float = 0.08, seed: int = 0,
                 image_frames: int | None = None, group_by_item: bool = True):
        """``samples`` rows address frames by ``shard`` relative to ``root`` (the workdir)."""
        self.store = FrameStore(root)
        self.rows = samples.reset_index(drop=True)
        key = self.rows["item_id"] if group_by_item else self.rows["sample_id"]
        self.units = [np.asarray(ix) for ix in self.rows.groupby(key, sort=False).indices.values()]
        self.labels = np.array([int(self.rows.at[u[0], "label"]) for u in self.units])
        self.num_frames, self.size, self.train = num_frames, size, train
        self.pseudo_clip, self.warp_strength = pseudo_clip, warp_strength
        self.image_frames = image_frames if image_frames is not None else num_frames
        self.seed = seed
        self.epoch = 0
        self._calls = 0
        self._cols = {c: self.rows[c].to_numpy() for c in ("shard", "offset", "t", "h", "w")}

    @classmethod
    def for_model(cls, samples: pd.DataFrame, root: Path, m, *, train: bool, **options) -> "ClipDataset":
        """A dataset shaped for model config ``m`` (its frames per clip and input size)."""
        return cls(samples, root, num_frames=m.num_frames, size=m.input_size, train=train, **options)

    def __len__(self) -> int:
        return len(self.units)

    def _rng(self, idx: int) -> np.random.Generator:
        """Augmentation randomness: reproducible from the seed, different on every visit, and
        different in every loader worker (torch seeds each worker differently)."""
        if not self.train:
            return np.random.default_rng(self.seed * 1_000_003 + idx)
        self._calls += 1
        return np.random.default_rng([self.seed, self.epoch, idx, self._calls, torch.initial_seed() % 2**32])

    def frames(self, row: int) -> np.ndarray:
        c = self._cols
        return self.store.read(c["shard"][row], c["offset"][row], c["t"][row], c["h"][row], c["w"][row])

    def load(self, idx: int, rng: np.random.Generator, t_offset: float = 0.5, position: float = 0.5
             ) -> torch.Tensor:
        unit = self.units[idx]
        row = int(unit[rng.integers(len(unit))]) if self.train else int(unit[0])
        frames = self.frames(row)
        if frames.shape[0] == 1:
            frames = as_clip(frames, self.image_frames, self.pseudo_clip, self.warp_strength, rng)
        else:
            frames = frames[temporal_indices(frames.shape[0], self.num_frames, self.train, rng, t_offset)]
        return to_input(frames, self.size, self.train, rng, position)

    def __getitem__(self, idx: int):
        return self.load(idx, self._rng(idx)), int(self.labels[idx])


def resampling_weights(labels: np.ndarray, power: float | None, cap_per_class: int | None) -> np.ndarray:
    """Per-unit sampling weights: class c drawn with probability proportional to n_c**power
    (power=1: as crawled; small power: flatter), and at most ``cap_per_class`` expected draws
    of a class per epoch when a cap is set."""
    counts = np.bincount(labels, minlength=labels.max() + 1 if len(labels) else 0).astype(np.float64)
    n_c = counts[labels]
    p = power if power is not None else 1.0
    w = n_c ** p / n_c  # each class's total mass is n_c**p
    if cap_per_class is not None:
        mass = np.zeros_like(counts)
        np.add.at(mass, labels, w)
        share = mass / mass.sum() * len(labels)  # expected draws per class per epoch
        scale = np.minimum(1.0, cap_per_class / np.maximum(share, 1e-9))
        w = w * scale[labels]
    return w / w.sum()
