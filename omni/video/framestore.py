"""A sharded frame store: samples packed into a few large files, raw or JPEG-compressed.

Each shard is written by one worker, to a temporary name renamed when complete. A sample is
addressed by ``(shard, offset, t, h, w)`` kept in the samples manifest; readers memory-map
shards. Two codecs, told apart by the shard's file name:

- ``raw`` (``shard-<id>.bin``): uint8 ``[t, h, w, 3]`` arrays back to back; a clip read is one
  contiguous slice, and a crop touches only its own pixels. ``t * h * w * 3`` bytes per sample
  (8 frames at 320x427: 3.3 MB).
- ``jpeg`` (``shard-<id>.jpgs``): per sample, ``t`` little-endian uint32 frame lengths, then the
  ``t`` JPEG frames; only the frames a clip samples are decoded (Pillow's libjpeg-turbo).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


SUFFIX = {"raw": ".bin", "jpeg": ".jpgs"}


def encode_jpeg_frames(frames: np.ndarray, quality: int) -> bytes:
    """uint8[T, H, W, 3] -> the ``jpeg`` codec's sample blob (frame lengths, then the frames)."""
    import io

    from PIL import Image

    parts = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=quality)
        parts.append(buf.getvalue())
    return np.asarray([len(p) for p in parts], dtype="<u4").tobytes() + b"".join(parts)


class ShardWriter:
    def __init__(self, root: Path, shard: str, codec: str = "raw", quality: int = 90):
        if codec not in SUFFIX:
            raise ValueError(f"unknown frame codec {codec!r} (raw or jpeg)")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard, self.codec, self.quality = shard, codec, quality
        self.final = self.root / f"{shard}{SUFFIX[codec]}"
        self.tmp = self.root / f".{shard}{SUFFIX[codec]}.tmp"
        self._fh = open(self.tmp, "wb")
        self.offset = 0

    def append(self, frames: np.ndarray) -> dict:
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8[T,H,W,3], got {frames.shape}")
        data = frames.tobytes() if self.codec == "raw" else encode_jpeg_frames(frames, self.quality)
        self._fh.write(data)
        ref = {"shard": self.shard, "offset": self.offset, "t": frames.shape[0],
               "h": frames.shape[1], "w": frames.shape[2]}
        self.offset += len(data)
        return ref

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        self._fh.close()
        self.tmp.unlink(missing_ok=True)


class FrameStore:
    """Read samples by reference; shards are memory-mapped lazily (safe across fork)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._maps: dict[str, np.memmap] = {}
        self._pid = os.getpid()

    def __getstate__(self) -> dict:  # loader workers map shards themselves; never pickle the maps
        return {"root": self.root, "_maps": {}, "_pid": -1}

    def _map(self, shard: str) -> tuple[np.memmap, str]:
        if os.getpid() != self._pid:
            self._maps, self._pid = {}, os.getpid()
        m = self._maps.get(shard)
        if m is None:
            for codec, suffix in SUFFIX.items():
                path = self.root / f"{shard}{suffix}"
                if path.exists():
                    m = (np.memmap(path, dtype=np.uint8, mode="r"), codec)
                    break
            else:
                raise FileNotFoundError(f"no frame shard {self.root / shard}.bin or .jpgs")
            self._maps[shard] = m
        return m

    def read(self, shard: str, offset: int, t: int, h: int, w: int, min_side: int | None = None):
        """The sample's frames, ``[t, h, w, 3]``: a memory-mapped view (raw) or frames decoded on
        indexing (jpeg); either way ``np.asarray`` gives the uint8 array. ``min_side``: the pixels
        the caller needs on a crop's short side (jpeg crops may then decode at a reduced scale)."""
        m, codec = self._map(shard)
        t, h, w, offset = int(t), int(h), int(w), int(offset)
        if codec == "raw":
            n = t * h * w * 3
            return np.asarray(m[offset: offset + n]).reshape(t, h, w, 3)
        return JpegFrames(m, offset, t, h, w, min_side)

    def read_row(self, row):
        return self.read(row["shard"], row["offset"], row["t"], row["h"], row["w"])


class JpegFrames:
    """A jpeg-coded sample that looks like a uint8 ``[t, h, w, 3]`` array: indexing decodes only
    the frames the first index selects, then applies the rest (a crop) to them."""

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, buf: np.ndarray, offset: int, t: int, h: int, w: int, min_side: int | None = None):
        self.shape = (t, h, w, 3)
        self.min_side = min_side
        lengths = np.frombuffer(buf[offset: offset + 4 * t].tobytes(), dtype="<u4").astype(np.int64)
        starts = offset + 4 * t + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self._buf, self._starts, self._lengths = buf, starts, lengths

    def __len__(self) -> int:
        return self.shape[0]

    def _scale(self) -> int:
        """The JPEG decoder can scale by 1/2, 1/4, 1/8 almost for free: the largest divisor that
        keeps the short side at least ``min_side`` (1 when no ``min_side`` was given)."""
        if not self.min_side:
            return 1
        short = min(self.shape[1:3])
        return next((d for d in (8, 4, 2) if short / d >= self.min_side), 1)

    def _decode(self, frames: np.ndarray, scale: int = 1) -> np.ndarray:
        import io

        from PIL import Image

        h, w = self.shape[1:3]
        size = (-(-w // scale), -(-h // scale))
        out = np.empty((len(frames), size[1], size[0], 3), np.uint8)
        for k, i in enumerate(frames):
            s, n = int(self._starts[i]), int(self._lengths[i])
            with Image.open(io.BytesIO(self._buf[s: s + n].tobytes())) as im:
                if scale > 1:
                    im.draft("RGB", size)
                    if im.size != size:
                        im = im.resize(size, Image.Resampling.BOX)
                out[k] = np.asarray(im.convert("RGB"))
        return out

    def __getitem__(self, key):
        """Frames first, then the rest of the index. A plain crop (two step-less slices) of a
        sample read with ``min_side`` comes back decoded at a reduced scale: the same region,
        fewer pixels, never fewer than ``min_side`` on the short side."""
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        picked = np.arange(self.shape[0])[first]
        scalar = np.ndim(picked) == 0
        picked = np.atleast_1d(picked)
        scale = self._scale()
        if scale > 1 and len(rest) == 2 and all(isinstance(r, slice) and r.step in (None, 1) for r in rest):
            (y0, y1, _), (x0, x1, _) = (r.indices(n) for r, n in zip(rest, self.shape[1:3]))
            if min(y1 - y0, x1 - x0) >= self.min_side * scale:
                crop = self._decode(picked, scale)[:, y0 // scale: -(-y1 // scale), x0 // scale: -(-x1 // scale)]
                return crop[0] if scalar else crop
        out = self._decode(picked)
        return out[0][rest] if scalar else out[(slice(None), *rest)]

    def __array__(self, dtype=None, copy=None):
        a = self._decode(np.arange(self.shape[0]))
        return a if dtype is None else a.astype(dtype)
