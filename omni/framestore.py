"""A sharded frame store: samples as raw uint8 arrays packed into a few large files.

Each shard ``shard-<id>.bin`` is written by one worker, to a temporary name renamed when
complete. A sample is addressed by ``(shard, offset, t, h, w)`` kept in the samples
manifest; readers memory-map shards, so a clip read is one contiguous slice.
Footprint: ``t * h * w * 3`` bytes per sample, uncompressed (8 frames at 320x427 is 3.3 MB;
at the demo's 64 short side, 0.1 MB).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class ShardWriter:
    def __init__(self, root: Path, shard: str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard = shard
        self.final = self.root / f"{shard}.bin"
        self.tmp = self.root / f".{shard}.bin.tmp"
        self._fh = open(self.tmp, "wb")
        self.offset = 0

    def append(self, frames: np.ndarray) -> dict:
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8[T,H,W,3], got {frames.shape}")
        self._fh.write(frames.tobytes())
        ref = {"shard": self.shard, "offset": self.offset, "t": frames.shape[0],
               "h": frames.shape[1], "w": frames.shape[2]}
        self.offset += frames.nbytes
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

    def _map(self, shard: str) -> np.memmap:
        if os.getpid() != self._pid:
            self._maps, self._pid = {}, os.getpid()
        m = self._maps.get(shard)
        if m is None:
            m = np.memmap(self.root / f"{shard}.bin", dtype=np.uint8, mode="r")
            self._maps[shard] = m
        return m

    def read(self, shard: str, offset: int, t: int, h: int, w: int) -> np.ndarray:
        n = int(t) * int(h) * int(w) * 3
        buf = self._map(shard)[int(offset): int(offset) + n]
        return np.asarray(buf).reshape(int(t), int(h), int(w), 3)

    def read_row(self, row) -> np.ndarray:
        return self.read(row["shard"], row["offset"], row["t"], row["h"], row["w"])
