"""A full disk: refuse big work that clearly does not fit, and stop with one clear line when a
write runs out of space (``NoSpace``), never recording the failure as a bad item.

Every write omni makes goes to a temporary name first (omni/runtime/atomic.py, the frame store's
shards, downloads' ``.part-*`` files), so a write cut short by a full disk leaves nothing a
later run would trust; the same command resumes once space is freed.
"""
from __future__ import annotations

import errno
import math
import os
import shutil
from pathlib import Path

MB = 1_000_000
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class NoSpace(RuntimeError):
    """The disk under ``where`` is full (or would be): ``needed_bytes`` more are wanted."""

    def __init__(self, where: str | Path, needed_bytes: int):
        self.where, self.needed_bytes = str(where), max(0, int(needed_bytes))
        super().__init__(f"no space left on {mount_of(where)} ({self.where}): needs about "
                         f"{max(1, math.ceil(self.needed_bytes / MB))} MB more")


def _existing(path: str | Path) -> Path:
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def mount_of(path: str | Path) -> str:
    """The mount point that holds ``path`` (or its nearest existing parent)."""
    p = _existing(path)
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return str(p)


def free_bytes(path: str | Path) -> int:
    return shutil.disk_usage(_existing(path)).free


def used_bytes(folder: str | Path) -> int:
    """Bytes of the files under ``folder`` (what a resumed unit already wrote)."""
    total = 0
    for p in Path(folder).rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            pass
    return total


_EXPECTED: dict[str, int] = {}  # per process: a running unit's folder -> the bytes it expects to write


def expect(folder: str | Path, nbytes: int) -> None:
    """Say how many bytes a unit's folder will hold when done (for the message if the disk fills)."""
    _EXPECTED[str(Path(folder).absolute())] = int(nbytes)


UNKNOWN_NEED = 16 * MB  # said when a step has no estimate of its own: at least this much


def wanted_more(folder: str | Path) -> int:
    """About how many more bytes a unit whose write ran out of space needs: what it expects to write,
    less what it already wrote and what is free now (at least ``UNKNOWN_NEED`` without an estimate)."""
    expected = _EXPECTED.get(str(Path(folder).absolute()), 0)
    more = expected - used_bytes(folder) - free_bytes(folder) if expected else 0
    return max(more, UNKNOWN_NEED if not expected else MB)


def require(where: str | Path, needed_bytes: int, what: str) -> None:
    """Refuse to start ``what`` when ``needed_bytes`` clearly do not fit in the free space."""
    free = free_bytes(where)
    if needed_bytes > free:
        exc = NoSpace(where, needed_bytes - free)
        exc.args = (f"{exc}: {what} needs about {max(1, math.ceil(needed_bytes / MB))} MB, so it was not started",)
        raise exc


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether an exception (or one it was raised from or during) is a write that ran out of space."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, NoSpace) or (isinstance(exc, OSError) and exc.errno in FULL_ERRNOS):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
