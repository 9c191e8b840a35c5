"""Learning quality on the world zoo: does omni's model learn, and does the web data pay off?

For each zoo world (``omni.demo.world.ZOO``) and seed (the world's generator seed and omni's
``train.seed``), this generates the world, runs omni's stages directly (no Prefect) with the
default settings (fp32: ``train.amp=false``; local files, so ``ingest.allow_private_addresses``),
then runs OmniSource again unfiltered (``filter.require_top1=false``, ``min_score=0``, ``keep_fraction=null``,
``refine=false``: the teacher's verdict ignored, no second round; ingest/extract/teacher/score/baseline are
cache hits; "filtered minus unfiltered" compares it with the model omni hands over), and trains the
plain reference (``benchmarks/reference_model.py``) on the same target clips.

Writes under ``--out`` (default ``benchmarks/results/learning_quality``):
- ``runs.jsonl``: one line per (world, seed), appended as each finishes (a rerun skips finished ones);
- ``table.md`` / ``table.csv``: per world, mean and spread (sample std) over seeds of the reference,
  baseline, OmniSource, unfiltered OmniSource top-1, the gain, filtered minus unfiltered, and the
  filter's precision / recall per source against the world's ground truth, plus train times.

    .venv/bin/python benchmarks/learning_quality.py --jobs 2        # 6 worlds x 3 seeds, defaults (~5 h on 2 cores)
    .venv/bin/python benchmarks/learning_quality.py --families tuning --jobs 2   # every world of the tuning families
    .venv/bin/python benchmarks/learning_quality.py --families all --jobs 2      # the final table: held-out families too
    .venv/bin/python benchmarks/learning_quality.py --quick         # 2 worlds x 1 seed
    .venv/bin/python benchmarks/learning_quality.py --recipe before33   # omni's defaults before issue 33
    .venv/bin/python benchmarks/learning_quality.py --worlds c10_t5_n50 --seeds 0,1 \\
        --set train.model.epochs=100                                # any omni config override
    .venv/bin/python benchmarks/learning_quality.py --worlds demo   # the default demo world, 3 seeds
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

QUICK_WORLDS = ["c6_t5_n20", "c10_t5_n50"]
# the grid's six worlds (the zoo's look-alike world, c8_t5_n50_conf, only when named)
GRID_WORLDS = ["c6_t5_n20", "c6_t3_n40", "c8_t8_n60", "c10_t5_n50", "c12_t10_n30", "c12_t4_n60"]


def family_worlds(held_out: bool) -> list[str]:
    """The zoo worlds of the families used for tuning (``held_out`` False: never the held-out
    families), or of every family (True: the final table)."""
    from omni.demo.world import FAMILIES, HELD_OUT_FAMILIES

    return [w for fam, ws in FAMILIES.items() if held_out or fam not in HELD_OUT_FAMILIES for w in ws
            if w != "c8_t5_n50_conf"]


# omni's defaults before issue 33 (SlowOnly-style c3d_small on random crops of 8 frames spread over
# each clip, dataset normalisation, mirroring, 600 steps; a tsn_resnet10t image teacher on 3 frames),
# for side by side comparison on worlds nobody tuned either on: --recipe before33
_BEFORE33_MODEL = {"arch": "c3d_small", "input_size": 48, "frame_sampling": "segments", "resize": "crop",
                   "normalize": "dataset", "steps": 600, "warmup_frac": 0.05}
RECIPES = {"default": [],
           "before33": [f"{sec}.{k}={v}" for sec in ("train.model", "teacher.video") for k, v in _BEFORE33_MODEL.items()]
           + [f"teacher.image.{k}={v}" for k, v in {**_BEFORE33_MODEL, "arch": "tsn_resnet10t", "num_frames": 3}.items()]
           + ["extract.fps=null", "train.augment.flip=true", "train.augment.shift=0", "train.augment.gain=0",
              "train.augment.brightness=0", "train.augment.noise=0"]}
# --profile: only the defaults now (the "hour" profile shrank the old 48 px SlowOnly-style models;
# omni's default is now the small reference-sized model)
PROFILES = {"default": {"set": [], "reference": {}}}
SOURCES = ("web_images", "web_videos", "untrimmed")


def world_config(world: Path, workdir: Path, overrides: list[str]) -> dict:
    """omni's defaults over the world: sources + fp32 + local files; no training recipe."""
    from omni.config import _set_dotted, parse_overrides
    from omni.demo.world import demo_config

    demo = demo_config(world, workdir, world / "crawl")
    cfg = {k: demo[k] for k in ("workdir", "classes", "target", "sources")}
    cfg["ingest"] = {"allow_private_addresses": True, "workers": 4, "tries": 1, "backoff_s": 0.0,
                     "local_roots": [str(world)]}
    cfg["extract"] = {"workers": 1}
    cfg["train"] = {"amp": False, "threads": 2}
    for key, value in parse_overrides(overrides):
        _set_dotted(cfg, key, value)
    return cfg


def _config(data: dict):
    from omni.config import config_from_dict
    return config_from_dict(data, base=ROOT, origin="learning_quality")


def run_omni(cfg_data: dict, log) -> dict:
    from omni import pipeline

    cfg = _config(cfg_data)
    keys = pipeline.Keys(cfg)
    times, out = {}, {}
    for name in pipeline.STAGES:
        t = time.time()
        for res in pipeline.run_stage(cfg, name, keys):
            if name == "train":
                out.setdefault("train_s", {})[res.stage.split("/")[-1]] = res.info.get("elapsed_s")
        times[name] = round(time.time() - t, 1)
        log(f"    {name} {times[name]}s")
    out["times"] = times
    for run in pipeline.runs(cfg):
        out[run] = pipeline.read_metrics(cfg, run)["top1"]
    for kind in pipeline.teacher_kinds(cfg):
        s = json.loads((pipeline.stage_dir(cfg, f"teacher/{kind}") / "summary.json").read_text())
        out.setdefault("teacher", {})[kind] = {"top1": s.get("val", {}).get("top1"), "train_s": s.get("elapsed_s")}
    log(f"    train {out.get('train_s')}  teachers {out.get('teacher')}  baseline {out.get('baseline')}  "
        f"omnisource {out.get('omnisource')}")
    return out


def make_world(cache: Path, world_name: str, seed: int) -> Path:
    """A zoo world (or ``demo``: the world ``omni demo --seed S`` generates) under ``cache/worlds``;
    the generator is deterministic, so a name and seed always give the same world."""
    from omni.demo.world import WorldSpec, generate_world, zoo_spec

    spec = WorldSpec(seed=seed) if world_name == "demo" else zoo_spec(world_name, seed=seed)
    return generate_world(cache / "worlds" / f"{world_name}-s{seed}", spec)


def one(world_name: str, seed: int, args, log) -> dict:
    from omni.demo.world import ground_truth_report
    from reference_model import train_reference

    t0 = time.time()
    world = make_world(args.cache, world_name, seed)
    log(f"  world generated {time.time() - t0:.0f}s")
    workdir = args.cache / "work" / f"{world_name}-s{seed}"
    base = world_config(world, workdir, [f"train.seed={seed}", *args.set])
    row = {"world": world_name, "family": _family(world_name), "seed": seed, "overrides": " ".join(args.set),
           "profile": args.profile}
    filt = run_omni(base, log)
    row.update(baseline=filt["baseline"], omnisource=filt["omnisource"], train_s=filt.get("train_s"),
               stage_s=filt["times"], teacher=filt.get("teacher"))
    cfg = _config(base)
    from omni import pipeline
    web = pd.read_parquet(pipeline.stage_dir(cfg, "manifest") / "web_items.parquet")
    gt = ground_truth_report(world, web)
    for src, r in gt["sources"].items():
        row[f"{src}_precision"] = r["precision_kept"]
        row[f"{src}_recall"] = r["recall_kept"]
        row[f"{src}_kept"] = r["kept"]
        row[f"{src}_precision_unfiltered"] = r["precision_unfiltered"]
    row["leaks"] = f"{gt['leaks_found']}/{gt['leaks_planted']}"
    if "first_round" in filt:  # filter.refine: omnisource learned from the second round's selection
        row["refined"], row["omnisource"] = filt["omnisource"], filt["first_round"]
        ref_web = pd.read_parquet(pipeline.stage_dir(cfg, "train/omnisource") / "web_items.parquet")
        for src, r in ground_truth_report(world, ref_web)["sources"].items():
            row[f"{src}_precision_refined"] = r["precision_kept"]
            row[f"{src}_recall_refined"] = r["recall_kept"]
            if r["relabeled"]:  # filter.refine_relabel
                row[f"{src}_relabeled_refined"] = r["relabeled"]
                row[f"{src}_relabel_precision_refined"] = r["relabel_precision"]
    if not args.no_unfiltered:
        log("  unfiltered")
        # no filter and no second round: every sample that passed ingest, extract and de-duplication
        unf = dict(base, filter={"require_top1": False, "min_score": 0.0, "keep_fraction": None, "refine": False})
        u = run_omni(unf, log)
        row["omnisource_unfiltered"] = u["omnisource"]  # (the workdir is left on the unfiltered run)
    if not args.no_reference:
        import torch
        torch.set_num_threads(args.threads)
        ref = train_reference(world, seed=seed, **args.reference)
        row["reference"], row["reference_train_s"] = ref["top1"], ref["train_s"]
        log(f"  reference {ref}")
        if not args.no_oracle:  # the reference trained with the web videos that truly show their query
            ora = train_reference(world, seed=seed, web="oracle", **args.reference)
            row["reference_oracle"] = ora["top1"]
            log(f"  reference with oracle-clean web videos {ora}")
    row["wall_s"] = round(time.time() - t0, 1)
    return row


def add_references(rows: list[dict], done: list[dict], runs_path: Path, args, log) -> None:
    """Train the plain reference for finished runs that lack it, on the same world (regenerated
    from its name and seed: the generator is deterministic), and write it into their rows."""
    from reference_model import train_reference

    worlds = {}
    for row in rows:
        if row.get("reference") is not None:
            continue
        key = (row["world"], row["seed"])
        if key not in worlds:
            world = make_world(args.cache, row["world"], row["seed"])
            ref = train_reference(world, seed=row["seed"], **args.reference)
            worlds[key] = ref
            log(f"  reference {row['world']} seed {row['seed']}: {ref}")
        row["reference"], row["reference_train_s"] = worlds[key]["top1"], worlds[key]["train_s"]
    tmp = runs_path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in done))  # rows are done's own dicts
    tmp.replace(runs_path)


# overrides that leave the default run's baseline / OmniSource / unfiltered figures as they are: CPU
# threads, and filter.refine (its second round is reported apart, as "refined")
NEUTRAL = ("train.threads=", "filter.refine=")


def comparable(overrides: str) -> str:
    """A run's overrides without the neutral ones: runs are pooled in one table when these match."""
    return " ".join(o for o in overrides.split() if not o.startswith(NEUTRAL))


def _family(world: str) -> str:
    """The world's family, "(held out)" added for the families no default was tuned on."""
    from omni.demo.world import HELD_OUT_FAMILIES, family_of

    try:
        fam = family_of(world)
    except KeyError:
        return "other"
    return fam + (" (held out)" if fam in HELD_OUT_FAMILIES else "")


def _ms(values) -> tuple[float, float]:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return float("nan"), float("nan")
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    out = []
    for w, g in df.groupby("world", sort=False):
        fam = _family(w)
        r = {"world": w, "family": fam, "seeds": len(g)}
        # the model omni hands over: the second round's student where there is one
        g = g.assign(handed=g["refined"].fillna(g["omnisource"]) if "refined" in g else g["omnisource"])
        for col in ("reference", "reference_oracle", "baseline", "omnisource", "refined", "handed",
                    "omnisource_unfiltered"):
            if col in g:
                r[f"{col}_mean"], r[f"{col}_std"] = (100 * x for x in _ms(g[col]))
        r["gain"] = r["handed_mean"] - r["baseline_mean"]
        r["beats_baseline"] = f"{int((g['handed'] > g['baseline']).sum())}/{len(g)}"
        if "omnisource_unfiltered" in g:  # over the seeds that have both runs
            r["filtered_minus_unfiltered"] = 100 * _ms(g["handed"] - g["omnisource_unfiltered"])[0]
        if "reference_mean" in r:
            r["baseline_minus_reference"] = r["baseline_mean"] - r["reference_mean"]
        for src in SOURCES:
            for m in ("precision", "recall", "precision_refined", "recall_refined"):
                if f"{src}_{m}" in g:
                    r[f"{src}_{m}"] = _ms(g[f"{src}_{m}"])[0]
        r["baseline_train_s"] = _ms([t.get("baseline") for t in g["train_s"]])[0]
        r["omnisource_train_s"] = _ms([t.get("omnisource") for t in g["train_s"]])[0]
        r["wall_s"] = _ms(g["wall_s"])[0]
        out.append(r)
    t = pd.DataFrame(out)
    num = t.select_dtypes("number").columns.drop("seeds")
    means = []
    for fam, g in t.groupby("family", sort=False):  # per family, then over every world
        means.append({"world": f"MEAN {fam}", "family": fam, "seeds": int(g["seeds"].min()),
                      **g[num].mean().to_dict()})
    means.append({"world": "MEAN", "family": "all", "seeds": int(t["seeds"].min()), **t[num].mean().to_dict()})
    return pd.concat([t, pd.DataFrame(means)], ignore_index=True)


def markdown(t: pd.DataFrame) -> str:
    def pm(r, c):
        return f"{r[c + '_mean']:.1f} ± {r[c + '_std']:.1f}" if f"{c}_mean" in r and not pd.isna(r[c + "_mean"]) else "-"

    def f(x, d=1):
        return "-" if x is None or pd.isna(x) else f"{x:.{d}f}"

    refined = "refined_mean" in t.columns and t["refined_mean"].notna().any()
    head = ("| world | family | seeds | reference | ref. + oracle web videos | baseline | "
            + ("first round | " if refined else "")
            + "OmniSource | gain | beats baseline | unfiltered | filt - unfilt | img P / R | vid P / R | untrim P / R | "
            + ("second round img / vid / untrim P / R | " if refined else "") + "base / omni train s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for _, r in t.iterrows():
        pr = [f"{f(r.get(s + '_precision'), 2)} / {f(r.get(s + '_recall'), 2)}" for s in SOURCES]
        rpr = ", ".join(f"{f(r.get(s + '_precision_refined'), 2)} / {f(r.get(s + '_recall_refined'), 2)}"
                        for s in SOURCES)
        lines.append(f"| {r['world']} | {r['family']} | {r['seeds']} | {pm(r, 'reference')} | "
                     f"{pm(r, 'reference_oracle')} | {pm(r, 'baseline')} | "
                     + (f"{pm(r, 'omnisource')} | " if refined else "") + f"{pm(r, 'handed')} | {f(r['gain'])} | "
                     + f"{r.get('beats_baseline') if isinstance(r.get('beats_baseline'), str) else '-'} | "
                     + f"{pm(r, 'omnisource_unfiltered')} | "
                     f"{f(r.get('filtered_minus_unfiltered'))} | {' | '.join(pr)} | " + (f"{rpr} | " if refined else "")
                     + f"{f(r['baseline_train_s'], 0)} / {f(r['omnisource_train_s'], 0)} |")
    return "\n".join(lines) + "\n\nTop-1 in %, mean ± sample std over seeds; OmniSource: the model omni hands " \
                              "over (with a second round, its student; first round: the student of the " \
                              "teacher's selection); gain and filt - unfilt: OmniSource minus the baseline / " \
                              "the student of the unfiltered crawl; P / R: filter precision / recall of kept " \
                              "items against the world's ground truth.\n"


def run_jobs(todo: list[tuple[str, int]], args, argv: list[str], runs_path: Path, rows: list[dict], log) -> None:
    """Run the world-seeds ``args.jobs`` at a time, each in its own process on one thread
    (``train.threads=1``); a child writes its row to a file, this process appends it to runs.jsonl."""
    import subprocess

    (args.out / "logs").mkdir(exist_ok=True)
    queue, running, n = list(todo), {}, len(todo)
    while queue or running:
        while queue and len(running) < args.jobs:
            w, s = queue.pop(0)
            row_file = args.out / "logs" / f"{w}-s{s}.row.json"
            row_file.unlink(missing_ok=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worlds", w, "--seeds", str(s),
                   "--jobs", "1", "--row-out", str(row_file), "--set", "train.threads=1"]
            fh = (args.out / "logs" / f"{w}-s{s}.log").open("w")
            running[(w, s)] = (subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT), row_file, fh)
            log(f"({n - len(queue)}/{n}) started world {w} seed {s} "
                f"(log: {args.out / 'logs' / f'{w}-s{s}.log'})")
        time.sleep(2)
        for key, (proc, row_file, fh) in list(running.items()):
            if proc.poll() is None:
                continue
            fh.close()
            del running[key]
            if proc.returncode != 0 or not row_file.exists():
                log(f"  world {key[0]} seed {key[1]} FAILED (exit {proc.returncode}); see its log")
                continue
            row = json.loads(row_file.read_text())
            with runs_path.open("a") as out:
                out.write(json.dumps(row, default=str) + "\n")
            rows.append(row)
            log(f"  world {key[0]} seed {key[1]} done in {row['wall_s']:.0f}s: reference {row.get('reference')} "
                f"baseline {row['baseline']} omnisource {row.get('refined', row['omnisource'])} "
                f"unfiltered {row.get('omnisource_unfiltered')}")


def main(argv=None) -> int:
    from omni.demo.world import ZOO

    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", default=None, help=f"comma list of {sorted(ZOO)} (default: the six of "
                    f"the grid, {GRID_WORLDS}), or "
                    "'demo' (the world `omni demo --seed S` generates)")
    ap.add_argument("--seeds", default="0,1,2", help="comma list of seeds (default 0,1,2)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_WORLDS}, seed 0")
    ap.add_argument("--families", choices=("shapes", "tuning", "all"), default="shapes",
                    help="without --worlds: shapes (the grid's six worlds), tuning (every world of the families "
                         "defaults may be tuned on), all (the final table: the held-out families too)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="default",
                    help="default: omni's defaults (hours on 2 cores); hour: small models, the same schedule: "
                         "the grid in about an hour on 2 cores with --jobs 2 (its own --out)")
    ap.add_argument("--jobs", type=int, default=1, help="world-seeds at once, each in its own process on one "
                    "thread (2 on a 2-core machine)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="omni config override")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="default",
                    help="training recipe overrides put before --set (default: omni's own defaults)")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: benchmarks/results/learning_quality")
    ap.add_argument("--cache", type=Path, default=None, help="worlds and workdirs (default: OUT/cache)")
    ap.add_argument("--no-unfiltered", action="store_true")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-oracle", action="store_true", help="skip the reference trained with oracle-clean web videos")
    ap.add_argument("--ref-steps", type=int, default=None, help="the reference's steps (default 1000)")
    ap.add_argument("--fresh", action="store_true", help="ignore finished runs in runs.jsonl")
    ap.add_argument("--table-only", action="store_true", help="only rebuild the table from runs.jsonl")
    ap.add_argument("--reference-only", action="store_true",
                    help="add the plain reference to finished runs that lack it (regenerates each world from "
                         "its seed, trains only the reference), then rebuild the table")
    ap.add_argument("--row-out", type=Path, default=None, help=argparse.SUPPRESS)  # a --jobs child's row
    args = ap.parse_args(argv)
    profile = PROFILES[args.profile]
    args.set = RECIPES[args.recipe] + profile["set"] + args.set
    args.reference = dict(profile["reference"])
    if args.ref_steps:
        args.reference["steps"] = args.ref_steps
    args.out = args.out or ROOT / "benchmarks" / "results" / (
        "learning_quality" + ("" if args.profile == "default" else f"_{args.profile}"))
    grid = {"shapes": GRID_WORLDS, "tuning": None, "all": None}[args.families] or family_worlds(args.families == "all")
    worlds = QUICK_WORLDS if args.quick and not args.worlds else (args.worlds.split(",") if args.worlds else grid)
    seeds = [0] if args.quick and args.seeds == "0,1,2" else [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache = args.cache or args.out / "cache"
    args.threads = 1 if args.row_out or args.jobs > 1 else 2
    import torch
    torch.set_num_threads(args.threads)
    start = time.time()

    def log(msg):
        print(f"[{time.time() - start:6.0f}s] {msg}", flush=True)

    if args.row_out:  # a --jobs child: one world-seed, its row to a file
        row = one(worlds[0], seeds[0], args, log)
        args.row_out.write_text(json.dumps(row, default=str))
        return 0
    runs_path = args.out / "runs.jsonl"
    done = [] if args.fresh or not runs_path.exists() else [json.loads(x) for x in runs_path.read_text().splitlines() if x]
    overrides = comparable(" ".join(args.set))
    have = {(r["world"], r["seed"]) for r in done if comparable(r.get("overrides", "")) == overrides}
    rows = [r for r in done if comparable(r.get("overrides", "")) == overrides and r["world"] in worlds
            and r["seed"] in seeds]
    todo = [] if args.table_only or args.reference_only else [(w, s) for w in worlds for s in seeds if (w, s) not in have]

    if args.jobs > 1 and todo:
        child = [a for a in argv if a not in ("--fresh",)]
        run_jobs(todo, args, child + ["--out", str(args.out), "--cache", str(args.cache)], runs_path, rows, log)
        todo = []
    for i, (w, s) in enumerate(todo):
        log(f"({i + 1}/{len(todo)}) world {w} seed {s}")
        row = one(w, s, args, log)
        with runs_path.open("a") as fh:
            fh.write(json.dumps(row, default=str) + "\n")
        rows.append(row)
        log(f"  done in {row['wall_s']:.0f}s: reference {row.get('reference')} baseline {row['baseline']} "
            f"omnisource {row['omnisource']} unfiltered {row.get('omnisource_unfiltered')}")
    if args.reference_only:
        add_references(rows, done, runs_path, args, log)
    if not rows:
        print("nothing to report")
        return 1
    t = table(rows)
    t.to_csv(args.out / "table.csv", index=False)
    md = markdown(t) + f"\nProfile: {args.profile}; overrides: {' '.join(args.set) or 'none'}; " \
                       f"this run's wall time: {time.time() - start:.0f} s ({args.jobs} at a time).\n"
    (args.out / "table.md").write_text(md)
    print(md)
    print(f"wrote {args.out / 'table.md'} and {args.out / 'table.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
