"""Stopping on request: a signal becomes an exception that unwinds every stage cleanly.

``Cancelled`` derives from ``BaseException`` so that no per-item ``except Exception`` in a
stage swallows it. On the way out, training writes its checkpoint, ingest and extract cancel
their queued work, and a rerun resumes.
"""
from __future__ import annotations

import signal


class Cancelled(BaseException):
    """The run was asked to stop (SIGTERM, SIGINT, or a cancel request)."""


def _raise(signum, _frame) -> None:
    raise Cancelled(f"stopped by {signal.Signals(signum).name}")


def raise_on_signals() -> None:
    """Make SIGTERM and SIGINT raise ``Cancelled`` in the main thread (the CLI calls this)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _raise)
