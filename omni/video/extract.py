"""Extract: ingested items -> resized frames in a sharded frame store + ``samples.parquet``.

Target clips and web videos become one sample each (frames at ``fps`` over the whole clip, at
most ``max_frames_per_clip``; or ``frames_per_clip`` frames spread over it when ``fps`` is null); web images become one-frame samples (the unified form is made at training
time); untrimmed videos are cut into consecutive fixed-length windows, one sample each, with
``start_s``/``end_s``. Work is split into chunks of items; each chunk writes one shard and
then one part file, so a rerun skips finished chunks. Source files are only read.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..config import ExtractConfig
from .decode import DecodeError, Window, decode_windows, load_image
from ..runtime.diskspace import is_disk_full
from ..runtime.atomic import write_parquet_atomic
from ..runtime.fanout import map_shards
from .framestore import ShardWriter
from .media import DEFAULT_MAX_VIDEO_PIXELS

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = ["item_id", "split", "source", "kind", "label", "sample_id", "clip_index", "start_s", "end_s",
                  "status", "reason", "shard", "offset", "t", "h", "w"]


def plan_windows(duration_s: float, window_s: float, stride_s: float,
                 shots: list[tuple[float, float]] | None = None, *,
                 frame_times: list[float] | None = None, min_frames: int = 2) -> list[Window]:
    """Consecutive windows over each shot (or the whole video); a tail shorter than half a
    window is dropped unless it is all there is. With ``frame_times`` (the frames the file
    really holds) a window holding fewer than ``min_frames`` of them is dropped, so a long gap
    between frames (a variable-frame-rate file that claims an hour) makes no windows."""
    spans = shots or [(0.0, duration_s)]
    out = []
    for s0, s1 in spans:
        length = s1 - s0
        if length <= 0:
            continue
        if length <= window_s:
            out.append(Window(s0, s1))
            continue
        n = int(math.floor((length - window_s) / stride_s)) + 1
        for k in range(n):
            out.append(Window(s0 + k * stride_s, s0 + k * stride_s + window_s))
        covered_to = s0 + (n - 1) * stride_s + window_s
        if s1 - covered_to >= 0.5 * window_s:  # an uncovered tail of at least half a window
            out.append(Window(s0 + n * stride_s, s1))
    if frame_times is not None and out:
        times = np.sort(np.asarray(frame_times, dtype=float))
        held = (np.searchsorted(times, [w.end_s for w in out], "left")
                - np.searchsorted(times, [w.start_s for w in out], "left"))
        out = [w for w, k in zip(out, held) if k >= min_frames]
    return out


def frames_per_window(windows: list[Window], ecfg: ExtractConfig) -> int:
    """Frames stored per window of one video: ``fps`` x the longest window's length (at least 1, at
    most ``max_frames_per_clip``), or ``frames_per_clip`` when ``fps`` is null."""
    if ecfg.fps is None:
        return ecfg.frames_per_clip
    longest = max((w.end_s - w.start_s for w in windows), default=0.0)
    return int(min(ecfg.max_frames_per_clip, max(1, round(longest * ecfg.fps))))


def _extract_chunk(chunk_id: str, items: list[dict], cfg: dict, root: str,
                   max_pixels: int | None = DEFAULT_MAX_VIDEO_PIXELS) -> str:
    """Worker: decode one chunk of items into one shard; returns the part file's path. No video
    frame of more than ``max_pixels`` is decoded (the item fails with that reason)."""
    ecfg = ExtractConfig(**cfg)
    root = Path(root)
    writer = ShardWriter(root / "frames", chunk_id, codec=ecfg.frame_codec, quality=ecfg.jpeg_quality)
    rows = []
    try:
        for item in items:
            base = {k: item[k] for k in ("item_id", "split", "source", "kind", "label")}
            try:
                if item["kind"] == "image":
                    frames = [load_image(item["path"], ecfg.short_side)]
                    windows = [Window(0.0, 0.0)]
                else:
                    windows = _windows_for(item, ecfg, max_pixels)
                    frames = decode_windows(item["path"], windows, frames_per_window(windows, ecfg), ecfg.short_side,
                                            backend=ecfg.backend, max_pixels=max_pixels)
                for ci, (win, arr) in enumerate(zip(windows, frames)):
                    ref = writer.append(arr)
                    rows.append({**base, "sample_id": f"{item['item_id']}#{ci}", "clip_index": ci,
                                 "start_s": win.start_s if item["kind"] == "untrimmed" else np.nan,
                                 "end_s": win.end_s if item["kind"] == "untrimmed" else np.nan,
                                 "status": "ok", "reason": getattr(windows, "note", ""), **ref})
            except Exception as exc:  # a bad item is recorded, never fatal for the chunk
                if is_disk_full(exc):  # our disk, not the item: the chunk stops, its shard is dropped
                    raise
                reason = str(exc) if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {exc}"
                rows.append({**base, "sample_id": f"{item['item_id']}#0", "clip_index": 0,
                             "start_s": np.nan, "end_s": np.nan, "status": "failed",
                             "reason": f"decode failed: {reason[:200]}", "shard": "", "offset": 0,
                             "t": 0, "h": 0, "w": 0})
        writer.close()
    except BaseException:
        writer.abort()
        raise
    part = root / "parts" / f"{chunk_id}.parquet"
    write_parquet_atomic(pd.DataFrame(rows), part)
    return str(part)


def _windows_for(item: dict, ecfg: ExtractConfig, max_pixels: int | None = DEFAULT_MAX_VIDEO_PIXELS) -> list[Window]:
    """The windows to decode: at most ``max_duration_s`` of the video, only where frames exist,
    at most ``max_windows_per_video`` (evenly spread); ``.note`` of the result says what was cut."""
    from .decode import WindowPlan, evenly_spaced, frame_times

    duration = float(item["duration_s"])
    limit = min(duration, ecfg.max_duration_s) if math.isfinite(duration) else ecfg.max_duration_s
    notes = [f"duration cut at {limit:g} s of {duration:g} s"] if limit < duration else []
    if item["kind"] != "untrimmed":
        return WindowPlan([Window(0.0, limit)], "; ".join(notes))
    shots = None
    if ecfg.shot_split:
        from .shots import detect_shots

        found = detect_shots(item["path"], ecfg.shot_threshold, max_pixels=max_pixels)
        shots = [(s0, min(s1, limit)) for s0, s1 in found if s0 < limit]
    times = frame_times(item["path"], limit)
    planned = plan_windows(limit, item["window_s"], item["stride_s"], shots)
    real = plan_windows(limit, item["window_s"], item["stride_s"], shots, frame_times=times)
    if not real:
        raise DecodeError(f"no window holds 2 or more frames ({len(times or [])} frames in {limit:g} s)")
    if len(real) < len(planned):
        notes.append(f"{len(planned) - len(real)} of {len(planned)} windows dropped: no frames")
    kept = evenly_spaced(real, ecfg.max_windows_per_video)
    if len(kept) < len(real):
        notes.append(f"kept {len(kept)} of {len(real)} windows")
    return WindowPlan(kept, "; ".join(notes))


def _chunk_done(out_dir: Path, chunk_id: str) -> bool:
    """Whether a chunk of an earlier (killed) run can be reused: its part file reads as Parquet and
    its shard holds every byte the part refers to (raw: exactly their sum). A damaged chunk's files
    are deleted, so it is decoded again."""
    from .framestore import SUFFIX

    part = out_dir / "parts" / f"{chunk_id}.parquet"
    if not part.exists():
        return False
    shards = [out_dir / "frames" / f"{chunk_id}{suffix}" for suffix in SUFFIX.values()]
    try:
        rows = pd.read_parquet(part, columns=["status", "offset", "t", "h", "w"])
        ok = rows[rows["status"] == "ok"]
        shard = next((p for p in shards if p.exists()), None)
        size = shard.stat().st_size if shard is not None else 0
        if ok.empty:
            why = ""
        elif shard is None:
            why = "its frame shard is missing"
        elif shard.suffix == SUFFIX["raw"]:
            need = int((ok["t"] * ok["h"] * ok["w"] * 3).sum())
            why = f"{shard.name} holds {size} of {need} bytes" if size != need else ""
        else:
            why = f"{shard.name} ends before its last sample" if size <= int(ok["offset"].max()) else ""
    except Exception as exc:  # a half-written or foreign part file
        why = f"{part.name} is unreadable ({type(exc).__name__})"
    if not why:
        return True
    log.warning("extract: chunk %s is damaged (%s): decoding it again", chunk_id, why)
    for p in (part, *shards):
        p.unlink(missing_ok=True)
    return False


def estimate_bytes(rows: pd.DataFrame, ecfg: ExtractConfig, window_s: float | None = None,
                   stride_s: float | None = None) -> int:
    """About how many bytes the frame store of the usable ``rows`` (an ingest table) takes: each
    sample's frames at the stored size (``raw``), or a fifteenth of that (``jpeg``: a low guess,
    so that a refusal means it clearly does not fit)."""
    from .decode import scaled_size

    total = 0
    for r in rows[rows["status"] == "ok"].to_dict("records"):
        try:
            w, h = scaled_size(int(r["width"]), int(r["height"]), ecfg.short_side)
        except (TypeError, ValueError, KeyError):
            continue
        if r["kind"] == "image":
            frames = 1
        else:
            duration = min(float(r.get("duration_s") or 0.0), ecfg.max_duration_s)
            if r["kind"] == "untrimmed" and window_s:
                n = max(1, int((duration - window_s) // (stride_s or window_s)) + 1 if duration > window_s else 1)
                frames = min(n, ecfg.max_windows_per_video) * frames_per_window([Window(0.0, window_s)], ecfg)
            else:
                frames = frames_per_window([Window(0.0, duration)], ecfg)
        total += frames * w * h * 3
    return total if ecfg.frame_codec == "raw" else total // 15


def target_work(targets: pd.DataFrame) -> list[dict]:
    """Extraction jobs for the usable target clips (train and val)."""
    return [{"item_id": r["item_id"], "split": r["split"], "source": "target", "kind": "video",
             "label": int(r["label"]), "path": r["path"], "duration_s": r["duration_s"]}
            for r in targets[targets["status"] == "ok"].to_dict("records")]


def source_work(items: pd.DataFrame, window_s: float | None = None, stride_s: float | None = None) -> list[dict]:
    """Extraction jobs for the usable items of one crawl list."""
    return [{"item_id": r["item_id"], "split": "web", "source": r["source"], "kind": r["kind"],
             "label": int(r["label"]), "path": r["path"], "duration_s": r.get("duration_s"),
             "window_s": window_s, "stride_s": stride_s}
            for r in items[items["status"] == "ok"].to_dict("records")]


def default_window_s(targets: pd.DataFrame) -> float:
    """Untrimmed windows as long as the median target train clip (10 s if there is none)."""
    dur = targets.loc[(targets["split"] == "train") & (targets["status"] == "ok"), "duration_s"]
    return float(np.median(dur)) if len(dur) else 10.0


def extract_items(work: list[dict], out_dir: Path, store_prefix: str, ecfg: ExtractConfig, workers: int = 1,
                  progress: Callable[[int, int], None] | None = None, scheduler: str | None = None,
                  max_pixels: int | None = DEFAULT_MAX_VIDEO_PIXELS) -> dict:
    """Decode every job into ``out_dir/frames`` and write ``out_dir/samples.parquet``.

    ``shard`` in the samples table is ``<store_prefix>/frames/<shard id>``: a path relative to
    the folder that readers open the frame store at (the workdir), so samples from several
    extract units can be read through one store. With ``scheduler`` the chunks run on that Dask
    cluster (omni/runtime/fanout.py); the frame store and table are the same either way. No video frame of
    more than ``max_pixels`` (``ingest.max_video_pixels``) is decoded."""
    out_dir = Path(out_dir)
    (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    chunks = [work[i:i + ecfg.shard_items] for i in range(0, len(work), ecfg.shard_items)]
    chunk_ids = [f"shard-{i:05d}" for i in range(len(chunks))]
    todo = [(cid, ch) for cid, ch in zip(chunk_ids, chunks) if not _chunk_done(out_dir, cid)]
    for stale in (out_dir / "frames").glob(".*.tmp"):
        stale.unlink()
    started = time.time()
    done = len(chunks) - len(todo)
    if progress:
        progress(done, len(chunks))
    cfg_dict = ecfg.model_dump()

    def finished(_part: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, len(chunks))

    map_shards(_extract_chunk, [(cid, ch, cfg_dict, str(out_dir), max_pixels) for cid, ch in todo], finished,
               scheduler=scheduler, workers=workers, name=f"extract {store_prefix}")
    parts = [pd.read_parquet(out_dir / "parts" / f"{cid}.parquet") for cid in chunk_ids]
    samples = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SAMPLE_COLUMNS)
    has_shard = samples["shard"].astype(str) != ""
    samples.loc[has_shard, "shard"] = f"{store_prefix}/frames/" + samples.loc[has_shard, "shard"].astype(str)
    samples = samples.rename(columns={"status": "extract_status", "reason": "extract_reason"})
    write_parquet_atomic(samples, out_dir / "samples.parquet")
    elapsed = time.time() - started
    ok = samples[samples["extract_status"] == "ok"]
    return {
        "samples": int(len(ok)),
        "failed_items": int((samples["extract_status"] == "failed").sum()),
        "frames": int(ok["t"].sum()) if len(ok) else 0,
        "bytes": int(sum(p.stat().st_size for p in (out_dir / "frames").glob("shard-*")
                         if p.suffix in (".bin", ".jpgs"))),
        "elapsed_s": round(elapsed, 2),
    }
