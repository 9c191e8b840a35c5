"""Fetch again only the crawl-list rows that failed for a transient reason (``omni ingest --retry-failed``).

A failed download's reason says whether another try can help: a timeout, a 5xx or 429, a reset
or refused connection, a body cut short, a server too slow or a DNS lookup that failed may all
heal; a 404, a wrong file type, a corrupt or too large file, a refused address will not. A retry
round re-fetches the transient failures of the current crawl list (optionally only some
``REASON_CLASSES``), appends their new records to the downloads journal (no other record, row
or download is touched) and, when any record changed, appends the round to ``retried.json``
beside the journal. That file is part of the ingest unit's cache key (``omni.pipeline.Keys``): a round
that changed nothing changes no key, one that repaired rows redoes that source's ingest unit
(from the journal, fetching nothing more) and the units that read it, and no other.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..runtime.atomic import write_json_atomic

log = logging.getLogger(__name__)

RETRIED = "retried.json"  # beside journal.jsonl: the rounds that changed records

# class name -> how its reasons start (fetch.py's wording; "... after N tries" may follow)
REASON_CLASSES: dict[str, tuple[str, ...]] = {
    "timeout": ("timeout",),
    "5xx": tuple(f"http {code}" for code in range(500, 600)),
    "429": ("http 429",),
    "connection": ("connection reset", "connection refused", "connection closed", "connection error",
                   "read error"),
    "truncated": ("truncated download",),
    "slow": ("too slow",),
    "dns": ("dns error",),
}
PERMANENT_DNS = ("dns error: bad host name",)  # a name that can never resolve


def reason_class(reason: str | None) -> str | None:
    """The transient class of a failure reason (``timeout``, ``5xx``, ...), or None when another
    try cannot help (404, wrong type, corrupt, too big, refused...)."""
    text = (reason or "").strip()
    if text.startswith(PERMANENT_DNS):
        return None
    for name, prefixes in REASON_CLASSES.items():
        if any(text == p or text.startswith(p + " ") or text.startswith(p + ":") for p in prefixes):
            return name
    return None


def parse_classes(names: Iterable[str] | None) -> frozenset[str]:
    """The classes a user asked for (none: every transient class). Raises ValueError naming the
    known ones for an unknown name."""
    names = [n.strip().lower() for n in (names or []) if n.strip()]
    if not names or "all" in names:
        return frozenset(REASON_CLASSES)
    unknown = [n for n in names if n not in REASON_CLASSES]
    if unknown:
        raise ValueError(f"unknown retry reason {unknown[0]!r}: choose from {', '.join(REASON_CLASSES)} (or all)")
    return frozenset(names)


@dataclass
class RetryCounts:
    """What one retry round did to one source: rows (list rows) and URLs (each fetched once)."""

    source: str
    rows_retried: int = 0
    rows_now_ok: int = 0
    rows_still_failing: int = 0
    urls_retried: int = 0
    changed: int = 0  # records that differ from before (status, reason or bytes)
    by_class: dict = field(default_factory=dict)

    def line(self) -> str:
        if not self.rows_retried:
            return f"ingest/{self.source}: no row failed for a transient reason; nothing retried"
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.by_class.items()))
        return (f"ingest/{self.source}: retried {self.rows_retried} row(s) ({self.urls_retried} URL(s); {why}): "
                f"{self.rows_now_ok} now ok, {self.rows_still_failing} still failing")

    def as_dict(self) -> dict:
        return asdict(self)


def to_retry(records: dict[str, dict | None], classes: frozenset[str]) -> list[str]:
    """URLs (of ``records``: url -> journal record) whose download failed for a reason in ``classes``."""
    return [u for u, rec in records.items()
            if rec and rec.get("status") == "failed" and reason_class(rec.get("reason")) in classes]


def _essence(rec: dict | None) -> dict:
    rec = rec or {}
    return {k: rec.get(k) for k in ("status", "reason", "sha256")}


def retry_source(source: str, rows_urls: list[str], kind: str, journal, fetch_one: Callable[[str], dict],
                 classes: frozenset[str], run_jobs: Callable[[list, Callable[[str], int]], None]) -> RetryCounts:
    """One round over one source: re-fetch its transiently failed URLs (``fetch_one(url)`` -> a
    journal record) through ``run_jobs(urls, work)``, append the new records, and record the
    round in ``retried.json`` when any record changed."""
    before = {u: journal.get(u, kind) for u in dict.fromkeys(rows_urls)}
    urls = to_retry(before, classes)
    counts = RetryCounts(source, urls_retried=len(urls))
    if not urls:
        return counts

    def work(url: str) -> int:
        journal.add(fetch_one(url))
        return 1

    run_jobs(urls, work)
    wanted = set(urls)
    changed = []
    for url in urls:
        old, new = before[url], journal.get(url, kind)
        counts.by_class[reason_class(old.get("reason"))] = counts.by_class.get(reason_class(old.get("reason")), 0) + 1
        if _essence(old) != _essence(new):
            changed.append({"url": url, **_essence(new)})
    for url in rows_urls:
        if url in wanted:
            counts.rows_retried += 1
            if (journal.get(url, kind) or {}).get("status") == "ok":
                counts.rows_now_ok += 1
            else:
                counts.rows_still_failing += 1
    counts.changed = len(changed)
    if changed:
        _record_round(Path(journal.path).parent / RETRIED, changed)
    return counts


def _record_round(path: Path, changed: list[dict]) -> None:
    """Append a round (what changed, no time stamp: the same outcome gives the same key)."""
    try:
        rounds = json.loads(path.read_text())
        if not isinstance(rounds, list):
            rounds = []
    except (OSError, ValueError):
        rounds = []
    digest = hashlib.sha256(json.dumps(sorted(changed, key=lambda r: r["url"]), sort_keys=True).encode())
    rounds.append({"changed": len(changed), "digest": digest.hexdigest()})
    write_json_atomic(path, rounds)


def retried_fingerprint(journal_dir: Path) -> str | None:
    """What the cache key of an ingest unit holds of its retry rounds (None: never repaired)."""
    path = Path(journal_dir) / RETRIED
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
