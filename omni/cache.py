"""The one place that computes stage cache keys and records finished stages.

A stage's key is a hash of its version, its own config section, and fingerprints of its
inputs: the content of user files it reads and the keys of the upstream stages it reads.
Changing one stage's setting changes its key and, through the chain, the keys after it.
A stage is done when ``<stage dir>/_done.json`` holds its current key.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .atomic import write_json_atomic

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def stat_fingerprint(path: str | Path) -> str:
    """``size:mtime_ns`` of a file, or ``missing``."""
    try:
        st = os.stat(path)
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return "missing"


_content_memo: dict[tuple[str, str], str] = {}


def _file_fingerprint(path: Path) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) within one process."""
    memo_key = (str(path), stat_fingerprint(path))
    if memo_key not in _content_memo:
        _content_memo[memo_key] = file_sha256(path)
    return _content_memo[memo_key]


def fingerprint_path(path: str | Path) -> str:
    """Content fingerprint of a file, or of every file under a folder (names and bytes)."""
    path = Path(path)
    if path.is_file():
        return _file_fingerprint(path)
    if path.is_dir():
        h = hashlib.sha256()
        for sub in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(sub.relative_to(path)).encode())
            h.update(_file_fingerprint(sub).encode())
        return h.hexdigest()
    return "missing:" + str(path)


def _canonical(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return _canonical(obj.model_dump(mode="json"))
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def stage_key(stage: str, version: int, settings: Any, inputs: dict[str, str]) -> str:
    """Hash of a stage's name, version, settings and input fingerprints."""
    payload = json.dumps(
        {"stage": stage, "version": version, "settings": _canonical(settings), "inputs": _canonical(inputs)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def done_marker(stage_dir: Path) -> Path:
    return Path(stage_dir) / "_done.json"


def read_done(stage_dir: Path) -> dict | None:
    marker = done_marker(stage_dir)
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def is_done(stage_dir: Path, key: str) -> bool:
    done = read_done(stage_dir)
    return bool(done) and done.get("key") == key


def mark_done(stage_dir: Path, key: str, **info: Any) -> None:
    """Record a finished stage atomically (written last, after all outputs)."""
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(done_marker(stage_dir), {"key": key, **_canonical(info)})


def clear_done(stage_dir: Path) -> None:
    done_marker(stage_dir).unlink(missing_ok=True)


