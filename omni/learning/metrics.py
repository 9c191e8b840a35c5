"""Classification metrics from probability vectors."""
from __future__ import annotations

import numpy as np


def classification_metrics(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """top1, top5 (top-min(5, K)), mean class accuracy, per-class accuracy, confusion matrix."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return {"top1": None, "top5": None, "mean_class_accuracy": None, "per_class_accuracy": {},
                "confusion": [[0] * num_classes for _ in range(num_classes)], "num_samples": 0}
    pred = probs.argmax(1)
    k = min(5, num_classes)
    topk = np.argsort(-probs, axis=1)[:, :k]
    per_class = {c: float((pred[labels == c] == c).mean()) for c in range(num_classes) if (labels == c).any()}
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    return {
        "top1": float((pred == labels).mean()),
        "top5": float((topk == labels[:, None]).any(1).mean()),
        "mean_class_accuracy": float(np.mean(list(per_class.values()))) if per_class else 0.0,
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
        "num_samples": int(len(labels)),
    }


def clip_top1(view_probs: np.ndarray, labels: np.ndarray) -> float | None:
    """Accuracy of single views (``[N, V, K]``): every view judged alone."""
    if len(labels) == 0:
        return None
    return float((view_probs.argmax(-1) == np.asarray(labels)[:, None]).mean())


# When a teacher is too weak for its filter to mean anything (``teacher_health``): its val top-1
# below WEAK_TOP1_TIMES_CHANCE x chance (capped at halfway from chance to perfect, so that two
# classes do not need 100%) or below chance + WEAK_TOP1_OVER_CHANCE, whichever bar is higher; or
# its query AUC (how well p(q) tells class q's clips from the others', the filter's job) below
# WEAK_QUERY_AUC (0.5 is a coin toss). Such a filter keeps the crawl's noise and drops good items
# almost at random.
WEAK_TOP1_TIMES_CHANCE = 2.0
WEAK_TOP1_OVER_CHANCE = 0.15
WEAK_QUERY_AUC = 0.7


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties sharing their average rank (as Mann-Whitney's U needs)."""
    uniq, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (first + (counts + 1) / 2.0)[inv.reshape(-1)]


def query_auc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """How well the probability of a class q separates the clips of class q from the others':
    the one-vs-rest ROC AUC of ``probs[:, q]``, averaged over the classes with both positives and
    negatives among ``labels`` (ties count half). A web item found by query q is kept or dropped
    on exactly that probability, so this is the filter's accuracy on clips whose class is known.
    None when no class has both (or the probabilities are not finite)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if probs.ndim != 2 or len(labels) != len(probs) or not len(labels) or not np.isfinite(probs).all():
        return None
    aucs = []
    for q in range(probs.shape[1]):
        pos = labels == q
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if not n_pos or not n_neg:
            continue
        ranks = _average_ranks(probs[:, q])
        aucs.append((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
    return float(np.mean(aucs)) if aucs else None


def weak_top1_bar(num_classes: int) -> float:
    """The val top-1 below which a teacher of ``num_classes`` classes is near chance."""
    chance = 1.0 / num_classes
    return max(min(WEAK_TOP1_TIMES_CHANCE * chance, (1.0 + chance) / 2.0), chance + WEAK_TOP1_OVER_CHANCE)


def teacher_health(top1: float | None, auc: float | None, num_classes: int) -> dict:
    """``chance``, ``query_auc`` and ``weak`` (see the WEAK_* constants) of a teacher with val
    ``top1`` and query AUC ``auc``; ``weak`` is None when neither is known, False for one class
    (nothing to tell apart)."""
    chance = 1.0 / num_classes if num_classes > 0 else None
    if num_classes < 2:
        weak = False
    elif top1 is None and auc is None:
        weak = None
    else:
        weak = bool((top1 is not None and top1 < weak_top1_bar(num_classes))
                    or (auc is not None and auc < WEAK_QUERY_AUC))
    return {"chance": chance, "query_auc": auc, "weak": weak}
