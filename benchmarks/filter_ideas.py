"""Filter ideas, measured on the zoo's cached runs against each world's ground truth.

For every ``<cache>/work/<world>-s<seed>`` that ``benchmarks/learning_quality.py`` left (teachers
trained, web samples extracted and scored), this re-scores the usable web samples and reports,
per source, how well the query-class probability separates the items that truly show their query
class from the rest (ROC AUC) and the precision / recall of what a rule keeps:

scorers
- ``1 view``: omni's score stage as it is (the source's own teacher, one centred clip);
- ``5 views``: the same teacher, probabilities averaged over 5 temporal x spatial views;
- ``2D+3D``: the mean of the image (appearance) and video (motion) teachers, 5 views each;
- ``student``: the first-round OmniSource student (``filter.refine``), where the run has one;

rules
- ``half``: omni's default, the best-scored half of each source's items per query;
- ``top-1``: the authors' rule, the query class is the teacher's top class;
- ``top-1 + 30%``: top-1, topped up to at least the best-scored 30% per query;
- ``mixture``: per source, a two-Gaussian mixture over the log-odds of the query-class
  probability with a clean share per query (EM); keep where the clean component is likelier;
- ``80%``: omni's default since 2026-11-26, the best-scored 80% per query;
- ``within 2x of top``: keep unless the teacher gives another class more than twice the query
  class's probability (drops what the teacher confidently sees as something else).

No training happens here: a world costs two teachers' predictions (about a minute on 2 cores).

    .venv/bin/python benchmarks/filter_ideas.py            # every cached world
    .venv/bin/python benchmarks/filter_ideas.py --runs c10_t5_n50-s0,c12_t4_n60-s0
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCES = ("web_images", "web_videos", "untrimmed")


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged); nan when one side is empty."""
    positive = np.asarray(positive, bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if not n1 or not n0:
        return float("nan")
    r = pd.Series(score).rank().to_numpy()
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def mixture_keep(x: np.ndarray, groups: np.ndarray, iters: int = 200) -> np.ndarray:
    """Two Gaussians over ``x`` (shared by all groups) with one mixing share per group; True
    where the higher component's posterior exceeds 0.5."""
    if len(x) < 4:
        return np.ones(len(x), bool)
    m = np.percentile(x, [25, 75]).astype(float)
    s = np.full(2, x.std() + 1e-3)
    g = pd.factorize(groups)[0]
    pi = np.full(g.max() + 1, 0.5)
    counts = np.bincount(g)
    for _ in range(iters):
        l0 = (1 - pi[g]) * np.exp(-0.5 * ((x - m[0]) / s[0]) ** 2) / s[0]
        l1 = pi[g] * np.exp(-0.5 * ((x - m[1]) / s[1]) ** 2) / s[1]
        r = l1 / (l0 + l1 + 1e-300)
        for k, w in ((0, 1 - r), (1, r)):
            m[k] = (w * x).sum() / max(w.sum(), 1e-9)
            s[k] = np.sqrt((w * (x - m[k]) ** 2).sum() / max(w.sum(), 1e-9)) + 1e-3
        pi = np.clip(np.bincount(g, weights=r, minlength=len(counts)) / counts, 0.02, 0.98)
    if m[1] < m[0]:
        r = 1 - r
    return r > 0.5


def rules(d: pd.DataFrame, probs: np.ndarray) -> dict[str, np.ndarray]:
    lab = d["label"].to_numpy().astype(int)
    p = probs[np.arange(len(d)), lab]
    share = pd.Series(p).groupby(d["query"].to_numpy()).rank(ascending=False, pct=True, method="first").to_numpy()
    logit = np.log(p + 1e-6) - np.log(1 - p + 1e-6)
    top1 = probs.argmax(axis=1) == lab
    close = p >= 0.5 * probs.max(axis=1)  # the teacher does not clearly prefer another class
    return {"half": share <= 0.5, "80%": share <= 0.8, "top-1": top1, "top-1 + 30%": top1 | (share <= 0.3),
            "mixture": mixture_keep(logit, d["query"].to_numpy()), "within 2x of top": close}


def load_run(work: Path, world: Path) -> pd.DataFrame:
    """Usable, scored web samples with their truth, stored scores and the extract rows."""
    from omni.demo.world import true_classes

    web = pd.read_parquet(work / "manifest" / "web_items.parquet")
    web = web[web["status"].isin(["kept", "filtered"])].copy()
    web["correct"] = np.asarray(true_classes(world, web)) == web["query"].to_numpy()
    stored = pd.concat([pd.read_parquet(work / "score" / s / "scores.parquet",
                                        columns=["sample_id", "teacher_probs"]) for s in SOURCES])
    d = web[["sample_id", "source", "query", "label", "correct"]].merge(stored, on="sample_id")
    for name in ("train/omnisource", "train/refined"):  # the first-round student's scores (filter.refine)
        f = work / name / "scores.parquet"
        if f.exists():
            st = pd.read_parquet(f, columns=["sample_id", "teacher_probs"]).rename(
                columns={"teacher_probs": "student_probs"})
            d = d.merge(st, on="sample_id", how="left")
            break
    return d.reset_index(drop=True)


def views(work: Path, d: pd.DataFrame, teacher: str, n: int) -> np.ndarray:
    from omni.learning.models import is_2d
    from omni.learning.predict import predict_views
    from omni.learning.teacher import teacher_dataset
    from omni.learning.train import load_model

    samples = pd.concat([pd.read_parquet(work / "extract" / s / "samples.parquet") for s in SOURCES])
    rows = samples.set_index("sample_id").loc[d["sample_id"]].reset_index()
    model, m, _ = load_model(work / "teacher" / teacher / "model.pt", "cpu")
    ds = teacher_dataset(rows, work, m, train=False, image_frames=1 if is_2d(m.arch) else m.num_frames,
                         group_by_item=False)
    return predict_views(model, ds, batch_size=32, views=n).mean(axis=1)


def measure(run: str, cache: Path, n_views: int) -> list[dict]:
    work, world = cache / "work" / run, cache / "worlds" / run
    d = load_run(work, world)
    is_img = (d["source"] == "web_images").to_numpy()[:, None]
    video, image = views(work, d, "video", n_views), views(work, d, "image", n_views)
    scorers = {"1 view": np.stack(d["teacher_probs"].to_numpy()),
               f"{n_views} views": np.where(is_img, image, video),
               "2D+3D": (video + image) / 2}
    if "student_probs" in d.columns and d["student_probs"].notna().all():
        scorers["student"] = np.stack(d["student_probs"].to_numpy())
    out = []
    for name, probs in scorers.items():
        for src, idx in d.groupby("source").indices.items():
            g = d.iloc[idx].reset_index(drop=True)
            pr = probs[idx]
            correct = g["correct"].to_numpy()
            row = {"run": run, "scorer": name, "source": src, "items": len(g), "clean share": correct.mean(),
                   "auc": auc(pr[np.arange(len(g)), g["label"].to_numpy().astype(int)], correct)}
            for rule, keep in rules(g, pr).items():
                row[f"{rule} P"] = float(correct[keep].mean()) if keep.any() else float("nan")
                row[f"{rule} R"] = float(keep[correct].mean()) if correct.any() else float("nan")
            out.append(row)
    return out


def markdown(df: pd.DataFrame) -> str:
    names = ["half", "80%", "top-1", "top-1 + 30%", "mixture", "within 2x of top"]
    cols = ["auc"] + [f"{n} {m}" for n in names for m in ("P", "R")]
    mean = df.groupby(["scorer", "source"], sort=False)[[c for c in cols if c in df]].mean().reset_index()
    lines = ["| scorer | source | AUC | " + " | ".join(f"{n} P / R" for n in names) + " |",
             "|---|---|---|" + "---|" * len(names)]

    def pr(r, n):
        return f"{r[n + ' P']:.2f} / {r[n + ' R']:.2f}" if f"{n} P" in r else "-"

    for _, r in mean.iterrows():
        lines.append(f"| {r['scorer']} | {r['source']} | {r['auc']:.3f} | " + " | ".join(pr(r, n) for n in names) + " |")
    runs = ", ".join(sorted(df["run"].unique()))
    return ("Mean over the runs " + runs + " (the student only where the run has one).\n\n" + "\n".join(lines)
            + "\n\nAUC: how well the query-class probability ranks true items above noise; P / R: precision / "
              "recall of the kept items against the world's ground truth.\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "results" / "learning_quality" / "cache")
    ap.add_argument("--runs", default=None, help="comma list of <world>-s<seed> (default: every cached run)")
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "filter_ideas")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    runs = args.runs.split(",") if args.runs else sorted(
        p.name for p in (args.cache / "work").iterdir() if (p / "score" / "web_videos" / "scores.parquet").exists())
    rows = []
    for run in runs:
        print(f"{run} ...", flush=True)
        rows += measure(run, args.cache, args.views)
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "filter_ideas.csv", index=False)
    text = markdown(df)
    (args.out / "filter_ideas.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
