"""Fetch one item and check that it is what its list says: an image or a decodable video.

Never raises: every outcome is a record (``status`` ok / failed with a ``reason``) that the
downloads journal keeps. Leak thumbnails are computed here, from the one decode.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import leak
from .blobs import store_download, store_resized_jpeg
from ..runtime.diskspace import is_disk_full
from .fetch import Fetcher
from ..video.media import (CHECKS_VERSION, DEFAULT_MAX_VIDEO_PIXELS, EXTENSIONS, IMAGE_TYPES, MediaError, check_image,
                    check_video, sniff_file)

THUMB_SIDE = 48


@dataclass(frozen=True)
class ValidateOptions:
    max_image_pixels: int = 50_000_000
    image_short_side: int | None = None
    max_video_pixels: int = 7680 * 4320


VAL_THUMBS = 16  # leak thumbnails per target val clip, spread evenly over its duration (benchmarks/leak_thumbs.py)


def video_thumbs(path: str, duration: float, n: int = 4,
                 max_pixels: int | None = DEFAULT_MAX_VIDEO_PIXELS) -> np.ndarray:
    from ..video.decode import LimitError, Window, decode_windows

    windows = [Window(duration * k / n, duration * (k + 1) / n) for k in range(n)]
    try:
        frames = decode_windows(path, windows, 1, THUMB_SIDE, backend="auto", max_pixels=max_pixels)
    except LimitError as exc:
        raise MediaError(str(exc)) from None
    return np.stack([leak.thumbnail(f[0]) for f in frames])


def _resized(im, short_side: int):
    """A PIL image at ``short_side`` (area averaging, like OpenCV's INTER_AREA); never upscaled."""
    from PIL import Image

    from ..video.decode import scaled_size

    size = scaled_size(im.width, im.height, short_side)
    return im if size == im.size else im.resize(size, Image.BOX)


def _media_facts(info) -> dict:
    return {k: v for k, v in asdict(info).items() if k != "type"}


def fetch_and_validate(fetcher: Fetcher, url: str, kind: str, blobs: Path, opts: ValidateOptions) -> dict:
    """Fetch, sniff, validate and store one web item; returns its journal record."""
    rec: dict = {"url": url, "kind": kind, "status": "ok", "reason": ""}
    got = fetcher.fetch(url)
    rec.update(nbytes=got.nbytes, http_status=got.http_status, tries=got.tries, sha256=got.sha256)
    if not got.ok:
        rec.update(status="failed", reason=got.reason)
        return rec
    rec["checks"] = CHECKS_VERSION
    try:
        ftype = sniff_file(got.path)
        rec["file_type"] = ftype
        if ftype == "empty":
            raise MediaError("empty file")
        if kind == "image":
            info, rgb = check_image(got.path, ftype, opts.max_image_pixels,
                                    decode_short_side=opts.image_short_side or THUMB_SIDE)
            if opts.image_short_side:
                rgb = _resized(rgb, opts.image_short_side)
            thumbs = leak.thumbnail(rgb)[None]
        else:
            if ftype in IMAGE_TYPES:
                raise MediaError(f"not a video: {ftype} image")
            info = check_video(got.path, ftype, max_pixels=opts.max_video_pixels)
            thumbs = video_thumbs(got.path, info.duration_s, max_pixels=opts.max_video_pixels)
        rec.update(_media_facts(info))
        rec["thumbs"] = leak.encode(thumbs)
        rec["path"] = (str(store_download(blobs, got.path, got.sha256, EXTENSIONS.get(ftype, ".bin")))
                       if got.is_temp else got.path)
        if kind == "image" and opts.image_short_side:
            rec["path"] = str(store_resized_jpeg(blobs, got.sha256, rgb, opts.image_short_side))
    except MediaError as exc:
        rec.update(status="failed", reason=str(exc))
    except Exception as exc:
        if is_disk_full(exc):  # our disk, not the item: stop the run (nothing is journaled)
            raise
        rec.update(status="failed", reason=f"validation error: {type(exc).__name__}: {str(exc)[:80]}")
    finally:
        if got.is_temp and os.path.exists(got.path):
            os.unlink(got.path)
    return rec


def validate_target(fetcher: Fetcher, path: str, val: bool, max_video_pixels: int = 7680 * 4320) -> dict:
    """Check one target clip in place (read only); val clips also get leak thumbnails."""
    rec: dict = {"url": path, "kind": "video", "status": "ok", "reason": ""}
    got = fetcher.fetch(path)
    rec.update(sha256=got.sha256, nbytes=got.nbytes)
    if not got.ok:
        rec.update(status="failed", reason=got.reason)
        return rec
    rec["checks"] = CHECKS_VERSION
    try:
        checked = got.path  # the resolved path the fetcher checked
        ftype = sniff_file(checked)
        info = check_video(checked, ftype, max_pixels=max_video_pixels)
        rec.update(_media_facts(info), file_type=ftype, path=checked)
        if val:
            rec["thumbs"] = leak.encode(video_thumbs(checked, info.duration_s, n=VAL_THUMBS,
                                                     max_pixels=max_video_pixels))
            rec["val_thumbs"] = VAL_THUMBS
    except MediaError as exc:
        rec.update(status="failed", reason=str(exc))
    except Exception as exc:
        rec.update(status="failed", reason=f"validation error: {type(exc).__name__}: {str(exc)[:80]}")
    return rec
