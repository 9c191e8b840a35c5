"""The downloads journal: one flushed JSON line per fetched-and-validated URL.

An entry records what the bytes behind a URL were (fetch outcome, sha256, media facts,
leak thumbnails) for one kind of item, so a rerun never fetches a URL twice. It records no
verdict that depends on the crawl list or the class list (an unknown query class, a
duplicate, a leak): those are judged again on every run. A torn last line (kill -9) is dropped.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

from .atomic import _json_default


def entry_key(url: str, kind: str) -> str:
    return f"{kind}|{url}"


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.done: dict[str, dict] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            good_end = 0
            while good_end < len(data):
                nl = data.find(b"\n", good_end)
                if nl < 0:
                    break  # no newline: a torn last line
                line = data[good_end:nl]
                if line.strip():
                    try:
                        rec = json.loads(line)
                        self.done[entry_key(rec["url"], rec["kind"])] = rec
                    except (ValueError, KeyError, TypeError):
                        break
                good_end = nl + 1
            if good_end != len(data):  # drop a torn tail so appends start on a clean line
                with open(self.path, "r+b") as fh:
                    fh.truncate(good_end)
        self._fh = open(self.path, "a", encoding="utf-8")

    def get(self, url: str, kind: str) -> dict | None:
        return self.done.get(entry_key(url, kind))

    def add(self, rec: dict) -> None:
        line = json.dumps(rec, default=_json_default) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            self.done[entry_key(rec["url"], rec["kind"])] = rec

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
