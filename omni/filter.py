"""The filter rule: keep a web sample when its teacher agrees with its query.

The authors' rule: the teacher's top class equals the query class (``require_top1``); a
minimum probability of the query class (``min_score``) is an extra knob.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .config import FilterConfig


def filter_scores(scores: pd.DataFrame, fcfg: FilterConfig, class_names: list[str]) -> pd.DataFrame:
    """``sample_id``, ``filter_status`` (kept / filtered) and ``filter_reason`` per scored sample.

    Rules, in order: the query class must be among the teacher's ``top_k`` classes (top-1 by
    default, the authors' rule; off with ``require_top1: false``); its probability at least
    ``min_score``; and with ``keep_fraction``, the sample among the best-scored share of its
    source's items for that query (a ranking, robust to a badly calibrated teacher)."""
    probs = np.stack(scores["teacher_probs"].to_numpy()) if len(scores) else np.zeros((0, len(class_names)))
    labels = scores["label"].to_numpy().astype(int)
    qp = scores["teacher_score"].to_numpy()
    rank = (probs > qp[:, None]).sum(axis=1) if len(scores) else np.zeros(0, int)  # 0: the top class
    frac = (scores.groupby(["source", "label"])["teacher_score"].rank(method="first", ascending=False, pct=True)
            .to_numpy() if len(scores) else np.zeros(0))
    status, reason = [], []
    for lab, tl, ts, rk, fr in zip(labels, scores["teacher_label"], qp, rank, frac):
        if fcfg.require_top1 and rk >= fcfg.top_k:
            status.append("filtered")
            reason.append(f"teacher predicts {class_names[tl]} (query class p={ts:.2f}, rank {rk + 1})")
        elif ts < fcfg.min_score:
            status.append("filtered")
            reason.append(f"teacher score {ts:.2f} < {fcfg.min_score}")
        elif fcfg.keep_fraction is not None and fr > fcfg.keep_fraction:
            status.append("filtered")
            reason.append(f"teacher score {ts:.2f} below the best {fcfg.keep_fraction:.0%} for this query")
        else:
            status.append("kept")
            reason.append("")
    return pd.DataFrame({"sample_id": scores["sample_id"].to_numpy(), "filter_status": status,
                         "filter_reason": reason})
