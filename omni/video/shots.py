"""Shot-boundary detection: a cut is where consecutive frames' colour histograms jump."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .media import DEFAULT_MAX_VIDEO_PIXELS


def _hist(frame: np.ndarray, bins: int = 16) -> np.ndarray:
    q = (frame.reshape(-1, 3) // (256 // bins)).astype(np.int64)
    h = np.concatenate([np.bincount(q[:, c], minlength=bins) for c in range(3)]).astype(np.float32)
    return h / max(1.0, h.sum() / 3)


def detect_shots(path: str | Path, threshold: float = 0.5, min_shot_s: float = 0.5,
                 max_pixels: int | None = DEFAULT_MAX_VIDEO_PIXELS) -> list[tuple[float, float]]:
    """(start_s, end_s) of each shot; a cut where the mean per-channel histogram L1 distance
    between consecutive frames exceeds ``threshold`` (0..2 scale, halved to 0..1). A frame of more
    than ``max_pixels`` is refused by the decoder (``decode.LimitError``)."""
    from .decode import capped_frames, open_video, video_stream

    cuts, times, prev = [0.0], [], None
    with open_video(path) as c:
        s = video_stream(c)
        if s is None:
            return []
        s.thread_type = "AUTO"
        t0 = float(s.start_time * s.time_base) if s.start_time is not None else 0.0
        for f in capped_frames(c, s, max_pixels):
            t = (f.time or 0.0) - t0
            h = _hist(f.reformat(width=32, height=32, format="rgb24").to_ndarray())
            if prev is not None and np.abs(h - prev).sum() / 6 > threshold and t - cuts[-1] >= min_shot_s:
                cuts.append(t)
            prev = h
            times.append(t)
    if not times:
        return []
    step = (times[-1] - times[0]) / max(1, len(times) - 1) if len(times) > 1 else 0.0
    end = times[-1] + step
    bounds = cuts + [end]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
