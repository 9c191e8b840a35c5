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
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .runtime.atomic import write_json_atomic

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
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return "missing"


_content_memo: dict[tuple[str, str], str] = {}

HASH_MEMO = ".omni-hashes.json"  # in the workdir: see ``HashMemo``


class HashMemo:
    """sha256 of files, remembered across runs by ``(size, mtime_ns)`` in a JSON file.

    Cache keys must follow a file's bytes, not its timestamps: a target set copied to a GPU worker
    (``cp -r``, a tar archive, a restore from backup) has new mtimes and the same content, and must
    not redo every stage. A file whose size and mtime match its entry is not read again; any other
    is hashed (once) and its entry replaced. Files that are not regular files (a FIFO, a device)
    or larger than ``max_bytes`` are never read: their fingerprint is their type or
    ``size:mtime_ns``, and the stage that reads them reports them. A lost or corrupt memo costs
    only re-hashing."""

    def __init__(self, path: str | Path | None, max_bytes: int | None = None):
        self.path = Path(path) if path else None
        self.max_bytes = max_bytes
        self._dirty = False
        self._entries: dict[str, list] = {}
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text())
                if isinstance(data, dict):
                    self._entries = {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 3}
            except (OSError, ValueError):
                pass

    def fingerprint(self, path: str | Path) -> str:
        """``sha256:<hex>`` of a regular file's bytes, or why it was not read (``missing``,
        ``not a regular file``, ``unreadable``, ``large:<size>:<mtime_ns>``)."""
        try:
            st = os.stat(path)
        except (OSError, ValueError):  # ValueError: a NUL byte in the path
            return "missing"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if self.max_bytes is not None and st.st_size > self.max_bytes:
            return f"large:{st.st_size}:{st.st_mtime_ns}"
        name = str(path)
        entry = self._entries.get(name)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return f"sha256:{entry[2]}"
        try:
            sha = file_sha256(path)
        except OSError:
            return "unreadable"
        self._entries[name] = [st.st_size, st.st_mtime_ns, sha]
        self._dirty = True
        return f"sha256:{sha}"

    def save(self) -> None:
        """Write the memo back if it learned something and its folder exists (best effort),
        without the entries of files that no longer exist (a target set that was replaced or
        moved would otherwise keep its old entries forever)."""
        if not self._dirty or self.path is None or not self.path.parent.is_dir():
            return
        self._entries = {k: v for k, v in self._entries.items() if os.path.lexists(k)}
        try:
            write_json_atomic(self.path, self._entries)
            self._dirty = False
        except OSError:
            pass


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


OUTPUTS = "_outputs"  # in the done marker: every output file's size when the unit finished
# an ingest unit's downloads journal and part downloads: checked their own way (torn lines dropped,
# parts deleted at start), and a `--retry-failed` round appends to the journal of a done unit
UNTRACKED_DIRS = frozenset({"journal", "tmp"})


def _outputs(stage_dir: Path) -> dict[str, int]:
    """``{relative path: size}`` of a unit's outputs: its files but omni's markers (``_*``), hidden
    temporaries (``.*``), pictures (``*.png``, drawn for people, read by no unit) and
    ``UNTRACKED_DIRS``."""
    out = {}
    for p in sorted(Path(stage_dir).rglob("*")):
        rel = p.relative_to(stage_dir)
        if rel.parts[0] in UNTRACKED_DIRS or p.name[:1] in "._" or p.suffix == ".png" or not p.is_file():
            continue
        out[rel.as_posix()] = p.stat().st_size
    return out


def read_done(stage_dir: Path) -> dict | None:
    """The done marker's record (its key and the unit's result), without the output sizes."""
    done = _read_marker(stage_dir)
    if done is not None:
        done.pop(OUTPUTS, None)
    return done


def _read_marker(stage_dir: Path) -> dict | None:
    marker = done_marker(stage_dir)
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) else None


def damage(stage_dir: Path) -> str:
    """Why a finished unit's outputs cannot be trusted (an output missing, or of another size than
    when the unit finished: a truncated shard, a half-written Parquet file), or "" when they can.
    A marker from before sizes were recorded is trusted as it is."""
    done = _read_marker(stage_dir) or {}
    recorded = done.get(OUTPUTS)
    if not isinstance(recorded, dict):
        return ""
    for rel, size in recorded.items():
        try:
            now = (Path(stage_dir) / rel).stat().st_size
        except OSError:
            return f"{rel} is missing"
        if now != size:
            return f"{rel} changed size ({now} bytes, {size} when it was written)"
    return ""


def is_done(stage_dir: Path, key: str) -> bool:
    """Done under ``key``, every output as it was written."""
    done = _read_marker(stage_dir)
    return bool(done) and done.get("key") == key and not damage(stage_dir)


def mark_done(stage_dir: Path, key: str, **info: Any) -> None:
    """Record a finished stage atomically (written last, after all outputs), with each output's size."""
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(done_marker(stage_dir), {"key": key, **_canonical(info), OUTPUTS: _outputs(stage_dir)})


def clear_done(stage_dir: Path) -> None:
    done_marker(stage_dir).unlink(missing_ok=True)


def remove_outputs(stage_dir: Path) -> None:
    """Delete a unit's recorded outputs (all of them: one damaged file may be the end of a chunk
    that others refer to) and its done marker, so that the unit is redone from its inputs. An
    ingest unit's journal and downloads stay."""
    done = _read_marker(stage_dir) or {}
    for rel in done.get(OUTPUTS) or {}:
        (Path(stage_dir) / rel).unlink(missing_ok=True)
    clear_done(stage_dir)


