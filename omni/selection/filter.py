"""The filter rule: keep a web sample when its teacher agrees with its query.

The authors' rule: the teacher's top class equals the query class (``require_top1``); a
minimum probability of the query class (``min_score``) is an extra knob. The second round
(``second_round``) can instead drop only the samples its scorer confidently gives to another
class (``contradict``), and relabel those with that class (``relabel``).
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import FilterConfig


def read_scores(path: Path, batch_rows: int = 65536) -> pd.DataFrame:
    """A ``scores.parquet`` without its probability vectors, read in batches: each row's
    ``query_rank`` (0: the query class is the teacher's top class) and ``top_score`` (the top
    class's probability) are computed from its vector and the vector dropped, so memory grows
    with the rows, not with rows x classes."""
    import pyarrow.parquet as pq

    out = []
    with pq.ParquetFile(path) as f:
        for batch in f.iter_batches(batch_size=batch_rows):
            df = batch.to_pandas()
            probs = (np.stack(df["teacher_probs"].to_numpy()) if len(df) else np.zeros((0, 1), np.float32))
            df["query_rank"] = ((probs > df["teacher_score"].to_numpy()[:, None]).sum(axis=1) if len(df)
                                else np.zeros(0, int))
            df["top_score"] = probs.max(axis=1) if len(df) else np.zeros(0, np.float32)
            out.append(df.drop(columns=["teacher_probs"]))
    return pd.concat(out, ignore_index=True) if out else pd.read_parquet(path).drop(columns=["teacher_probs"])


def crossfit_fold(item_ids: pd.Series, folds: int = 2) -> np.ndarray:
    """The half (fold) each web item belongs to for cross-fitted scoring: a stable hash of its
    ``item_id``, so every sample of an item (an untrimmed video's windows) falls in the same one."""
    return np.array([zlib.crc32(str(i).encode()) % folds for i in item_ids], dtype=int)


def filter_scores(scores: pd.DataFrame, fcfg: FilterConfig, class_names: list[str],
                  min_relative: float = 0.0) -> pd.DataFrame:
    """``sample_id``, ``filter_status`` (kept / filtered) and ``filter_reason`` per scored sample.

    Rules, in order: the query class must be among the teacher's ``top_k`` classes (top-1 by
    default, the authors' rule; off with ``require_top1: false``); its probability at least
    ``min_score``; with ``min_relative`` (the second round's ``refine_min_relative``), at least that
    fraction of the median query-class probability among the source's samples that pass the two
    rules before (a threshold that follows the scorer's calibration, per source); and with
    ``keep_fraction``, the sample among the best-scored share of its source's items for that query
    (a ranking, robust to a badly calibrated teacher)."""
    labels = scores["label"].to_numpy().astype(int)
    qp = scores["teacher_score"].to_numpy()
    rank = _query_rank(scores)  # 0: the query class is the top class
    frac = (scores.groupby(["source", "label"])["teacher_score"].rank(method="first", ascending=False, pct=True)
            .to_numpy() if len(scores) else np.zeros(0))
    relative = np.zeros(len(scores))
    if min_relative > 0 and len(scores):
        passed = ((rank < fcfg.top_k) | (not fcfg.require_top1)) & (qp >= fcfg.min_score)
        src = scores["source"].to_numpy()
        for s in np.unique(src):
            ok = passed & (src == s)
            if ok.any():
                relative[src == s] = min_relative * float(np.median(qp[ok]))
    status, reason = [], []
    for lab, tl, ts, rk, fr, rel in zip(labels, scores["teacher_label"], qp, rank, frac, relative):
        if fcfg.require_top1 and rk >= fcfg.top_k:
            status.append("filtered")
            reason.append(f"teacher predicts {class_names[tl]} (query class p={ts:.2f}, rank {rk + 1})")
        elif ts < fcfg.min_score:
            status.append("filtered")
            reason.append(f"teacher score {ts:.2f} < {fcfg.min_score}")
        elif ts < rel:
            status.append("filtered")
            reason.append(f"teacher score {ts:.2f} < {min_relative} x this source's median {rel / min_relative:.2f}")
        elif fcfg.keep_fraction is not None and fr > fcfg.keep_fraction:
            status.append("filtered")
            reason.append(f"teacher score {ts:.2f} below the best {fcfg.keep_fraction:.0%} for this query")
        else:
            status.append("kept")
            reason.append("")
    return pd.DataFrame({"sample_id": scores["sample_id"].to_numpy(), "filter_status": status,
                         "filter_reason": reason})


def _top_score(scores: pd.DataFrame) -> np.ndarray:
    if "top_score" in scores.columns:
        return scores["top_score"].to_numpy()
    return np.array([float(np.max(p)) for p in scores["teacher_probs"]]) if len(scores) else np.zeros(0)


def _query_rank(scores: pd.DataFrame) -> np.ndarray:
    """Per sample, how many classes score above the query class (``read_scores``'s column, or
    from the probability vectors)."""
    if "query_rank" in scores.columns:
        return scores["query_rank"].to_numpy().astype(int)
    if not len(scores):
        return np.zeros(0, int)
    probs = np.stack(scores["teacher_probs"].to_numpy())
    return (probs > scores["teacher_score"].to_numpy()[:, None]).sum(axis=1)


def contradicted(scores: pd.DataFrame, min_prob: float) -> np.ndarray:
    """The samples whose scorer puts another class than the query on top, with at least
    ``min_prob`` of probability: the confident contradictions of the crawl's label."""
    return (_query_rank(scores) > 0) & (_top_score(scores) >= min_prob)


def second_round_rule(fcfg: FilterConfig, refine_rule: str, refine_min_score: float) -> FilterConfig | None:
    """The rule the second round selects with: the authors' top-1 rule (``top1``; with
    ``refine_min_score``, also that probability of the query class), the filter's own rule
    (``same``), or None for ``contradict`` (every sample but the confident contradictions). The
    first-round student has learned from hundreds of web samples, so its top class is a far better
    judge than the teacher's (measured with the earlier model defaults: docs/history.md)."""
    if refine_rule == "contradict":
        return None
    if refine_rule == "same":
        return fcfg
    return fcfg.model_copy(update={"require_top1": True, "top_k": 1, "min_score": refine_min_score,
                                   "keep_fraction": None})


def second_round(scores: pd.DataFrame, fcfg: FilterConfig, class_names: list[str], *, min_score: float = 0.0,
                 min_relative: float = 0.0, kinds: dict[str, str] | None = None) -> pd.DataFrame:
    """The second round's verdict on the first-round student's ``scores``, per source with the rule
    ``fcfg.refine_kind_rules`` names for its kind (``kinds``: source name -> image / video /
    untrimmed; without it a source's name is its kind), else ``fcfg.refine_rule``: ``filter_scores`` with
    the top-1 rule (``min_score``, and ``min_relative`` for it alone) or the filter's own, or for ``contradict``
    every sample kept but the confident contradictions. With ``fcfg.refine_relabel`` a confident
    contradiction is kept with the student's class as its training label (``filter_label``; the
    query's class for every other sample)."""
    src = scores["source"].to_numpy() if len(scores) else np.zeros(0, object)
    kinds = kinds or {}
    names = np.array([fcfg.refine_kind_rules.get(kinds.get(s, s), fcfg.refine_rule) for s in src], dtype=object)
    def under(name: str, part: pd.DataFrame) -> pd.DataFrame:  # the relative bar is the top-1 rule's
        return _second_round_one(part, fcfg, second_round_rule(fcfg, name, min_score), class_names,
                                 min_relative if name == "top1" else 0.0)

    if len(set(names)) <= 1:
        return under(names[0] if len(names) else fcfg.refine_rule, scores)
    parts = []
    for name in sorted(set(names)):
        at = np.flatnonzero(names == name)
        parts.append(under(name, scores.iloc[at].reset_index(drop=True)).set_axis(at))
    return pd.concat(parts).sort_index().reset_index(drop=True)


def _second_round_one(scores: pd.DataFrame, fcfg: FilterConfig, rule: FilterConfig | None,
                      class_names: list[str], min_relative: float) -> pd.DataFrame:
    conf = contradicted(scores, fcfg.refine_min_contradiction)
    labels = scores["label"].to_numpy().astype(int)
    top = scores["teacher_label"].to_numpy().astype(int)
    tops, qp = _top_score(scores), scores["teacher_score"].to_numpy()
    if rule is None:
        out = pd.DataFrame({"sample_id": scores["sample_id"].to_numpy(),
                            "filter_status": np.where(conf, "filtered", "kept"),
                            "filter_reason": [f"the first-round student predicts {class_names[t]} (p={p:.2f}; "
                                              f"query class p={q:.2f})" if c else ""
                                              for c, t, p, q in zip(conf, top, tops, qp)]})
    else:
        out = filter_scores(scores, rule, class_names, min_relative=min_relative)
    out["filter_label"] = labels
    if fcfg.refine_relabel:
        moved = conf & (out["filter_status"] == "filtered").to_numpy()
        out.loc[moved, "filter_status"] = "kept"
        out.loc[moved, "filter_label"] = top[moved]
        out.loc[moved, "filter_reason"] = [f"relabeled {class_names[t]}: the first-round student's top class "
                                           f"(p={p:.2f}; query {class_names[lab]} p={q:.2f})"
                                           for t, p, lab, q in zip(top[moved], tops[moved], labels[moved], qp[moved])]
    return out


TEACHERS_KEY = "teachers"  # filter/summary.json's entry on the teachers behind the verdicts (the rest: sources)


def teacher_note(kind: str, val, num_classes: int, fcfg: FilterConfig | None = None) -> dict | None:
    """What ``filter/summary.json`` says of the ``kind`` teacher, from the ``val`` entry of its
    ``teacher/<kind>/summary.json``: val ``top1``, ``chance``, ``query_auc``, ``weak``, and a
    ``warning`` when weak. None when the teacher's summary predates these fields (or has no val)."""
    if not isinstance(val, dict) or not isinstance(val.get("weak"), bool) or \
            not isinstance(val.get("top1"), (int, float)):
        return None
    auc = val.get("query_auc")
    auc = float(auc) if isinstance(auc, (int, float)) else None
    chance = val.get("chance")
    chance = float(chance) if isinstance(chance, (int, float)) else (1.0 / num_classes if num_classes else None)
    note = {"top1": float(val["top1"]), "chance": chance, "query_auc": auc, "weak": val["weak"]}
    if note["weak"]:
        note["warning"] = weak_teacher_warning(kind, note, num_classes, fcfg)
    return note


def weak_teacher_warning(kind: str, note: dict, num_classes: int, fcfg: FilterConfig | None = None) -> str:
    """One sentence for the user: the teacher's numbers, what its filter does, and the options."""
    from ..learning.metrics import WEAK_QUERY_AUC, weak_top1_bar

    n = num_classes or (round(1 / note["chance"]) if note.get("chance") else 0)
    near = n >= 2 and note["top1"] < weak_top1_bar(n)
    auc = note.get("query_auc")
    what = "is near chance" if near or (auc is not None and auc < (WEAK_QUERY_AUC + 0.5) / 2) else "is weak"
    numbers = f"val top-1 {100 * note['top1']:.0f}% for {n} classes" + (
        f", query AUC {auc:.2f}" if auc is not None else "")
    off = [] if fcfg is None else (
        (["filter.keep_fraction: null"] if fcfg.keep_fraction is not None else [])
        + (["filter.require_top1: false"] if fcfg.require_top1 else [])
        + (["filter.min_score: 0"] if fcfg.min_score > 0 else []))
    if fcfg is not None and not off:
        effect = "its scores mean little (the filter is off: it keeps every item)"
        options = f"more target clips per class or a pretrained backbone (teacher.{kind}.pretrained)"
    else:
        effect = "its filter keeps noise and drops good items almost at random"
        options = (f"more target clips per class, a pretrained backbone (teacher.{kind}.pretrained) or "
                   + (" and ".join(off) if off else "filter.keep_fraction: null") + " are the options")
    return f"the {kind} teacher {what} ({numbers}): {effect}; {options}"


def teacher_notes(summary: dict) -> dict:
    """The ``teachers`` entry of a ``filter/summary.json`` (kind -> note), {} when it has none or it
    is not one (an older run, or a source of that name)."""
    got = summary.get(TEACHERS_KEY) if isinstance(summary, dict) else None
    if not isinstance(got, dict):
        return {}
    return {k: v for k, v in got.items() if isinstance(v, dict) and isinstance(v.get("weak"), bool)}
