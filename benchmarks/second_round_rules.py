"""Second-round rules on saved scores: precision / recall per source against ground truth.

Reads, for each finished learning-quality run given as ``CACHE:WORLD-sSEED`` (a
``benchmarks/learning_quality.py --cache`` folder and a run name), the first-round student's
scores (``work/<run>/train/omnisource/scores.parquet``) and the world's ground truth, and prints
the mean precision / recall of the samples each candidate rule would keep. No training: it shows
what a rule buys in selection quality; whether the student gains is a learning_quality run.

    python benchmarks/second_round_rules.py /tmp/cache:demo-s0 /tmp/cache:c10_t5_n50-s0
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from omni.demo.world import true_classes  # noqa: E402


def load(cache: Path, run: str) -> pd.DataFrame:
    wd = cache / "work" / run
    scores = pd.read_parquet(wd / "train/omnisource/scores.parquet", columns=["sample_id", "teacher_probs"])
    web = pd.read_parquet(wd / "train/omnisource/web_items.parquet")
    web = web[web["status"].isin(["kept", "filtered"])].copy()
    web["true"] = true_classes(cache / "worlds" / run, web)
    d = web.merge(scores, on="sample_id").reset_index(drop=True)
    d["ok"] = d["true"] == d["query"]
    return d


def rules(d: pd.DataFrame) -> dict[str, np.ndarray]:
    p = np.stack(d["teacher_probs"].to_numpy())
    y = d["label"].to_numpy().astype(int)
    q = p[np.arange(len(d)), y]
    top1 = p.argmax(1) == y
    second = np.sort(p, 1)[:, -2]
    out = {"top-1": top1}
    for t in (0.3, 0.4, 0.5, 0.6, 0.7):
        out[f"top-1 and p >= {t}"] = top1 & (q >= t)
    out["top-1, margin >= 0.2"] = top1 & (q - second >= 0.2)
    # refine_min_relative: p at least r x the median p of the source's top-1 samples
    median = d.assign(q=q)[top1].groupby("source")["q"].median()
    med = d["source"].map(median).to_numpy(dtype=float)
    for r in (0.4, 0.5, 0.6, 0.7):
        out[f"top-1 and p >= {r} x source median"] = top1 & (q >= r * med)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    rows = []
    for arg in argv:
        cache, run = arg.rsplit(":", 1)
        d = load(Path(cache), run)
        for name, keep in rules(d).items():
            for src, g in d.groupby("source"):
                k, ok = keep[g.index.to_numpy()], g["ok"].to_numpy()
                rows.append((run, name, src, ok[k].mean() if k.any() else np.nan, k[ok].mean() if ok.any() else np.nan))
    r = pd.DataFrame(rows, columns=["run", "rule", "source", "precision", "recall"])
    t = r.groupby(["rule", "source"])[["precision", "recall"]].mean().unstack("source").round(3)
    print(f"mean over {len(argv)} runs")
    print(t.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
