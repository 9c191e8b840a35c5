"""Share a machine's cores fairly among the omni runs on it.

Every process running a stage registers a file under ``~/.cache/omni/runs/`` (``OMNI_CACHE_DIR``
moves it) and holds an exclusive lock on it while it lives; a registration whose lock can be
taken belongs to a dead process and is removed. A run's compute threads are its fair share,
``usable cores // live runs`` (less its DataLoader workers), re-checked every few seconds while it
trains, so two runs started side by side (two flow runs on one worker, a run and a test suite)
split the cores instead of oversubscribing them. ``train.threads`` set in the config is a fixed
budget and opts out of sharing.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def registry_dir() -> Path:
    root = Path(os.environ.get("OMNI_CACHE_DIR") or Path.home() / ".cache" / "omni")
    return root / "runs"


def live_runs(folder: Path | None = None) -> int:
    """How many registered processes are alive (each holds its file's lock); stale files are removed."""
    folder = folder or registry_dir()
    n = 0
    for f in folder.glob("*.run"):
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            n += 1  # held: its owner is alive
        else:
            f.unlink(missing_ok=True)  # nobody holds it: its process has gone
        finally:
            os.close(fd)
    return n


class CoreShare:
    """Registers this process for the duration of a ``with`` block and sets torch's thread count
    to its share: ``fixed`` threads when given, else ``usable cores // live runs - reserved``."""

    def __init__(self, fixed: int | None = None, reserved: int = 0, every_s: float = 5.0,
                 folder: Path | None = None):
        self.fixed = fixed
        self.reserved = reserved
        self.every_s = every_s
        self.folder = folder or registry_dir()
        self.fd: int | None = None
        self.path: Path | None = None
        self.threads = 0
        self._checked = 0.0

    def __enter__(self) -> "CoreShare":
        if self.fixed is None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.path = self.folder / f"{os.getpid()}-{time.monotonic_ns()}.run"
                self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:  # an unwritable cache: run alone, as before
                log.debug("core share unavailable (%s): using every core", exc)
                self._close()
        self.apply(force=True)
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None

    def share(self) -> int:
        if self.fixed is not None:
            return self.fixed
        runs = max(1, live_runs(self.folder)) if self.fd is not None else 1
        return max(1, usable_cores() // runs - self.reserved)

    def apply(self, force: bool = False) -> int:
        """Set torch's threads to the current share (at most every ``every_s`` unless forced)."""
        now = time.monotonic()
        if not force and now - self._checked < self.every_s:
            return self.threads
        self._checked = now
        n = self.share()
        if n != self.threads:
            import torch

            torch.set_num_threads(n)
            if self.threads:
                log.info("compute threads %d -> %d (omni runs on this machine share its %d cores)",
                         self.threads, n, usable_cores())
            self.threads = n
        return n
