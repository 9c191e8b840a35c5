"""Filter web samples by the teacher, and write the Parquet manifests.

``web_items.parquet`` (the stable output contract): one row per crawl-list row, one per
window for untrimmed videos, including every row rejected at any stage, with ``status`` in
kept / filtered / duplicate / leak / failed and a ``reason``.
``train.parquet``: target train samples plus kept web samples, one unified form (frame-store
references, label, source, kind), which joint training reads.
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from .config import FilterConfig

CONTRACT_COLUMNS = ["url", "source", "kind", "query", "status", "reason", "teacher_label", "teacher_score",
                    "start_s", "end_s"]


def filter_samples(scores: pd.DataFrame, samples: pd.DataFrame, fcfg: FilterConfig, class_names: list[str]
                   ) -> pd.DataFrame:
    """Adds ``status`` kept / filtered and a reason to each scored sample."""
    df = scores.merge(samples[["sample_id", "label"]], on="sample_id", how="left")
    status, reason = [], []
    for lab, tl, ts in zip(df["label"], df["teacher_label"], df["teacher_score"]):
        if fcfg.require_top1 and tl != lab:
            status.append("filtered")
            reason.append(f"teacher predicts {class_names[tl]} (query class p={ts:.2f})")
        elif ts < fcfg.min_score:
            status.append("filtered")
            reason.append(f"teacher score {ts:.2f} < {fcfg.min_score}")
        else:
            status.append("kept")
            reason.append("")
    df["status"], df["reason"] = status, reason
    return df.drop(columns=["label"])


def build_manifest(items: pd.DataFrame, samples: pd.DataFrame, filtered: pd.DataFrame,
                   class_names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(web_items, train) manifests from ingest items, extracted samples and filter results."""
    web_samples = samples[samples["split"] == "web"]
    merged = web_samples.merge(filtered.drop(columns=["teacher_probs"], errors="ignore"),
                               on="sample_id", how="left", suffixes=("_extract", ""))
    merged["status"] = np.where(merged["status_extract"] == "failed", "failed", merged["status"])
    merged["reason"] = np.where(merged["status_extract"] == "failed", merged["reason_extract"], merged["reason"])
    merged["status"] = merged["status"].fillna("failed")
    merged["reason"] = merged["reason"].fillna("not scored")
    per_sample = merged[["item_id", "sample_id", "clip_index", "start_s", "end_s", "status", "reason",
                         "teacher_label", "teacher_score", "teacher"]]
    base = items.drop(columns=["thumbs"], errors="ignore").rename(
        columns={"status": "ingest_status", "reason": "ingest_reason"})
    rows = base.merge(per_sample, on="item_id", how="left")
    not_ingested = rows["ingest_status"] != "ok"
    rows.loc[not_ingested, "status"] = rows.loc[not_ingested, "ingest_status"]
    rows.loc[not_ingested, "reason"] = rows.loc[not_ingested, "ingest_reason"]
    # untrimmed videos that decoded to no window at all
    missing = rows["status"].isna()
    rows.loc[missing, "status"] = "failed"
    rows.loc[missing, "reason"] = "no sample extracted"
    rows["teacher_label"] = [class_names[int(t)] if pd.notna(t) else None for t in rows["teacher_label"]]
    rows = rows.drop(columns=["ingest_status", "ingest_reason"])
    front = ["item_id", "sample_id"] + CONTRACT_COLUMNS
    rows = rows[front + [c for c in rows.columns if c not in front]]

    kept_ids = set(merged.loc[merged["status"] == "kept", "sample_id"])
    target = samples[(samples["split"] == "train") & (samples["status"] == "ok")]
    kept = web_samples[web_samples["sample_id"].isin(kept_ids)]
    train = pd.concat([target, kept], ignore_index=True)
    train = train[["sample_id", "item_id", "source", "kind", "label", "clip_index", "start_s", "end_s",
                   "shard", "offset", "t", "h", "w"]]
    return rows, train
