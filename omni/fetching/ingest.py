"""Ingest: lists -> fetched, validated, de-duplicated items, one unit of work per list.

``ingest_target`` checks the target clips in place (``targets.parquet``); ``ingest_source``
fetches one crawl list (``items.parquet``: one row per list row, ``status`` ok / failed /
duplicate / leak with a precise ``reason``). Each source is ingested on its own, so editing
one list never redoes another. Work is resumable per URL through the downloads journal.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pandas as pd

from ..runtime.atomic import write_json_atomic, write_parquet_atomic
from .dedup import mark_duplicates_and_leaks
from ..runtime.fanout import map_shards
from .fetch import Fetcher, FetchOptions, local_signature
from .ingest_stats import source_stats
from .journal import Journal
from .lists import read_crawl_list, read_target_list
from ..video.media import CHECKS_VERSION
from .retry import RetryCounts, retry_source
from .validate import VAL_THUMBS, ValidateOptions, fetch_and_validate, validate_target

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

# what the journal records about the bytes behind a URL
RECORD_COLUMNS = ["status", "reason", "sha256", "path", "file_type", "nbytes", "http_status", "tries",
                  "width", "height", "duration_s", "fps", "codec", "thumbs"]


def _run_jobs(jobs: list, work: Callable, workers: int, total: int, already: int, progress: Progress | None):
    done = [already]
    lock = threading.Lock()

    def one(job):
        n = work(job)
        with lock:
            done[0] += n
            if progress:
                progress(done[0], total)

    if progress:
        progress(done[0], total)
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        list(pool.map(one, jobs))
    except BaseException:  # stop now: queued items are dropped, in-flight ones finish and are journaled
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _to_check(journal: Journal, url: str, kind: str) -> bool:
    """Whether a URL needs fetching and checking: never seen, a local file that changed (or
    appeared, or went) since its record was made, or a file that older media checks refused
    (``media.CHECKS_VERSION``; a download that failed is not retried for that)."""
    rec = journal.get(url, kind)
    if rec is None:
        return True
    if rec.get("status") == "failed" and rec.get("sha256") and rec.get("checks", 1) < CHECKS_VERSION:
        return True
    now = local_signature(url)
    return now is not None and rec.get("local_stat") != now


def _lacks_val_thumbs(rec: dict | None) -> bool:
    """A usable target clip's record without the val set's leak thumbnails (made as a train clip,
    or by an omni that kept fewer per val clip)."""
    return rec is not None and rec.get("status") == "ok" and rec.get("val_thumbs") != VAL_THUMBS


def _checked(url: str, check: Callable[[], dict]) -> dict:
    """A journal record from ``check()``, with what a local file was before it was read."""
    before = local_signature(url)
    rec = check()
    if before is not None:
        rec["local_stat"] = before
    return rec


def _clear_partial_downloads(tmp: Path) -> None:
    for stale in tmp.glob(".part-*"):  # half-written downloads of a killed run
        stale.unlink(missing_ok=True)


def _attach_records(df: pd.DataFrame, journal: Journal, url_col: str, kind_col: str,
                    with_thumbs: bool = False) -> pd.DataFrame:
    """The journal's record of each row's URL as columns; leak thumbnails only ``with_thumbs``
    (the target set's, which web items are compared against; a crawl list's stay on disk)."""
    df = df.copy()
    recs = [journal.get(u, k) or {} for u, k in zip(df[url_col], df[kind_col])]
    for col in RECORD_COLUMNS:
        if col == "thumbs":
            if with_thumbs:
                df[col] = [journal.thumbs(u, k) for u, k in zip(df[url_col], df[kind_col])]
            continue
        values = [r.get(col) for r in recs]
        if col in df.columns:  # keep the list's own value where the record has none
            values = [v if v is not None else old for v, old in zip(values, df[col])]
        df[col] = values
    df["status"] = df["status"].fillna("failed")
    df["reason"] = df["reason"].fillna("not fetched")
    return df


def fetch_shard(urls: list[str], kind: str, fetch: FetchOptions, tmp_dir: str, blobs: str,
                validate: ValidateOptions, threads: int) -> list[dict]:
    """A cluster worker's share of a crawl list: fetch and check ``urls`` with ``threads``
    threads; returns their journal records (a bad URL is a record, never an exception)."""
    fetcher = Fetcher(fetch, Path(tmp_dir))
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(urls)))) as pool:
        return list(pool.map(lambda u: fetch_and_validate(fetcher, u, kind, Path(blobs), validate), urls))


def read_targets(train_list: Path, val_list: Path, class_names: list[str]) -> pd.DataFrame:
    frames = []
    for split, path in (("train", train_list), ("val", val_list)):
        df = read_target_list(path, class_names)
        df.insert(0, "split", split)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "item_id", [f"target-{s}:{i:07d}" for s, i in zip(df["split"], df.groupby("split").cumcount())])
    return df


def ingest_target(train_list: Path, val_list: Path, class_names: list[str], fetch: FetchOptions,
                  max_video_pixels: int, out_dir: Path, journal_dir: Path, workers: int = 8, progress: Progress | None = None) -> dict:
    """Check every target clip (read in place); writes ``targets.parquet`` and ``stats.json``."""
    out_dir = Path(out_dir)
    targets = read_targets(train_list, val_list, class_names)
    targets["kind"] = "video"
    fetcher = Fetcher(fetch, out_dir / "tmp")
    started = time.time()
    with Journal(Path(journal_dir) / "journal.jsonl") as journal:
        # one check per clip; a clip listed in val (in train too, or not) is checked as a val clip, with
        # leak thumbnails, and so is one whose record has none or fewer than VAL_THUMBS (moved to val)
        val_paths = set(targets.loc[targets["split"] == "val", "path"])
        todo = [p for p in dict.fromkeys(targets["path"])
                if _to_check(journal, p, "video") or (p in val_paths and _lacks_val_thumbs(journal.get(p, "video")))]

        def work(path) -> int:
            journal.add(_checked(path, lambda: validate_target(fetcher, path, path in val_paths, max_video_pixels)))
            return 1

        _run_jobs(todo, work, workers, len(targets), len(targets) - len(todo), progress)
        out = _attach_records(targets.rename(columns={"path": "url"}), journal, "url", "kind", with_thumbs=True)
    out["path"] = out["url"]
    out = mark_target_copies(out.drop(columns=["url"]))
    write_parquet_atomic(out, out_dir / "targets.parquet")
    stats = {f"{sp}/{st}": int(n) for (sp, st), n in out.groupby(["split", "status"]).size().items()}
    stats["checked_this_run"] = len(todo)
    stats["elapsed_s"] = round(time.time() - started, 3)
    write_json_atomic(out_dir / "stats.json", stats)
    return stats


def mark_target_copies(targets: pd.DataFrame) -> pd.DataFrame:
    """The same bytes twice in the target set: a train clip that is also a val clip is ``leak``
    (training on it would inflate every accuracy omni reports), a second copy within a split is
    ``duplicate`` (learned or scored twice otherwise). The first val copy, then the first train
    copy, is kept; a log line says how many."""
    targets = targets.copy()
    ok = (targets["status"] == "ok") & targets["sha256"].notna() & (targets["sha256"] != "")
    first_val = targets[ok & (targets["split"] == "val")].drop_duplicates("sha256").set_index("sha256")["path"]
    in_val = ok & (targets["split"] == "train") & targets["sha256"].isin(first_val.index)
    targets.loc[in_val, "status"] = "leak"
    targets.loc[in_val, "reason"] = ("same bytes as val clip " + targets.loc[in_val, "sha256"].map(first_val)
                                     + ": a train/val overlap, not trained on")
    n_dup = 0
    for split in ("val", "train"):
        rows = targets[ok & ~in_val & (targets["split"] == split)]
        first = rows.drop_duplicates("sha256").set_index("sha256")["path"]
        again = rows.index[rows["sha256"].duplicated().to_numpy()]
        targets.loc[again, "status"] = "duplicate"
        targets.loc[again, "reason"] = f"same bytes as {split} clip " + targets.loc[again, "sha256"].map(first)
        n_dup += len(again)
    if in_val.any() or n_dup:
        log.warning("target set: %d train clip(s) also in val (left out of training), %d repeated clip(s) "
                    "(counted once); see ingest/target/targets.parquet", int(in_val.sum()), n_dup)
    return targets


def _fetch_on_cluster(todo: list[str], kind: str, fetch: FetchOptions, tmp: Path, blobs: Path,
                      validate: ValidateOptions, threads: int, journal: Journal, total: int,
                      progress: Progress | None, scheduler: str, shard_items: int) -> None:
    done = total - len(todo)

    def record(recs: list[dict]) -> None:
        nonlocal done
        for rec in recs:
            stat = local_signature(rec["url"])  # (after the worker read it: a change meanwhile is seen next run)
            if stat is not None:
                rec["local_stat"] = stat
            journal.add(rec)
        done += len(recs)
        if progress:
            progress(done, total)

    if progress:
        progress(done, total)
    shards = [(todo[i:i + shard_items], kind, fetch, str(tmp), str(blobs), validate, threads)
              for i in range(0, len(todo), shard_items)]
    map_shards(fetch_shard, shards, record, scheduler=scheduler, name=f"ingest {kind}")


def read_source_list(name: str, kind: str, list_path: Path, class_names: list[str], url_column: str,
                     query_column: str, default_query: str | None) -> pd.DataFrame:
    df = read_crawl_list(list_path, class_names, url_column, query_column, default_query)
    df.insert(0, "item_id", [f"{name}:{i:07d}" for i in range(len(df))])
    df.insert(1, "source", name)
    df.insert(2, "kind", kind)
    return df


def ingest_source(name: str, kind: str, list_path: Path, url_column: str, query_column: str,
                  default_query: str | None, class_names: list[str], fetch: FetchOptions,
                  validate: ValidateOptions, leak_check: bool, leak_threshold: float, targets_file: Path,
                  out_dir: Path, journal_dir: Path, blobs: Path, workers: int = 16,
                  progress: Progress | None = None, scheduler: str | None = None, shard_items: int = 256) -> dict:
    """Fetch and check one crawl list; writes ``items.parquet`` and ``stats.json``.

    With ``scheduler`` the URLs go in shards of ``shard_items`` to that Dask cluster (each
    worker fetches its shard with ``workers`` threads; records are journaled here as shards end)."""
    out_dir = Path(out_dir)
    items = read_source_list(name, kind, list_path, class_names, url_column, query_column, default_query)
    fetcher = Fetcher(fetch, out_dir / "tmp")
    _clear_partial_downloads(out_dir / "tmp")
    started = time.time()
    with Journal(Path(journal_dir) / "journal.jsonl") as journal:
        wanted = items[items["query_error"] == ""]
        urls = list(dict.fromkeys(wanted["url"]))  # a URL listed twice is fetched once
        todo = [u for u in urls if _to_check(journal, u, kind)]

        if scheduler:
            _fetch_on_cluster(todo, kind, fetch, out_dir / "tmp", blobs, validate, workers, journal, len(urls),
                              progress, scheduler, shard_items)
        else:
            def work(url) -> int:
                journal.add(_checked(url, lambda: fetch_and_validate(fetcher, url, kind, blobs, validate)))
                return 1

            _run_jobs(todo, work, workers, len(urls), len(urls) - len(todo), progress)
        items = _attach_records(items, journal, "url", "kind")
        bad_query = items["query_error"] != ""
        items.loc[bad_query, "status"] = "failed"  # judged now, from the current class list
        items.loc[bad_query, "reason"] = items.loc[bad_query, "query_error"]
        targets = pd.read_parquet(targets_file)
        items = mark_duplicates_and_leaks(items, targets, leak_threshold, leak_check,
                                          thumbs_of=lambda i: journal.thumbs(items.at[i, "url"], kind))
    index = {n: i for i, n in enumerate(class_names)}
    items["label"] = [index.get(q, -1) if not e else -1 for q, e in zip(items["query"], items["query_error"])]
    write_parquet_atomic(items, out_dir / "items.parquet")
    stats = source_stats(items)
    stats["fetched_this_run"] = len(todo)
    elapsed = time.time() - started
    stats["elapsed_s"] = round(elapsed, 3)
    stats["items_per_s"] = round(len(todo) / elapsed, 2) if elapsed > 0 else None
    write_json_atomic(out_dir / "stats.json", stats)
    return stats


def retry_failed_rows(name: str, kind: str, list_path: Path, url_column: str, query_column: str,
                      default_query: str | None, class_names: list[str], fetch: FetchOptions,
                      validate: ValidateOptions, tmp: Path, journal_dir: Path, blobs: Path,
                      classes: frozenset[str], workers: int = 16) -> RetryCounts:
    """Fetch again the URLs of one crawl list whose download failed for a transient reason in
    ``classes`` (omni/fetching/retry.py); appends their new records to the journal and touches nothing
    else. The ingest unit then rebuilds ``items.parquet`` from the journal."""
    items = read_source_list(name, kind, list_path, class_names, url_column, query_column, default_query)
    rows_urls = list(items.loc[items["query_error"] == "", "url"])
    fetcher = Fetcher(fetch, Path(tmp))
    _clear_partial_downloads(Path(tmp))
    with Journal(Path(journal_dir) / "journal.jsonl") as journal:
        return retry_source(
            name, rows_urls, kind, journal,
            lambda url: _checked(url, lambda: fetch_and_validate(fetcher, url, kind, blobs, validate)),
            classes, lambda jobs, work: _run_jobs(jobs, work, workers, len(jobs), 0, None))
