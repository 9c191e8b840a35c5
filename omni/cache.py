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

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint_path(path: str | Path) -> str:
    """Content fingerprint of a file, or of every file under a folder (names and bytes)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        h = hashlib.sha256()
        for sub in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(sub.relative_to(path)).encode())
            h.update(file_sha256(sub).encode())
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


def write_json_atomic(path: Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)
