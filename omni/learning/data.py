"""Datasets over the frame store: target clips, auxiliary web samples, class resampling."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..config import MIN_CROP, AugmentConfig
from ..video.framestore import FrameStore
from .pseudo_clip import warp_grids, warp_quads

MEAN, STD = 0.45, 0.225


def temporal_indices(t: int, n: int, train: bool, rng: np.random.Generator, offset: float = 0.5) -> np.ndarray:
    """TSN segment sampling: one index per equal segment, random in training, at ``offset`` else."""
    if t == n:
        return np.arange(n)
    edges = np.linspace(0, t, n + 1)
    pos = edges[:-1] + (rng.random(n) if train else offset) * (edges[1:] - edges[:-1])
    return np.clip(pos.astype(int), 0, t - 1)


def consecutive_indices(t: int, n: int, train: bool, rng: np.random.Generator, offset: float = 0.5) -> np.ndarray:
    """``n`` neighbouring frames: from a random start in training, else the start at ``offset``
    of the possible starts (0.5: the centre); a clip shorter than ``n`` repeats its last frame."""
    if t <= n:
        return np.minimum(np.arange(n), t - 1)
    start = int(rng.integers(0, t - n + 1)) if train else int(round(offset * (t - n)))
    return start + np.arange(n)


def crop_box(h: int, w: int, train: bool, rng: np.random.Generator, position: float = 0.5
             ) -> tuple[int, int, int, int]:
    """``(y, x, ch, cw)``: a random scale-and-aspect crop in training, else a square crop at
    ``position`` along the long side."""
    short = min(h, w)
    if train:
        side = max(1, int(short * rng.uniform(MIN_CROP, 1.0)))
        ch, cw = side, max(1, min(w, int(side * rng.uniform(0.85, 1.18))))
        ch = min(h, ch)
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
    else:
        ch = cw = short
        y = int(round((h - ch) * (position if h > w else 0.5)))
        x = int(round((w - cw) * (position if w > h else 0.5)))
    return y, x, ch, cw


@dataclass(frozen=True)
class InputPolicy:
    """How stored frames become a model's input (a model's ``frame_sampling``, ``resize`` and
    ``normalize``) and, in training, how they are augmented (``train.augment``, or None)."""

    frame_sampling: str = "segments"
    resize: str = "crop"
    normalize: str = "dataset"
    augment: AugmentConfig | None = None
    mean: tuple[float, float, float] | None = None  # normalize "weights": the pretrained weights' own
    std: tuple[float, float, float] | None = None

    @classmethod
    def of(cls, m, augment: AugmentConfig | None = None) -> "InputPolicy":
        if m.normalize != "weights":
            return cls(m.frame_sampling, m.resize, m.normalize, augment)
        from .pretrained import weights_input

        w = weights_input(m.pretrained)
        return cls(m.frame_sampling, m.resize, m.normalize, augment, w.mean, w.std)

    def indices(self, t: int, n: int, train: bool, rng: np.random.Generator, offset: float = 0.5) -> np.ndarray:
        pick = consecutive_indices if self.frame_sampling == "consecutive" else temporal_indices
        return pick(t, n, train, rng, offset)

    def box(self, h: int, w: int, train: bool, rng: np.random.Generator, position: float = 0.5
            ) -> tuple[int, int, int, int]:
        return (0, 0, h, w) if self.resize == "squash" else crop_box(h, w, train, rng, position)


LEGACY = InputPolicy()  # what omni's models read before the input policy was declared


def _crop_to_unit(crop: np.ndarray, size: int) -> torch.Tensor:
    """uint8[T, ch, cw, 3] (already cropped) -> float[3, T, size, size] in [0, 1].

    The crop is resized while still uint8 (torch's vectorised uint8 bilinear path, antialiased,
    on the channels-last view of the frames), then converted: converting the full-size crop to
    float first made loading a clip ~5x slower, and the data path a tenth of a small model's step."""
    a = np.ascontiguousarray(crop)
    if not a.flags.writeable:  # a whole read-only stored sample: torch wants its own copy
        a = a.copy()
    x = torch.from_numpy(a).permute(0, 3, 1, 2)  # channels-last uint8
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.permute(1, 0, 2, 3).float().mul_(1 / 255)


def finish_input(x: torch.Tensor, policy: InputPolicy, train: bool, rng: np.random.Generator) -> torch.Tensor:
    """float[3, T, S, S] in [0, 1] -> the model's input: normalised (per clip, with the dataset's
    fixed statistics, or with the pretrained weights' per-channel mean and std), then in training
    augmented by ``policy.augment`` (a shift of the whole clip with replicate padding, per-channel
    gain, a brightness offset, Gaussian noise; mirroring is drawn by the dataset, which also swaps
    labels)."""
    if policy.normalize == "clip":
        x = _standardise(x)
    elif policy.normalize == "weights":
        x = x.sub_(torch.tensor(policy.mean).view(3, 1, 1, 1)).div_(torch.tensor(policy.std).view(3, 1, 1, 1))
    else:
        x = x.sub_(MEAN).mul_(1 / STD)
    aug = policy.augment
    if not train or aug is None:
        return x.contiguous()
    size = x.shape[-1]
    pad = int(round(aug.shift * size))
    if pad > 0:
        dy, dx = (int(v) for v in rng.integers(-pad, pad + 1, 2))
        if dy or dx:
            padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")  # [3, T, S+2p, S+2p]
            x = padded[..., pad + dy:pad + dy + size, pad + dx:pad + dx + size].contiguous()
    if aug.gain > 0:
        x.mul_(torch.from_numpy(rng.uniform(1 - aug.gain, 1 + aug.gain, 3).astype(np.float32)).view(3, 1, 1, 1))
    if aug.brightness > 0:
        x.add_(float(rng.uniform(-aug.brightness, aug.brightness)))
    if aug.noise > 0:
        x = x.contiguous()
        x.view(-1).add_(noise_slice(x.numel(), rng), alpha=aug.noise)
    return x.contiguous()


NOISE_BANK_SIZE = 1 << 22  # standard normal values drawn once per process (16 MB)
_noise_bank: torch.Tensor | None = None


def noise_slice(n: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` standard normal values for a clip's Gaussian-noise augmentation: a slice of a bank
    drawn once per process, at an offset drawn from ``rng`` (a clip longer than the bank gets
    fresh draws). Drawing ``n`` normals for every clip took about a quarter of a training clip's
    load time; the slice is free. Within a clip the values are independent standard normals, as
    before; two clips may share shifted stretches of the bank, which an augmentation does not
    mind."""
    global _noise_bank
    if n > NOISE_BANK_SIZE:
        gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        return torch.randn(n, generator=gen)
    if _noise_bank is None:
        _noise_bank = torch.randn(NOISE_BANK_SIZE, generator=torch.Generator().manual_seed(20261207))
    start = int(rng.integers(0, NOISE_BANK_SIZE - n + 1))
    return _noise_bank[start:start + n]


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """Each channel of a clip (float[3, T, H, W]) to zero mean and unit standard deviation (+0.05,
    so a flat clip is not blown up). Sums rather than ``torch.std``, which took 0.55 ms of a
    clip's 0.8 ms here."""
    flat = x.reshape(3, -1)
    n = flat.shape[1]
    s1, s2 = flat.sum(1), (flat * flat).sum(1)  # float32: pixels in [0, 1], ample precision here
    mean = s1 / n
    std = ((s2 - n * mean * mean).clamp_(min=0) / max(1, n - 1)).sqrt_()
    return x.sub_(mean.view(3, 1, 1, 1)).div_((std + 0.05).view(3, 1, 1, 1))


def warped_input(still: np.ndarray, n: int, strength: float, size: int, train: bool, rng: np.random.Generator,
                 position: float = 0.5, policy: InputPolicy = LEGACY) -> torch.Tensor:
    """A still (uint8[H, W, 3]) as a perspective-warped ``n``-frame pseudo-clip, already cropped
    (or squashed), resized and normalised (float[3, n, size, size]). The same random draws in the
    same order as ``to_input(warp_clip(still))``, but each output pixel is sampled straight from
    the still in one ``grid_sample``: no full-size warped frames are made and then cropped (~4x faster)."""
    h, w = still.shape[:2]
    q0, q1 = warp_quads(h, w, strength, rng)
    y, x, ch, cw = policy.box(h, w, train, rng, position)
    xs = x + (np.arange(size) + 0.5) * cw / size - 0.5  # output pixel centres, in the still's pixels
    ys = y + (np.arange(size) + 0.5) * ch / size - 0.5
    grid = warp_grids(h, w, q0, q1, n, xs, ys)
    img = torch.from_numpy(np.array(still)).permute(2, 0, 1).float()[None].expand(n, -1, -1, -1)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return finish_input(out.permute(1, 0, 2, 3).mul_(1 / 255), policy, train, rng)


def to_input(frames: np.ndarray, size: int, train: bool, rng: np.random.Generator, position: float = 0.5,
             policy: InputPolicy = LEGACY) -> torch.Tensor:
    """uint8[T, H, W, 3] -> normalised float[3, T, size, size]. The crop is cut from the uint8
    frames before anything else, so only the cropped pixels are copied and converted."""
    y, x, ch, cw = policy.box(frames.shape[1], frames.shape[2], train, rng, position)
    return finish_input(_crop_to_unit(frames[:, y:y + ch, x:x + cw], size), policy, train, rng)


@contextlib.contextmanager
def one_thread():
    """Run a clip's small tensor ops on one intra-op thread. Loading in the training process
    (0 loader workers) otherwise splits every crop/normalise op over all compute threads, and
    each such op then waits on a thread barrier: on a busy 2-core machine that made a clip
    ~15x slower to load (75 ms vs 5 ms). Loader workers already run with one thread."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def shrink_for_input(frames: np.ndarray, size: int) -> np.ndarray:
    """A still (uint8[1, H, W, 3]) area-resized so that the smallest training crop (70% of the
    short side) still covers ``size`` pixels: warping and cropping then touch only the pixels
    that reach the model (a 320 px still is warped ~12x faster for a 64 px input)."""
    from PIL import Image

    from ..video.decode import scaled_size

    h, w = frames.shape[1:3]
    target = int(np.ceil(size / MIN_CROP))
    if min(h, w) <= target:
        return np.asarray(frames)  # a jpeg-coded still is decoded here; a raw one stays a view
    im = Image.fromarray(np.ascontiguousarray(frames[0])).resize(scaled_size(w, h, target), Image.BOX)
    return np.asarray(im)[None]


class ClipDataset(Dataset):
    """Samples grouped into units: a unit is one item; each visit picks one of its samples
    (an untrimmed video visits one of its kept windows at random, as in the paper)."""

    def __init__(self, samples: pd.DataFrame, root: Path, *, num_frames: int, size: int, train: bool,
                 pseudo_clip: str = "warp", warp_strength: float = 0.08, seed: int = 0,
                 image_frames: int | None = None, group_by_item: bool = True, soft_weight: float = 0.0,
                 policy: InputPolicy = LEGACY, class_names: list[str] | None = None):
        """``samples`` rows address frames by ``shard`` relative to ``root`` (the workdir).

        ``policy`` says how frames become the model's input and how training clips are augmented;
        with ``policy.augment.flip`` a training clip is mirrored at random, and a mirrored clip of
        a class in ``flip_label_map`` is learned as its pair (``class_names`` names the labels).

        With ``soft_weight`` > 0 and a ``judge_probs`` column (a probability vector over the
        classes, or missing), a sample's training target is ``(1 - soft_weight) x`` its label's
        one-hot vector ``+ soft_weight x`` its judge's probabilities (a float vector; the plain
        label where the row has none)."""
        self.store = FrameStore(root)
        self.rows = samples.reset_index(drop=True)
        key = self.rows["item_id"] if group_by_item else self.rows["sample_id"]
        self.units = [np.asarray(ix) for ix in self.rows.groupby(key, sort=False).indices.values()]
        self.labels = np.array([int(self.rows.at[u[0], "label"]) for u in self.units])
        self.num_frames, self.size, self.train = num_frames, size, train
        self.pseudo_clip, self.warp_strength = pseudo_clip, warp_strength
        self.image_frames = image_frames if image_frames is not None else num_frames
        self.seed = seed
        self.policy = policy
        aug = policy.augment
        self.flip = bool(train and aug is not None and aug.flip)
        self.flip_to = np.arange(int(self.labels.max()) + 1 if len(self.labels) else 0)
        if self.flip and aug.flip_label_map:
            index = {c: i for i, c in enumerate(class_names or [])}
            n = max(len(index), len(self.flip_to))
            self.flip_to = np.arange(n)
            for a, b in aug.flip_label_map:
                if a not in index or b not in index:
                    raise ValueError(f"train.augment.flip_label_map: {a!r} / {b!r} is not a class")
                self.flip_to[index[a]], self.flip_to[index[b]] = index[b], index[a]
        self.epoch = 0
        self._calls = 0
        self._cols = {c: self.rows[c].to_numpy() for c in ("shard", "offset", "t", "h", "w")}
        self.soft_weight = soft_weight if soft_weight > 0 and "judge_probs" in self.rows.columns else 0.0
        self.judge = ([None if not isinstance(p, (list, np.ndarray)) else np.asarray(p, np.float32)
                       for p in self.rows["judge_probs"]] if self.soft_weight else None)
        sizes = {len(p) for p in self.judge or () if p is not None}
        if self.judge is not None and not sizes:  # nothing to blend with
            self.soft_weight, self.judge = 0.0, None
        self._num_classes = max(sizes, default=0)

    @classmethod
    def for_model(cls, samples: pd.DataFrame, root: Path, m, *, train: bool, augment: AugmentConfig | None = None,
                  **options) -> "ClipDataset":
        """A dataset shaped for model config ``m`` (its frames per clip, input size and input
        policy), augmented in training by ``augment``."""
        return cls(samples, root, num_frames=m.num_frames, size=m.input_size, train=train,
                   policy=InputPolicy.of(m, augment if train else None), **options)

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
        return self.store.read(c["shard"][row], c["offset"][row], c["t"][row], c["h"][row], c["w"][row],
                               min_side=self.size)

    def load(self, idx: int, rng: np.random.Generator, t_offset: float = 0.5, position: float = 0.5
             ) -> torch.Tensor:
        with one_thread():
            return self._load(idx, rng, t_offset, position)[0]

    def _load(self, idx: int, rng: np.random.Generator, t_offset: float, position: float
              ) -> tuple[torch.Tensor, int, bool]:
        """The unit's input clip, the row it came from, and whether it was mirrored."""
        unit = self.units[idx]
        row = int(unit[rng.integers(len(unit))]) if self.train else int(unit[0])
        x = self._load_row(row, rng, t_offset, position)
        flipped = self.flip and rng.random() < 0.5
        return (x.flip(-1) if flipped else x), row, flipped

    def _load_row(self, row: int, rng: np.random.Generator, t_offset: float, position: float) -> torch.Tensor:
        frames = self.frames(row)  # a read-only view of the memory-mapped shard: nothing read yet
        p = self.policy
        if frames.shape[0] == 1:  # a still as a pseudo-clip
            still = shrink_for_input(frames, self.size)
            n = self.image_frames
            # (a still under 2 px on a side has no quadrilateral to warp: ingest refuses such
            # images, but a frame store made before that rule may hold one)
            if self.pseudo_clip == "warp" and n > 1 and self.warp_strength > 0 and min(still.shape[1:3]) > 1:
                return warped_input(still[0], n, self.warp_strength, self.size, self.train, rng, position, p)
            # replicated: the frame's crop, repeated (what cropping n equal frames gives)
            return to_input(still, self.size, self.train, rng, position, p).expand(-1, n, -1, -1).contiguous()
        # only the chosen frames' crop is read from the store and converted
        idx = p.indices(frames.shape[0], self.num_frames, self.train, rng, t_offset)
        y, x, ch, cw = p.box(frames.shape[1], frames.shape[2], self.train, rng, position)
        return finish_input(_crop_to_unit(frames[idx, y:y + ch, x:x + cw], self.size), p, self.train, rng)

    def __getitem__(self, idx: int):
        with one_thread():
            x, row, flipped = self._load(idx, self._rng(idx), 0.5, 0.5)
        if not self.soft_weight:
            label = int(self.labels[idx])
            return x, int(self.flip_to[label]) if flipped else label
        target = self.soft_target(idx, row)
        if flipped:  # the mirrored clip's classes: pairs in flip_label_map swap places (an involution)
            perm = np.arange(len(target))
            perm[:len(self.flip_to)] = self.flip_to[:len(target)]
            target = target[torch.from_numpy(perm)]
        return x, target

    def soft_target(self, idx: int, row: int) -> torch.Tensor:
        """Unit ``idx``'s training target when its clip came from ``row``: its label's one-hot
        vector blended with the row's judge probabilities (``soft_weight``)."""
        probs = self.judge[row]
        target = np.zeros(self._num_classes, np.float32)
        target[int(self.labels[idx])] = 1.0
        if probs is not None:
            target = (1.0 - self.soft_weight) * target + self.soft_weight * probs / max(float(probs.sum()), 1e-12)
        return torch.from_numpy(target.astype(np.float32))


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
