"""The filter rule: keep a web sample when its teacher agrees with its query.

The authors' rule: the teacher's top class equals the query class (``require_top1``); a
minimum probability of the query class (``min_score``) is an extra knob.
"""
from __future__ import annotations

import pandas as pd

from .config import FilterConfig


def filter_scores(scores: pd.DataFrame, fcfg: FilterConfig, class_names: list[str]) -> pd.DataFrame:
    """``sample_id``, ``filter_status`` (kept / filtered) and ``filter_reason`` per scored sample."""
    status, reason = [], []
    for lab, tl, ts in zip(scores["label"], scores["teacher_label"], scores["teacher_score"]):
        if fcfg.require_top1 and tl != lab:
            status.append("filtered")
            reason.append(f"teacher predicts {class_names[tl]} (query class p={ts:.2f})")
        elif ts < fcfg.min_score:
            status.append("filtered")
            reason.append(f"teacher score {ts:.2f} < {fcfg.min_score}")
        else:
            status.append("kept")
            reason.append("")
    return pd.DataFrame({"sample_id": scores["sample_id"].to_numpy(), "filter_status": status,
                         "filter_reason": reason})
