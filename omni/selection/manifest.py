"""The Parquet manifests: a join of what each stage recorded.

``web_items.parquet`` (the stable output contract): one row per crawl-list row, one per
window for untrimmed videos, including every row rejected at any stage. Each stage's own
columns are kept (``ingest_status``/``ingest_reason``, ``extract_status``/``extract_reason``,
``filter_status``/``filter_reason``, the teacher's scores); ``status`` and ``reason`` are the
first stage that said no: ``failed``, ``duplicate``, ``leak``, ``filtered``, else ``kept``;
``train_label``, for a kept row, the class it trains as: its query's, or the class the second
round relabeled it with (``filter.refine_relabel``).
``train.parquet``: target train samples plus kept web samples in one unified form.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..fetching.dedup import mark_cross_source_duplicates

CONTRACT_COLUMNS = ["url", "source", "kind", "query", "status", "reason", "train_label", "teacher_label",
                    "teacher_score", "start_s", "end_s"]
TRAIN_COLUMNS = ["sample_id", "item_id", "source", "kind", "label", "clip_index", "start_s", "end_s",
                 "shard", "offset", "t", "h", "w"]


def final_status(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The first stage that rejected each row decides its status and reason."""
    ingest_bad = rows["ingest_status"] != "ok"
    cross_dup = rows["duplicate_of"].fillna("") != ""
    no_sample = rows["sample_id"].isna()
    extract_bad = rows["extract_status"].fillna("failed") != "ok"
    not_scored = rows["filter_status"].isna()
    conds = [ingest_bad, cross_dup, no_sample, extract_bad, not_scored]
    status = np.select(conds, [rows["ingest_status"], "duplicate", "failed", "failed", "failed"],
                       default=rows["filter_status"].fillna("").astype(str))
    reason = np.select(conds, [rows["ingest_reason"], "same bytes as " + rows["duplicate_of"].fillna(""),
                               "no sample extracted", rows["extract_reason"].fillna(""), "not scored"],
                       default=rows["filter_reason"].fillna("").astype(str))
    return status, reason


def build_manifest(items: pd.DataFrame, web_samples: pd.DataFrame, scores: pd.DataFrame, filtered: pd.DataFrame,
                   target_samples: pd.DataFrame, class_names: list[str], source_order: list[str]
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(web_items, train) from the per-stage tables."""
    base = items.drop(columns=["thumbs"], errors="ignore").rename(
        columns={"status": "ingest_status", "reason": "ingest_reason"})
    base["duplicate_of"] = mark_cross_source_duplicates(base, source_order)
    per_sample = web_samples[["item_id", "sample_id", "clip_index", "start_s", "end_s", "extract_status",
                              "extract_reason"]]
    rows = base.merge(per_sample, on="item_id", how="left")
    rows = rows.merge(scores[["sample_id", "teacher", "teacher_label", "teacher_score"]], on="sample_id", how="left")
    rows = rows.merge(filtered, on="sample_id", how="left")
    rows["status"], rows["reason"] = final_status(rows)
    rows["teacher_label"] = [class_names[int(t)] if pd.notna(t) else None for t in rows["teacher_label"]]
    relabel = rows["filter_label"] if "filter_label" in rows.columns else pd.Series(np.nan, index=rows.index)
    rows["train_label"] = [(class_names[int(t)] if pd.notna(t) else q) if st == "kept" else None
                           for st, t, q in zip(rows["status"], relabel, rows["query"])]
    rows = rows.drop(columns=["filter_label"], errors="ignore")
    front = ["item_id", "sample_id"] + CONTRACT_COLUMNS
    rows = rows[front + [c for c in rows.columns if c not in front]].reset_index(drop=True)

    kept_ids = set(rows.loc[rows["status"] == "kept", "sample_id"])
    target = target_samples[(target_samples["split"] == "train") & (target_samples["extract_status"] == "ok")]
    kept = web_samples[web_samples["sample_id"].isin(kept_ids)]
    if "filter_label" in filtered.columns:  # the second round may relabel a sample
        kept = kept.assign(label=kept["sample_id"].map(dict(zip(filtered["sample_id"], filtered["filter_label"])))
                           .astype(int).to_numpy())
    train = pd.concat([target[TRAIN_COLUMNS], kept[TRAIN_COLUMNS]], ignore_index=True)
    return rows, train


def with_judge_probs(rows: pd.DataFrame, scores_path, sources) -> pd.DataFrame:
    """``rows`` (training rows) with ``judge_probs``: each sample of ``sources``, its probability
    vector from ``scores_path`` (a ``scores.parquet``; read for those samples only); missing for
    every other row (target clips, other sources) and for samples it does not hold."""
    import pyarrow.parquet as pq

    ids = rows.loc[rows["source"].isin(list(sources)), "sample_id"].dropna().astype(str).unique().tolist()
    probs: dict = {}
    if ids:
        t = pq.read_table(scores_path, columns=["sample_id", "teacher_probs"], filters=[("sample_id", "in", ids)])
        vectors = t.column("teacher_probs").to_numpy(zero_copy_only=False)  # numpy arrays, not Python floats
        probs = dict(zip(t.column("sample_id").to_pylist(), (np.asarray(v, np.float32) for v in vectors)))
    return rows.assign(judge_probs=rows["sample_id"].map(probs))
