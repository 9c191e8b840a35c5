"""Ingest: crawl lists -> fetched, validated, de-duplicated items (``ingest/items.parquet``).

Every crawl-list row gets exactly one row out, with ``status`` ok / failed / duplicate /
leak and a precise ``reason``. Work is resumable at item level: each finished item is
appended to a journal (one JSON line, flushed) and skipped on the next run; downloads go
to a temporary name and are renamed into the content-addressed blob store when complete.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import leak
from .config import Config
from .fetch import Fetcher, FetchOptions
from .lists import read_crawl_list, read_target_list
from .media import EXTENSIONS, IMAGE_TYPES, MediaError, check_image, check_video, sniff_file

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
THUMB_SIDE = 48


def fetch_options(cfg: Config) -> FetchOptions:
    i = cfg.ingest
    return FetchOptions(
        connect_timeout_s=i.connect_timeout_s, read_timeout_s=i.read_timeout_s, max_bytes=i.max_bytes,
        max_redirects=i.max_redirects, tries=i.tries, backoff_s=i.backoff_s, user_agent=i.user_agent,
        allow_private_addresses=i.allow_private_addresses, per_host=i.per_host,
    )


def blob_path(blobs: Path, sha: str, ext: str) -> Path:
    return blobs / sha[:2] / f"{sha}{ext}"


def _video_thumbs(path: str, duration: float, n: int = 4) -> np.ndarray:
    from .decode import Window, decode_windows

    windows = [Window(duration * k / n, duration * (k + 1) / n) for k in range(n)]
    frames = decode_windows(path, windows, 1, THUMB_SIDE, backend="auto")
    return np.stack([leak.thumbnail(f[0]) for f in frames])


def _resized(im, short_side: int):
    """A PIL image at ``short_side`` (area averaging, like OpenCV's INTER_AREA); never upscaled."""
    from PIL import Image

    from .decode import scaled_size

    size = scaled_size(im.width, im.height, short_side)
    return im if size == im.size else im.resize(size, Image.BOX)


def _save_jpeg(im, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    im.save(tmp, "JPEG", quality=95)
    os.replace(tmp, dst)


def process_item(fetcher: Fetcher, url: str, kind: str, blobs: Path, cfg: Config) -> dict:
    """Fetch, sniff, validate and store one item. Never raises; returns a journal record."""
    rec: dict = {"url": url, "status": "ok", "reason": ""}
    got = fetcher.fetch(url)
    rec.update(nbytes=got.nbytes, http_status=got.http_status, tries=got.tries, sha256=got.sha256)
    if not got.ok:
        rec.update(status="failed", reason=got.reason)
        return rec
    try:
        ftype = sniff_file(got.path)
        rec["file_type"] = ftype
        if ftype == "empty":
            raise MediaError("empty file")
        rgb = None
        if kind == "image":
            info, rgb = check_image(got.path, ftype, cfg.ingest.max_image_pixels,
                                    decode_short_side=cfg.ingest.image_short_side or THUMB_SIDE)
            if cfg.ingest.image_short_side:
                rgb = _resized(rgb, cfg.ingest.image_short_side)
            thumbs = leak.thumbnail(rgb)[None]
        else:
            if ftype in IMAGE_TYPES:
                raise MediaError(f"not a video: {ftype} image")
            info = check_video(got.path, ftype)
            thumbs = _video_thumbs(got.path, info.duration_s)
        rec.update({k: v for k, v in asdict(info).items() if k != "type"})
        rec["thumbs"] = leak.encode(thumbs)
        if got.is_temp:
            final = blob_path(blobs, got.sha256, EXTENSIONS.get(ftype, ".bin"))
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(got.path, final)
            rec["path"] = str(final)
        else:
            rec["path"] = got.path
        if kind == "image" and cfg.ingest.image_short_side:
            resized = blobs / got.sha256[:2] / f"{got.sha256}_s{cfg.ingest.image_short_side}.jpg"
            if not resized.exists():
                resized.parent.mkdir(parents=True, exist_ok=True)
                _save_jpeg(rgb, resized)
            rec["path"] = str(resized)
    except MediaError as exc:
        rec.update(status="failed", reason=str(exc))
    except Exception as exc:
        rec.update(status="failed", reason=f"validation error: {type(exc).__name__}: {str(exc)[:80]}")
    finally:
        if got.is_temp and os.path.exists(got.path):
            os.unlink(got.path)
    return rec


def journal_key(item_id: str, url: str) -> str:
    """A journal entry counts only for the same row *and* the same URL (lists may change)."""
    return f"{item_id}|{url}"


class Journal:
    """Append-only JSON lines of finished items; a torn last line (kill -9) is ignored."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.done: dict[str, dict] = {}
        if self.path.exists():
            with open(self.path, "rb") as fh:
                data = fh.read()
            good_end = 0
            for line in data.split(b"\n"):
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    break
                self.done[journal_key(rec["item_id"], rec.get("url", ""))] = rec
                good_end += len(line) + 1
            if good_end != len(data):  # drop a torn tail so appends start on a clean line
                with open(self.path, "r+b") as fh:
                    fh.truncate(good_end)
        self._fh = open(self.path, "a", encoding="utf-8")

    def add(self, rec: dict) -> None:
        line = json.dumps(rec, default=_json_default) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            self.done[journal_key(rec["item_id"], rec.get("url", ""))] = rec

    def close(self) -> None:
        self._fh.close()


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def read_targets(cfg: Config, class_names: list[str]) -> pd.DataFrame:
    frames = []
    for split, path in (("train", cfg.target.train), ("val", cfg.target.val)):
        df = read_target_list(path, class_names)
        df.insert(0, "split", split)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "item_id", [f"target-{s}:{i:07d}" for s, i in zip(df["split"], df.groupby("split").cumcount())])
    return df


def _validate_target(fetcher: Fetcher, row: dict) -> dict:
    rec = {"item_id": row["item_id"], "url": row["path"], "status": "ok", "reason": ""}
    got = fetcher.fetch(row["path"])
    rec.update(sha256=got.sha256, nbytes=got.nbytes)
    if not got.ok:
        rec.update(status="failed", reason=got.reason)
        return rec
    try:
        ftype = sniff_file(row["path"])
        info = check_video(row["path"], ftype)
        rec.update({k: v for k, v in asdict(info).items() if k != "type"}, file_type=ftype)
        if row["split"] == "val":
            rec["thumbs"] = leak.encode(_video_thumbs(row["path"], info.duration_s, n=8))
    except MediaError as exc:
        rec.update(status="failed", reason=str(exc))
    except Exception as exc:
        rec.update(status="failed", reason=f"validation error: {type(exc).__name__}: {str(exc)[:80]}")
    return rec


def ingest(cfg: Config, out_dir: Path, journal_dir: Path, progress: Progress | None = None) -> dict:
    """Run ingestion; writes ``items.parquet``, ``targets.parquet`` and ``stats.json`` to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blobs = out_dir / "blobs"
    class_names = cfg.class_names()
    fetcher = Fetcher(fetch_options(cfg), blobs / ".tmp")
    for stale in (blobs / ".tmp").glob(".part-*"):  # half-written downloads of a killed run
        stale.unlink(missing_ok=True)

    targets = read_targets(cfg, class_names)
    web = []
    for src in cfg.sources:
        df = read_crawl_list(src.list, class_names, src.url_column, src.query_column, src.query)
        df.insert(0, "item_id", [f"{src.name}:{i:07d}" for i in range(len(df))])
        df.insert(1, "source", src.name)
        df.insert(2, "kind", src.kind)
        web.append(df)
    web_df = pd.concat(web, ignore_index=True) if web else pd.DataFrame(
        columns=["item_id", "source", "kind", "url", "query", "query_error", "list_file", "list_row"])

    journal = Journal(Path(journal_dir) / "journal.jsonl")
    jobs = []
    for row in targets.to_dict("records"):
        if journal_key(row["item_id"], row["path"]) not in journal.done:
            jobs.append(("target", [row]))
    by_url: dict[tuple[str, str], list[dict]] = {}  # a URL listed twice is fetched once
    for row in web_df.to_dict("records"):
        if journal_key(row["item_id"], row["url"]) in journal.done:
            continue
        if row["query_error"]:
            journal.add({"item_id": row["item_id"], "url": row["url"], "status": "failed",
                         "reason": row["query_error"]})
            continue
        by_url.setdefault((row["url"], row["kind"]), []).append(row)
    jobs += [("web", rows) for rows in by_url.values()]
    total = len(targets) + len(web_df)
    done_count = [total - sum(len(rows) for _, rows in jobs)]
    lock = threading.Lock()
    started = time.time()

    def work(job):
        what, rows = job
        if what == "target":
            recs = [_validate_target(fetcher, rows[0])]
        else:
            rec = process_item(fetcher, rows[0]["url"], rows[0]["kind"], blobs, cfg)
            recs = [{**rec, "item_id": row["item_id"]} for row in rows]
        for rec in recs:
            journal.add(rec)
        with lock:
            done_count[0] += len(recs)
            if progress:
                progress(done_count[0], total)

    if progress:
        progress(done_count[0], total)
    try:
        with ThreadPoolExecutor(max_workers=cfg.ingest.workers) as pool:
            list(pool.map(work, jobs))
    finally:
        journal.close()
    elapsed = time.time() - started

    targets_out = _merge(targets, journal.done, "path")
    items = _merge(web_df, journal.done, "url")
    items = mark_duplicates_and_leaks(items, targets_out, cfg.ingest.leak_threshold, cfg.ingest.leak_check)
    class_index = {n: i for i, n in enumerate(class_names)}
    items["label"] = [class_index.get(q, -1) for q in items["query"]]
    _write_parquet(targets_out, out_dir / "targets.parquet")
    _write_parquet(items, out_dir / "items.parquet")
    stats = ingest_stats(items, targets_out, elapsed, fetched=sum(len(rows) for _, rows in jobs))
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def _merge(df: pd.DataFrame, done: dict[str, dict], url_col: str) -> pd.DataFrame:
    cols = ["status", "reason", "sha256", "path", "file_type", "nbytes", "http_status", "tries",
            "width", "height", "duration_s", "fps", "codec", "thumbs"]
    df = df.copy()
    recs = [done.get(journal_key(i, u), {}) for i, u in zip(df["item_id"], df[url_col])]
    for col in cols:
        values = [r.get(col) for r in recs]
        if col in df.columns:  # keep the list's own value where the record has none
            values = [v if v is not None else old for v, old in zip(values, df[col])]
        df[col] = values
    df["status"] = df["status"].fillna("failed")
    df["reason"] = df["reason"].fillna("")
    return df


def mark_duplicates_and_leaks(items: pd.DataFrame, targets: pd.DataFrame, threshold: float,
                              check_near: bool = True) -> pd.DataFrame:
    """Exact duplicates by sha256 (first occurrence kept); near-duplicates of val items -> leak."""
    items = items.copy()
    items["leak_of"] = ""
    items["leak_similarity"] = np.nan
    ok_t = targets[targets["status"] == "ok"]
    val_sha = dict(zip(ok_t.loc[ok_t["split"] == "val", "sha256"], ok_t.loc[ok_t["split"] == "val", "path"]))
    train_sha = dict(zip(ok_t.loc[ok_t["split"] == "train", "sha256"], ok_t.loc[ok_t["split"] == "train", "path"]))
    ok = items["status"] == "ok"
    in_val = ok & items["sha256"].isin(val_sha)
    items.loc[in_val, "status"] = "leak"
    items.loc[in_val, "reason"] = "same bytes as a val item"
    items.loc[in_val, "leak_of"] = items.loc[in_val, "sha256"].map(val_sha)
    items.loc[in_val, "leak_similarity"] = 1.0
    in_train = ok & ~in_val & items["sha256"].isin(train_sha)
    items.loc[in_train, "status"] = "duplicate"
    items.loc[in_train, "reason"] = "same bytes as a target train item"
    rest = ok & ~in_val & ~in_train
    first = items[rest].drop_duplicates("sha256").set_index("sha256")["item_id"]
    again = rest & items["sha256"].duplicated()
    items.loc[again, "status"] = "duplicate"
    items.loc[again, "reason"] = "same bytes as " + items.loc[again, "sha256"].map(first)
    if check_near:
        val = ok_t[ok_t["split"] == "val"]
        cand = items[items["status"] == "ok"]
        if len(val) and len(cand):
            sims, which = leak.best_matches([leak.decode(t) for t in cand["thumbs"]],
                                            [leak.decode(t) for t in val["thumbs"]])
            val_paths = val["path"].tolist()
            for idx, s, w in zip(cand.index, sims, which):
                if w >= 0:
                    items.at[idx, "leak_similarity"] = float(s)
                if w >= 0 and s >= threshold:
                    items.at[idx, "status"] = "leak"
                    items.at[idx, "reason"] = f"near-duplicate of val item (similarity {s:.3f})"
                    items.at[idx, "leak_of"] = val_paths[w]
    return items


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df = df.copy()
    for col in df.columns:  # extra list columns can hold mixed types: store those as text
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col] if v is not None and not (isinstance(v, float) and np.isnan(v))}
            if len(kinds) > 1:
                df[col] = df[col].map(lambda v: None if v is None else str(v))
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def ingest_stats(items: pd.DataFrame, targets: pd.DataFrame, elapsed_s: float, fetched: int) -> dict:
    per_source = {}
    for name, g in items.groupby("source", sort=False):
        reasons = Counter(
            _reason_group(r) for r in g.loc[g["status"] != "ok", "reason"]
        )
        per_source[name] = {
            "rows": int(len(g)),
            "by_status": {k: int(v) for k, v in g["status"].value_counts().items()},
            "by_reason": dict(reasons.most_common()),
            "bytes": int(pd.to_numeric(g["nbytes"], errors="coerce").fillna(0).sum()),
        }
    return {
        "sources": per_source,
        "targets": {f"{sp}/{st}": int(n) for (sp, st), n in targets.groupby(["split", "status"]).size().items()},
        "leaks_found": int((items["status"] == "leak").sum()) if len(items) else 0,
        "duplicates_found": int((items["status"] == "duplicate").sum()) if len(items) else 0,
        "items_processed_this_run": fetched,
        "elapsed_s": round(elapsed_s, 3),
        "items_per_s": round(fetched / elapsed_s, 2) if elapsed_s > 0 else None,
    }


def _reason_group(reason: str) -> str:
    """Collapse per-item details (similarity values, item ids) so counts group sensibly."""
    for prefix in ("near-duplicate of val item", "same bytes as", "corrupt video", "corrupt image",
                   "validation error", "truncated video"):
        if reason.startswith(prefix):
            return prefix
    return reason
