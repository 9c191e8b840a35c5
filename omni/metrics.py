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
