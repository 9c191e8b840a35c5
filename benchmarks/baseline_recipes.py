"""omni's target-only baseline under training-recipe variants, beside the plain reference.

The zoo's "baseline within a few points of a plain, well-tuned small 3D CNN" is a claim about
omni's default recipe on tiny targets. This trains only what the claim needs: per world and seed,
omni's ``train/baseline`` (after ``ingest/target`` and ``extract/target``; no web data, no
teachers) for each recipe variant, evaluated by ``evaluate/baseline``, and the reference
(``reference_model.py``) on the same clips. Every variant is paired with the default on the same
world-seed, so the table reports the mean paired difference.

    python benchmarks/baseline_recipes.py --worlds demo,c6_t3_n40 --seeds 0,1 \\
        --variant steps400=train.model.steps=400 --variant lr2e3=train.model.lr=0.002

Writes ``runs.jsonl`` (one row per world, seed, variant; finished rows are skipped on a rerun)
and ``table.md`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

UNITS = ("ingest/target", "extract/target", "train/baseline", "evaluate/baseline")


def baseline_top1(world: Path, workdir: Path, overrides: list[str]) -> dict:
    from learning_quality import _config, world_config
    from omni import pipeline

    cfg = _config(world_config(world, workdir, overrides))
    keys = pipeline.Keys(cfg)
    t0 = time.time()
    for unit in UNITS:
        pipeline.run_unit(cfg, unit, keys)
    return {"top1": pipeline.read_metrics(cfg, "baseline")["top1"], "wall_s": round(time.time() - t0, 1)}


def markdown(rows: list[dict], variants: list[str]) -> str:
    by = {(r["world"], r["seed"], r["variant"]): r for r in rows}
    pairs = sorted({(r["world"], r["seed"]) for r in rows})
    head = "| world, seed | reference | " + " | ".join(variants) + " |"
    lines = [head, "|" + "---|" * (len(variants) + 2)]
    for w, s in pairs:
        ref = next((r.get("reference") for r in rows if (r["world"], r["seed"]) == (w, s) and r.get("reference")), None)
        cells = [f"{100 * by[(w, s, v)]['top1']:.1f}" if (w, s, v) in by else "" for v in variants]
        lines.append(f"| `{w}` s{s} | {'' if ref is None else f'{100 * ref:.1f}'} | " + " | ".join(cells) + " |")
    mean = []
    for v in variants:
        d = [100 * (by[(w, s, v)]["top1"] - by[(w, s, variants[0])]["top1"]) for w, s in pairs
             if (w, s, v) in by and (w, s, variants[0]) in by]
        top = [100 * by[(w, s, v)]["top1"] for w, s in pairs if (w, s, v) in by]
        mean.append(f"{np.mean(top):.1f} ({'+' if np.mean(d) >= 0 else ''}{np.mean(d):.1f}, n={len(d)})" if d else "")
    refs = [100 * r["reference"] for r in rows if r["variant"] == variants[0] and r.get("reference")]
    lines.append(f"| mean (paired change vs `{variants[0]}`) | {np.mean(refs):.1f} | " + " | ".join(mean) + " |"
                 if refs else "| mean | | " + " | ".join(mean) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", required=True, help="comma list of zoo worlds or 'demo'")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[;KEY=VALUE]",
                    help="a recipe variant (repeatable); 'default' (no overrides) always runs first")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for every variant")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "baseline_recipes")
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args(argv)
    variants = {"default": []}
    for v in args.variant:
        name, _, over = v.partition("=")
        variants[name] = [o for o in over.split(";") if o]
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or args.out / "cache"
    runs_path = args.out / "runs.jsonl"
    rows = [json.loads(x) for x in runs_path.read_text().splitlines() if x] if runs_path.exists() else []
    have = {(r["world"], r["seed"], r["variant"]) for r in rows}
    from learning_quality import make_world
    from reference_model import train_reference

    start = time.time()
    for w in args.worlds.split(","):
        for s in (int(x) for x in args.seeds.split(",")):
            world = make_world(cache, w, s)
            for name, over in variants.items():
                if (w, s, name) in have:
                    continue
                row = {"world": w, "seed": s, "variant": name, "overrides": " ".join(over)}
                row.update(baseline_top1(world, cache / "work" / f"{w}-s{s}-{name}",
                                         [f"train.seed={s}", *args.set, *over]))
                if name == "default" and not args.no_reference:
                    import torch
                    torch.set_num_threads(2)
                    row["reference"] = train_reference(world, seed=s)["top1"]
                print(f"[{time.time() - start:6.0f}s] {w} s{s} {name}: {row}", flush=True)
                with runs_path.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                rows.append(row)
    md = markdown(rows, list(variants))
    (args.out / "table.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
