"""Images as clips for 3D models: frame replication, or the paper's perspective warping.

Warping: frame k shows the image through a homography that moves smoothly from the
identity to a random target, as if the camera panned and tilted. The source quadrilateral
always lies inside the image, so every output pixel samples real image content.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def replicate(frame: np.ndarray, n: int) -> np.ndarray:
    """uint8[H, W, 3] -> uint8[n, H, W, 3]."""
    return np.repeat(frame[None], n, axis=0)


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 matrix mapping the 4 points ``src`` onto ``dst`` (direct linear transform)."""
    a = []
    for (x, y), (u, v) in zip(src, dst):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    h = np.linalg.solve(np.asarray(a, np.float64), dst.reshape(-1).astype(np.float64))
    return np.append(h, 1.0).reshape(3, 3)


def warp_clip(frame: np.ndarray, n: int, strength: float = 0.08, rng: np.random.Generator | None = None
              ) -> np.ndarray:
    """uint8[H, W, 3] -> uint8[n, H, W, 3] under a smooth sequence of random homographies.

    ``strength`` is the largest corner displacement as a fraction of the image size.
    """
    rng = rng or np.random.default_rng()
    h, w = frame.shape[:2]
    if n == 1 or strength == 0:
        return replicate(frame, n)
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float64)
    # start and end quads inside the image; frames interpolate between them (camera motion)
    q0 = corners + inward * rng.uniform(0, strength, (4, 2)) * [w, h]
    q1 = corners + inward * rng.uniform(0, strength, (4, 2)) * [w, h]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])
    grids = []
    for k in range(n):
        a = k / (n - 1)
        quad = (1 - a) * q0 + a * q1
        m = homography(corners, quad)  # output pixel -> source point inside the quad
        src = m @ pts
        sx, sy = src[0] / src[2], src[1] / src[2]
        gx = sx / (w - 1) * 2 - 1
        gy = sy / (h - 1) * 2 - 1
        grids.append(np.stack([gx, gy], -1).reshape(h, w, 2))
    img = torch.from_numpy(np.array(frame, copy=True)).permute(2, 0, 1).float()[None].expand(n, -1, -1, -1)
    grid = torch.from_numpy(np.stack(grids)).float()
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def as_clip(frames: np.ndarray, n: int, mode: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A one-frame sample as an ``n``-frame pseudo-clip; longer samples pass through."""
    if frames.shape[0] != 1:
        return frames
    if mode == "warp":
        return warp_clip(frames[0], n, strength, rng)
    return replicate(frames[0], n)
