"""Filter rules with more than one weak teacher, measured on finished zoo runs (issue 33, part 4).

For each finished ``benchmarks/learning_quality.py`` world-seed (its generated world and omni
workdir under ``--cache``), the web videos and untrimmed windows are scored again, without
training anything, by: the video teacher (1 and 3 views), the image teacher on the clip's middle
frame (1 and 3 frames), their mean and geometric mean, and both teachers' agreement; each rule's
precision and recall against the world's ground truth is reported, beside the default filter's
(the best-scored 80% per query by the video teacher) and the teacher's val top-1 and query AUC.

    .venv/bin/python benchmarks/teacher_rules.py --cache benchmarks/results/learning_quality/cache [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _keep_share(p_query: np.ndarray, labels: np.ndarray, share: float) -> np.ndarray:
    ranks = pd.Series(p_query).groupby(labels).rank(ascending=False, pct=True, method="first").to_numpy()
    return ranks <= share


def rules_for(world: Path, work: Path, sources=("web_videos", "untrimmed")) -> list[dict]:
    """One row per (source, rule): precision, recall and kept count against the ground truth."""
    from omni.demo.world import true_classes
    from omni.learning.predict import predict
    from omni.learning.teacher import teacher_dataset
    from omni.learning.train import load_model

    names = (world / "classes.txt").read_text().split()
    web = pd.read_parquet(work / "manifest" / "web_items.parquet")
    img_model, img_m, _ = load_model(work / "teacher/image/model.pt", "cpu")
    vid_model, vid_m, _ = load_model(work / "teacher/video/model.pt", "cpu")
    out = []
    for src in sources:
        path = work / "extract" / src / "samples.parquet"
        if not path.exists():
            continue
        ex = pd.read_parquet(path)
        ex = ex[ex["extract_status"] == "ok"].reset_index(drop=True)
        cols = ["sample_id", "url"] + [c for c in ("start_s", "end_s") if c in web]
        ex = ex.drop(columns=[c for c in ("start_s", "end_s") if c in ex]).merge(web[cols], on="sample_id", how="left")
        labels = ex["label"].to_numpy().astype(int)
        truth = np.array(true_classes(world, ex))
        pos = truth == np.array([names[i] for i in labels])

        def scores(model, m, views, frames=None):
            ds = teacher_dataset(ex, work, m, train=False, group_by_item=False, image_frames=frames)
            return predict(model, ds, views=views)

        pv, pv3 = scores(vid_model, vid_m, 1), scores(vid_model, vid_m, 3)
        pi, pi3 = scores(img_model, img_m, 1, 1), scores(img_model, img_m, 3, 1)
        idx = np.arange(len(labels))

        def top1(p):
            return p.argmax(1) == labels

        rules = {
            "video teacher, best 80% per query (default)": _keep_share(pv[idx, labels], labels, 0.8),
            "video teacher, best 50% per query": _keep_share(pv[idx, labels], labels, 0.5),
            "video teacher top-1": top1(pv),
            "video teacher top-1, 3 views": top1(pv3),
            "image teacher top-1 (middle frame)": top1(pi),
            "image teacher top-1, 3 frames": top1(pi3),
            "mean of both, top-1": top1((pv + pi) / 2),
            "geometric mean of both, top-1": top1(np.sqrt(pv * pi)),
            "both teachers' top-1": top1(pv) & top1(pi),
            "mean of both, best 50% per query": _keep_share(((pv + pi) / 2)[idx, labels], labels, 0.5),
        }
        for rule, keep in rules.items():
            out.append({"source": src, "rule": rule, "kept": int(keep.sum()),
                        "precision": float(pos[keep].mean()) if keep.any() else float("nan"),
                        "recall": float((keep & pos).sum() / max(1, pos.sum())), "noise": float(1 - pos.mean())})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True, help="a learning_quality --cache folder (worlds/, work/)")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    rows = []
    for work in sorted((args.cache / "work").iterdir()):
        world = args.cache / "worlds" / work.name
        if not (work / "teacher/video/model.pt").exists() or not (work / "manifest/web_items.parquet").exists():
            continue
        teachers = {k: json.loads((work / f"teacher/{k}/summary.json").read_text()).get("val", {})
                    for k in ("image", "video")}
        for r in rules_for(world, work):
            rows.append({"world": work.name, **r, "video_top1": teachers["video"].get("top1"),
                         "video_auc": teachers["video"].get("query_auc"), "image_top1": teachers["image"].get("top1")})
        print(f"{work.name}: done", flush=True)
    if not rows:
        print("no finished world-seeds under", args.cache)
        return 1
    df = pd.DataFrame(rows)
    per = df.groupby(["source", "rule"], sort=False)[["precision", "recall"]].mean().reset_index()
    lines = [f"Over {df['world'].nunique()} world-seeds ({', '.join(sorted(df['world'].unique()))}); "
             f"mean teacher val top-1: video {100 * df['video_top1'].mean():.1f}%, image "
             f"{100 * df['image_top1'].mean():.1f}%.", "", "| source | rule | precision | recall |", "|---|---|---|---|"]
    lines += [f"| {r.source} | {r.rule} | {r.precision:.2f} | {r.recall:.2f} |" for r in per.itertuples()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        df.to_csv(args.out.with_suffix(".csv"), index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
