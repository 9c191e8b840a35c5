"""Counts of what ingestion did, per source: rows, statuses, reasons, bytes."""
from __future__ import annotations

from collections import Counter

import pandas as pd

_REASON_PREFIXES = ("near-duplicate of val item", "same bytes as", "corrupt video", "corrupt image",
                    "validation error", "truncated video", "truncated download", "refused", "timeout",
                    "too slow", "too many pixels", "bad list row", "bad response")


def reason_group(reason: str) -> str:
    """Collapse per-item details (similarity values, item ids) so counts group sensibly."""
    for prefix in _REASON_PREFIXES:
        if reason.startswith(prefix):
            return prefix
    return reason


def source_stats(items: pd.DataFrame) -> dict:
    reasons = Counter(reason_group(r) for r in items.loc[items["status"] != "ok", "reason"])
    return {
        "rows": int(len(items)),
        "by_status": {k: int(v) for k, v in items["status"].value_counts().items()},
        "by_reason": dict(reasons.most_common()),
        "bytes": int(pd.to_numeric(items.get("nbytes"), errors="coerce").fillna(0).sum()) if len(items) else 0,
    }
