"""The extract stage: decode and resize frames and clips into the frame store (omni/video/extract.py)."""
from __future__ import annotations

import pandas as pd

from ..runtime import diskspace
from ..runtime.cores import usable_cores
from .unit import Unit


def body(u: Unit) -> dict:
    from ..config import ExtractConfig
    from ..video.extract import default_window_s, estimate_bytes, extract_items, source_work, target_work
    from ..video.media import DEFAULT_MAX_VIDEO_PIXELS

    ecfg = ExtractConfig(**u.settings["extract"])
    prefix = u.dir.relative_to(u.workdir).as_posix()
    if u.part == "target":
        rows = pd.read_parquet(u.input("ingest/target") / "targets.parquet")
        work = target_work(rows)
        info, window_s, stride_s = {}, None, None
    else:
        items = pd.read_parquet(u.input(f"ingest/{u.part}") / "items.parquet")
        window_s = stride_s = None
        if (items["kind"] == "untrimmed").any():
            window_s = ecfg.window_s or default_window_s(
                pd.read_parquet(u.input("ingest/target") / "targets.parquet"))
            stride_s = ecfg.stride_s or window_s
        work = source_work(items, window_s, stride_s)
        info = {"window_s": window_s, "stride_s": stride_s} if window_s else {}
        rows = items
    need = estimate_bytes(rows, ecfg, window_s, stride_s)  # before decoding: refuse what clearly does not fit
    diskspace.expect(u.dir, need)
    diskspace.require(u.dir, need - diskspace.used_bytes(u.dir), f"{u.name} (frames of {len(work)} items)")
    workers = min(u.runtime["extract.workers"], usable_cores())  # decode processes never exceed the cores
    cap = u.settings.get("max_video_pixels", DEFAULT_MAX_VIDEO_PIXELS)  # ingest.max_video_pixels
    return {**extract_items(work, u.dir, prefix, ecfg, workers=workers, progress=u.progress,
                            scheduler=u.runtime["cluster.scheduler_address"], max_pixels=cap), **info}
