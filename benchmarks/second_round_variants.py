"""Second-round rules, trained: retrain only the model omni hands over, under several rules.

For each finished learning-quality run given as ``CACHE:WORLD-sSEED`` (a
``benchmarks/learning_quality.py --cache`` folder and a run name whose workdir still holds
``train/first_round``), this scores every usable web sample with the first-round student (once,
under ``CACHE/second_round_variants/<run>/scores/``; models beside it), selects with ``omni.selection.filter.second_round`` under each variant, trains
the student exactly as the train stage does (``omni.learning.train.train_student``, the run's seed, one
thread, fp32) and evaluates it on the target val clips. A run is deterministic: the ``top1`` variant
reproduces the zoo's two-round figure to the digit. Writes ``--out/runs.jsonl`` (one line per run and
variant, appended; a rerun skips finished ones) with top-1 and, per source, what was kept and how
much of it truly shows its training label.

Variants (``--variants``, comma-separated):
- ``top1``: omni's default second round (the first-round student's top class is the query);
- ``top1_relabel``: the same, and a dropped sample the student gives to another class with at least
  ``refine_min_contradiction`` (0.7) of probability is kept with that class as its label;
- ``contradict``: every sample kept but those confident contradictions;
- ``contradict_relabel``: every sample kept, the confident contradictions relabeled;
- ``video_top1``: ``contradict_relabel`` for images and windows, ``top1_relabel`` for web videos;
- ``video_top1_rel05``: the same with ``refine_min_relative`` 0.5 (on the web videos' top-1 samples),
  omni's default on 2026-11-27;
- ``video_top1_rel06``: the same with a bar of 0.6, omni's default selection since (with hard labels
  until that night);
- ``video_top1_rel06_soft05``: the 0.6 bar's selection, each web sample learning from 0.5 x its
  label + 0.5 x the first-round student's probabilities (``train.soft_target_weight``, read by
  ``omni.selection.manifest.with_judge_probs`` as the train stage does); ``_soft05_iw``: the same for images and untrimmed windows only
  (web videos, held to the top-1 rule, keep their plain label), omni's default since 2026-11-27, night;
  ``_soft025_iw``: the same with a weight of 0.25;
- ``unfiltered``: every usable web sample under its query's class (the zoo's unfiltered run, for
  world-seeds where it did not run).

    python benchmarks/second_round_variants.py /tmp/cache:c8_t8_n60-s2 --variants top1,contradict_relabel
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCES = ("web_images", "web_videos", "untrimmed")
_ALL = {"refine_kind_rules": {}}  # every field a variant's rule reads is set (not omni's current defaults)
VARIANTS = {"top1": {**_ALL, "refine_rule": "top1", "refine_relabel": False},
            "top1_relabel": {**_ALL, "refine_rule": "top1", "refine_relabel": True},
            "contradict": {**_ALL, "refine_rule": "contradict", "refine_relabel": False},
            "contradict_relabel": {**_ALL, "refine_rule": "contradict", "refine_relabel": True},
            "video_top1_rel05": {"refine_rule": "contradict", "refine_relabel": True,
                                 "refine_kind_rules": {"video": "top1"}, "min_relative": 0.5},
            "video_top1_rel06": {"refine_rule": "contradict", "refine_relabel": True,
                                 "refine_kind_rules": {"video": "top1"}, "min_relative": 0.6},
            "video_top1_rel06_soft05": {"refine_rule": "contradict", "refine_relabel": True,
                                        "refine_kind_rules": {"video": "top1"}, "min_relative": 0.6, "soft": 0.5},
            "video_top1_rel06_soft05_iw": {"refine_rule": "contradict", "refine_relabel": True,
                                           "refine_kind_rules": {"video": "top1"}, "min_relative": 0.6, "soft": 0.5,
                                           "soft_sources": ("web_images", "untrimmed")},
            "video_top1_rel06_soft025_iw": {"refine_rule": "contradict", "refine_relabel": True,
                                            "refine_kind_rules": {"video": "top1"}, "min_relative": 0.6, "soft": 0.25,
                                            "soft_sources": ("web_images", "untrimmed")},
            "video_top1": {"refine_rule": "contradict", "refine_relabel": True, "refine_kind_rules": {"video": "top1"}},
            "unfiltered": None}
KINDS = {"web_images": "image", "web_videos": "video", "untrimmed": "untrimmed"}


def score_once(wd: Path, web: pd.DataFrame, out: Path) -> pd.DataFrame:
    from omni.learning.score import assemble_scores, score_samples

    if not (out / "scores.parquet").exists():
        info = score_samples(web, wd, wd / "train" / "first_round", "student", out, amp=False, device="cpu")
        assemble_scores(out, info["shards"])
    return pd.read_parquet(out / "scores.parquet")


def one(cache: Path, run: str, variants: list[str], out: Path, done: set, log) -> list[dict]:
    import torch

    from omni.config import FilterConfig, TrainConfig
    from omni.demo.world import true_classes
    from omni.learning.evaluate import evaluate_model
    from omni.selection.filter import second_round
    from omni.selection.manifest import TRAIN_COLUMNS, with_judge_probs
    from omni.learning.train import RunOptions, train_student

    wd, world = cache / "work" / run, cache / "worlds" / run
    seed = int(run.rsplit("-s", 1)[1])
    web = pd.concat([pd.read_parquet(wd / "extract" / s / "samples.parquet") for s in SOURCES], ignore_index=True)
    target = pd.read_parquet(wd / "extract" / "target" / "samples.parquet")
    target = target[target["extract_status"] == "ok"]
    items = pd.read_parquet(wd / "manifest" / "web_items.parquet")  # usable: past ingest, dedup, leak check
    usable = items[items["status"].isin(["kept", "filtered"])][["sample_id", "url", "start_s", "end_s", "query"]]
    scratch = cache / "second_round_variants" / run
    scores = score_once(wd, web, scratch / "scores")
    scores = scores[scores["sample_id"].isin(set(usable["sample_id"]))].reset_index(drop=True)
    names = torch.load(wd / "train" / "first_round" / "model.pt", map_location="cpu", weights_only=False)["class_names"]
    truth = np.array(true_classes(world, usable.set_index("sample_id").loc[scores["sample_id"]].reset_index()))
    query = np.array([names[i] for i in scores["label"]])
    rows = []
    if not variants:  # --variants "" : score only (for benchmarks/second_round_rules.py-style analysis)
        return rows
    for v in variants:
        if (run, v) in done:
            continue
        soft, soft_sources = 0.0, SOURCES
        if VARIANTS[v] is None:  # every usable sample under its query's class
            sel = pd.DataFrame({"filter_status": "kept", "filter_label": scores["label"].to_numpy()})
        else:
            spec = dict(VARIANTS[v])
            min_relative = spec.pop("min_relative", 0.0)
            soft = spec.pop("soft", 0.0)
            soft_sources = spec.pop("soft_sources", SOURCES)
            sel = second_round(scores, FilterConfig(**spec), names, min_relative=min_relative, kinds=KINDS)
        kept = (sel["filter_status"] == "kept").to_numpy()
        label = sel["filter_label"].to_numpy().astype(int)
        trains_as = np.array([names[i] for i in label])
        moved = kept & (trains_as != query)
        per = {}
        for s in SOURCES:
            m = (scores["source"] == s).to_numpy()
            per[s] = {"kept": int((kept & m).sum()), "relabeled": int((moved & m).sum()),
                      "precision": round(float((truth == trains_as)[kept & m].mean()), 3) if (kept & m).any() else None,
                      "recall": round(float((kept & (truth == trains_as))[m & (truth == query)].mean()), 3)
                      if (m & (truth == query)).any() else None,
                      "relabel_precision": round(float((truth == trains_as)[moved & m].mean()), 3)
                      if (moved & m).any() else None}
        lab = dict(zip(scores["sample_id"], label))
        chosen = web[web["sample_id"].isin(set(scores["sample_id"][kept]))]
        chosen = chosen.assign(label=chosen["sample_id"].map(lab).astype(int).to_numpy())
        train = pd.concat([target[target["split"] == "train"][TRAIN_COLUMNS], chosen[TRAIN_COLUMNS]], ignore_index=True)
        if soft:
            train = with_judge_probs(train, scratch / "scores" / "scores.parquet", soft_sources)
        t0 = time.time()
        model_dir = scratch / "models" / v
        train_student(train, TrainConfig(seed=seed, threads=1, amp=False, soft_target_weight=soft), names, wd, model_dir,
                      f"second_round_variants:{run}:{v}", run=RunOptions(device="cpu"))
        m = evaluate_model(model_dir / "model.pt", target[target["split"] == "val"], wd, num_clips=2, amp=False,
                           device="cpu")
        row = {"run": run, "variant": v, "top1": m["top1"], "train_rows": len(train),
               "train_s": round(time.time() - t0, 1), "sources": per}
        log(json.dumps(row))
        with open(out / "runs.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="CACHE:WORLD-sSEED")
    ap.add_argument("--variants", default="top1,contradict_relabel")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "second_round_variants")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    runs_path = args.out / "runs.jsonl"
    done = set()
    if runs_path.exists():
        done = {(r["run"], r["variant"]) for r in map(json.loads, runs_path.read_text().splitlines())}
    for spec in args.runs:
        cache, run = spec.rsplit(":", 1)
        one(Path(cache), run, variants, args.out, done, lambda msg: print(msg, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
