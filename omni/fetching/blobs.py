"""The content-addressed blob store for downloads: ``blobs/<sha[:2]>/<sha256><ext>``.

Files are named by their content, never by their URL; a download lands under a temporary
name and is renamed into place when complete, so a blob is always whole.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..runtime.atomic import write_atomic


def blob_path(blobs: Path, sha: str, ext: str) -> Path:
    return Path(blobs) / sha[:2] / f"{sha}{ext}"


def store_download(blobs: Path, tmp_file: str, sha: str, ext: str) -> Path:
    """Move a finished download into the store (the same bytes may already be there)."""
    final = blob_path(blobs, sha, ext)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp_file, final)
    return final


def store_resized_jpeg(blobs: Path, sha: str, image, short_side: int) -> Path:
    """A re-encoded copy of an image at ``short_side`` (kept beside the original)."""
    final = Path(blobs) / sha[:2] / f"{sha}_s{short_side}.jpg"
    if not final.exists():
        write_atomic(final, lambda p: image.save(p, "JPEG", quality=95))
    return final
