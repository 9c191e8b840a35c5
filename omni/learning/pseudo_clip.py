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
    """3x3 matrix mapping the 4 points ``src`` onto ``dst`` (direct linear transform); ``dst``
    may hold a batch of quads ``[n, 4, 2]``, giving ``[n, 3, 3]`` in one solve."""
    dst = np.asarray(dst, np.float64)
    batch = dst.reshape(-1, 4, 2)
    x, y = np.asarray(src, np.float64).T  # [4]
    u, v = batch[..., 0], batch[..., 1]  # [n, 4]
    n = len(batch)
    one, zero = np.ones((n, 4)), np.zeros((n, 4))
    xs, ys = np.broadcast_to(x, (n, 4)), np.broadcast_to(y, (n, 4))
    rows_u = np.stack([xs, ys, one, zero, zero, zero, -u * xs, -u * ys], -1)  # [n, 4, 8]
    rows_v = np.stack([zero, zero, zero, xs, ys, one, -v * xs, -v * ys], -1)
    a = np.stack([rows_u, rows_v], 2).reshape(n, 8, 8)  # rows interleaved: u0, v0, u1, v1, ...
    h = np.linalg.solve(a, batch.reshape(n, 8)[..., None])[..., 0]
    out = np.concatenate([h, np.ones((n, 1))], 1).reshape(n, 3, 3)
    return out if dst.ndim == 3 else out[0]


def warp_quads(h: int, w: int, strength: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The first and last frame's source quadrilaterals: image corners moved inward by up to
    ``strength`` of the image size (frames in between interpolate: the camera's motion)."""
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float64)
    q0 = corners + inward * rng.uniform(0, strength, (4, 2)) * [w, h]
    q1 = corners + inward * rng.uniform(0, strength, (4, 2)) * [w, h]
    return q0, q1


def warp_grids(h: int, w: int, q0: np.ndarray, q1: np.ndarray, n: int, xs: np.ndarray, ys: np.ndarray
               ) -> torch.Tensor:
    """``grid_sample`` grids ``[n, len(ys), len(xs), 2]`` (align_corners=True): for frame k, where
    each output point (x in ``xs``, y in ``ys``, in the image's pixel coordinates) is sampled
    from under the homography that maps the image onto that frame's quadrilateral."""
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    gy, gx = np.meshgrid(np.asarray(ys, np.float64), np.asarray(xs, np.float64), indexing="ij")
    gx, gy = gx.ravel(), gy.ravel()
    a = np.arange(n) / (n - 1) if n > 1 else np.zeros(1)
    # output pixel -> source point inside the frame's quad; elementwise (a BLAS matmul of this
    # size costs more in thread start-up than in arithmetic)
    quads = (1 - a)[:, None, None] * q0 + a[:, None, None] * q1
    m = homography(corners, quads)[:, :, :, None]  # [n, 3, 3, 1]
    src = m[:, :, 0] * gx + m[:, :, 1] * gy + m[:, :, 2]  # [n, 3, points]
    sx, sy = src[:, 0] / src[:, 2], src[:, 1] / src[:, 2]
    grid = np.stack([sx / (w - 1) * 2 - 1, sy / (h - 1) * 2 - 1], -1)
    return torch.from_numpy(grid.reshape(n, len(ys), len(xs), 2)).float()


def warp_clip(frame: np.ndarray, n: int, strength: float = 0.08, rng: np.random.Generator | None = None
              ) -> np.ndarray:
    """uint8[H, W, 3] -> uint8[n, H, W, 3] under a smooth sequence of random homographies.

    ``strength`` is the largest corner displacement as a fraction of the image size.
    """
    rng = rng or np.random.default_rng()
    h, w = frame.shape[:2]
    if n == 1 or strength == 0:
        return replicate(frame, n)
    q0, q1 = warp_quads(h, w, strength, rng)
    grid = warp_grids(h, w, q0, q1, n, np.arange(w), np.arange(h))
    img = torch.from_numpy(np.array(frame, copy=True)).permute(2, 0, 1).float()[None].expand(n, -1, -1, -1)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def as_clip(frames: np.ndarray, n: int, mode: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A one-frame sample as an ``n``-frame pseudo-clip; longer samples pass through."""
    if frames.shape[0] != 1:
        return frames
    if mode == "warp":
        return warp_clip(frames[0], n, strength, rng)
    return replicate(frames[0], n)
