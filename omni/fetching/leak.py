"""Near-duplicate detection against the target validation set.

Each frame is summarised by a 16x16 colour thumbnail, centred and L2-normalised; two frames
match when the cosine similarity of their thumbnails reaches a threshold. Re-encoding,
resizing and small crops barely move such a thumbnail, while unrelated content does.
(The paper compared ImageNet ResNet-50 features; no pretrained weights are fetched here.)
"""
from __future__ import annotations

import base64

import numpy as np
from PIL import Image

THUMB = 16


def thumbnail(frame: "np.ndarray | Image.Image") -> np.ndarray:
    """uint8[16*16*3] summary of one RGB frame (an array or a PIL image)."""
    im = frame if isinstance(frame, Image.Image) else Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(im.resize((THUMB, THUMB), Image.BOX, reducing_gap=2.0), dtype=np.uint8).reshape(-1)


def encode(thumbs: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(thumbs, dtype=np.uint8).tobytes()).decode()


def decode(text: str) -> np.ndarray:
    if not text:
        return np.zeros((0, THUMB * THUMB * 3), np.uint8)
    return np.frombuffer(base64.b64decode(text), np.uint8).reshape(-1, THUMB * THUMB * 3)


def _normalise(thumbs: np.ndarray) -> np.ndarray:
    x = thumbs.astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-6)


def best_matches(query: list[np.ndarray], reference: list[np.ndarray], chunk: int = 256
                 ) -> tuple[np.ndarray, np.ndarray]:
    """For each query item (a stack of frame thumbnails), its most similar reference item.

    An item pair's similarity is the mean, over the query's frames, of each frame's best
    cosine match among the reference item's frames (as is or mirrored left-right, a common
    web edit): every sampled frame must have a twin.
    Returns (similarity, reference index) per query item; -1 where either side is empty.
    """
    sims = np.full(len(query), -1.0, np.float32)
    which = np.full(len(query), -1, np.int64)
    ref_rows = [(i, t) for i, t in enumerate(reference) if len(t)]
    if not ref_rows:
        return sims, which
    ref = _normalise(np.concatenate([t for _, t in ref_rows]))
    starts = np.cumsum([0] + [len(t) for _, t in ref_rows[:-1]])
    ref_ids = np.array([i for i, _ in ref_rows])
    q_items = [i for i, t in enumerate(query) if len(t)]
    for c0 in range(0, len(q_items), chunk):
        ids = q_items[c0:c0 + chunk]
        raw = np.concatenate([query[i] for i in ids])
        mirrored = raw.reshape(-1, THUMB, THUMB, 3)[:, :, ::-1, :].reshape(len(raw), -1)
        q, qm = _normalise(raw), _normalise(mirrored)
        sim = np.maximum(q @ ref.T, qm @ ref.T)
        per_frame = np.maximum.reduceat(sim, starts, axis=1)  # [query frames, reference items]
        bounds = np.cumsum([0] + [len(query[i]) for i in ids])
        per_item = np.add.reduceat(per_frame, bounds[:-1], axis=0) / np.diff(bounds)[:, None]
        best = per_item.argmax(axis=1)
        sims[ids] = per_item[np.arange(len(ids)), best]
        which[ids] = ref_ids[best]
    return sims, which
