"""The content-addressed blob store for downloads: ``blobs/<sha[:2]>/<sha256><ext>``.

Files are named by their content, never by their URL; a download lands under a temporary
name and is renamed into place when complete, so a blob is always whole.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from ..runtime.atomic import _tmp_name


def blob_path(blobs: Path, sha: str, ext: str) -> Path:
    return Path(blobs) / sha[:2] / f"{sha}{ext}"


def _into_folder(make, final: Path):
    """``make()``, and again after creating ``final``'s folder if that folder was missing: a
    shard folder is made once, not checked for every item."""
    try:
        return make()
    except FileNotFoundError:
        final.parent.mkdir(parents=True, exist_ok=True)
        return make()


def store_download(blobs: Path, tmp_file: str, sha: str, ext: str) -> Path:
    """Move a finished download into the store (the same bytes may already be there)."""
    final = blob_path(blobs, sha, ext)
    _into_folder(lambda: os.replace(tmp_file, final), final)
    return final


def store_resized_jpeg(blobs: Path, sha: str, image, short_side: int) -> Path:
    """A re-encoded copy of an image at ``short_side`` (kept beside the original), written under
    a temporary name and renamed into place."""
    final = Path(blobs) / sha[:2] / f"{sha}_s{short_side}.jpg"
    if final.exists():
        return final
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95)
    tmp = _tmp_name(final)
    fd = _into_folder(lambda: os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666), final)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getbuffer())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final
