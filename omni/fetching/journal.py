"""The downloads journal: one flushed JSON line per fetched-and-validated URL.

An entry records what the bytes behind a URL were (fetch outcome, sha256, media facts,
leak thumbnails) for one kind of item, so a rerun never fetches a URL twice. It records no
verdict that depends on the crawl list or the class list (an unknown query class, a
duplicate, a leak): those are judged again on every run. A torn last line (kill -9) is dropped.

Leak thumbnails, the bulk of a record, stay in the file: the journal keeps each record
without them plus where its line is, and ``thumbs`` reads them back when asked, so memory per
URL is a small record however long the list.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

from ..runtime.atomic import _json_default


def entry_key(url: str, kind: str) -> str:
    return f"{kind}|{url}"


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.done: dict[str, dict] = {}
        self._lines: dict[str, tuple[int, int]] = {}  # where each record's line is (for its thumbnails)
        good_end = 0
        if self.path.exists():
            with open(self.path, "rb") as fh:
                for line in fh:  # one line in memory at a time
                    if not line.endswith(b"\n"):
                        break  # no newline: a torn last line
                    if line.strip():
                        try:
                            self._keep(json.loads(line), good_end, len(line))
                        except (ValueError, KeyError, TypeError):
                            break
                    good_end += len(line)
            if good_end != self.path.stat().st_size:  # drop a torn tail so appends start on a clean line
                with open(self.path, "r+b") as fh:
                    fh.truncate(good_end)
        self._fh = open(self.path, "ab")
        self._end = good_end
        self._reader = open(self.path, "rb")

    def _keep(self, rec: dict, offset: int, length: int) -> None:
        key = entry_key(rec["url"], rec["kind"])
        if rec.pop("thumbs", None) is not None:
            rec["has_thumbs"] = True
        self.done[key] = rec
        self._lines[key] = (offset, length)

    def get(self, url: str, kind: str) -> dict | None:
        return self.done.get(entry_key(url, kind))

    def thumbs(self, url: str, kind: str) -> str | None:
        """The record's leak thumbnails (as stored), read back from the file."""
        at = self._lines.get(entry_key(url, kind))
        if at is None or not self.done[entry_key(url, kind)].get("has_thumbs"):
            return None
        with self._lock:
            self._reader.seek(at[0])
            line = self._reader.read(at[1])
        return json.loads(line).get("thumbs")

    def add(self, rec: dict) -> None:
        line = (json.dumps(rec, default=_json_default) + "\n").encode()
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            self._keep(dict(rec), self._end, len(line))
            self._end += len(line)

    def close(self) -> None:
        self._fh.close()
        self._reader.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
