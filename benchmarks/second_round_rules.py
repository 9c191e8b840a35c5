"""Second-round rules on saved scores: precision / recall per source against ground truth.

Reads, for each finished learning-quality run given as ``CACHE:WORLD-sSEED`` (a
``benchmarks/learning_quality.py --cache`` folder and a run name), the first-round student's
scores (``work/<run>/train/omnisource/scores.parquet``) and the world's ground truth, and prints
the mean precision / recall of the samples each candidate rule would keep. No training: it shows
what a rule buys in selection quality; whether the student gains is a learning_quality run.

A second table asks why the student's top-1 verdict lets noise through: per source, the share of
noise samples (and of true ones) whose top class is their query, split by whether the first-round
student trained on them (kept by the first round) or never saw them. A student that memorised its
noisy training samples re-selects them: the kept share is far above the unseen share.

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


def seen_vs_unseen(d: pd.DataFrame, cache: Path, run: str) -> list[tuple]:
    """(run, source, first round, noise -> top-1 share, n noise, true -> top-1 share, n true)."""
    r1 = pd.read_parquet(cache / "work" / run / "manifest/web_items.parquet", columns=["sample_id", "status"])
    d = d.merge(r1.rename(columns={"status": "first_round"}), on="sample_id")
    p = np.stack(d["teacher_probs"].to_numpy())
    d["top1"] = p.argmax(1) == d["label"].to_numpy().astype(int)
    out = []
    for (src, fr), g in d.groupby(["source", "first_round"]):
        noise, true = g[~g["ok"]], g[g["ok"]]
        out.append((run, src, "trained on" if fr == "kept" else "unseen", noise["top1"].mean(), len(noise),
                    true["top1"].mean(), len(true)))
    return out


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
    rows, seen = [], []
    for arg in argv:
        cache, run = arg.rsplit(":", 1)
        d = load(Path(cache), run)
        seen += seen_vs_unseen(d, Path(cache), run)
        for name, keep in rules(d).items():
            for src, g in d.groupby("source"):
                k, ok = keep[g.index.to_numpy()], g["ok"].to_numpy()
                rows.append((run, name, src, ok[k].mean() if k.any() else np.nan, k[ok].mean() if ok.any() else np.nan))
    r = pd.DataFrame(rows, columns=["run", "rule", "source", "precision", "recall"])
    t = r.groupby(["rule", "source"])[["precision", "recall"]].mean().unstack("source").round(3)
    print(f"mean over {len(argv)} runs")
    print(t.to_string())
    m = pd.DataFrame(seen, columns=["run", "source", "first-round student", "noise -> top-1", "n noise",
                                    "true -> top-1", "n true"])
    print(f"\nshare judged top-1 (= query) by the first-round student, mean over {len(argv)} runs")
    print(m.groupby(["source", "first-round student"])[["noise -> top-1", "n noise", "true -> top-1", "n true"]]
          .mean().round(2).to_string())
    print("\nper run, web videos")
    v = m[m["source"] == "web_videos"].pivot(index="run", columns="first-round student", values="noise -> top-1")
    print(v.round(2).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
