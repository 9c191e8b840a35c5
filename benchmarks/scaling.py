"""Cost per item as crawl lists grow: ingest, extract and score at 1x, 4x and 16x list size.

For each scale a demo-family world is generated whose crawl lists (web images, web videos,
untrimmed videos) are ``scale`` times the base size, with the same target set; then each
stage runs as its own ``omni <stage> CONFIG --no-prefect`` process. Reported per stage and
scale: wall time, CPU time (the stage's process and its workers), peak resident memory of
the process tree (sampled every 50 ms), and wall / CPU time per list row. Flat per-row
figures and a peak RSS that does not grow with the list are what "scales" means here.

    python benchmarks/scaling.py                 # 1x, 4x, 16x -> benchmarks/results/scaling.md
    python benchmarks/scaling.py --scales 1 4    # quicker
    python benchmarks/scaling.py --smoke --out /tmp/sc --results /tmp/sc.md   # one tiny list, seconds (tests)
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omni.config import load_config  # noqa: E402
from omni.demo.world import demo_config, generate_world, tiny_spec  # noqa: E402
from omni.pipeline import stage_dir, units  # noqa: E402

STAGES = ("ingest", "extract", "score")
BASE = dict(images_per_class=40, videos_per_class=15, untrimmed_per_class=3)
SMOKE_BASE = dict(images_per_class=2, videos_per_class=1, untrimmed_per_class=1)


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_measured(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; wall and CPU seconds (itself and every descendant) and peak tree RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        ps = psutil.Process(proc.pid)
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], tree_rss(ps))
                except psutil.NoSuchProcess:
                    break
                stop.wait(0.05)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        rc = proc.wait()
        stop.set()
        t.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({rc}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak[0] / 2**20}


def prepare(scale: int, out: Path, base: dict = BASE, teacher_steps: int | None = None) -> tuple[Path, int]:
    spec = replace(tiny_spec(0), **{k: v * scale for k, v in base.items()}, val_leaks=0)
    world = generate_world(out / f"world-{scale}x", spec)
    cfg = demo_config(world, out / f"work-{scale}x", world / "crawl", tiny=True)
    if teacher_steps:
        for kind in ("image", "video"):
            cfg["teacher"][kind]["steps"] = teacher_steps
    cfg["ingest"]["allow_private_addresses"] = True
    path = out / f"config-{scale}x.yaml"
    path.write_text(yaml.safe_dump(cfg))
    readers = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".jsonl": lambda p: pd.read_json(p, lines=True)}
    rows = sum(len(readers[Path(s["list"]).suffix](s["list"])) for s in cfg["sources"])
    return path, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--out", type=Path, default=Path("/tmp/omni-scaling"))
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "scaling.md")
    ap.add_argument("--smoke", action="store_true", help="one scale of a list of a few rows per class: checks "
                    "that the benchmark runs (seconds), no real measurement")
    args = ap.parse_args(argv)
    base = SMOKE_BASE if args.smoke else BASE
    if args.smoke:
        args.scales = [1]
    args.out.mkdir(parents=True, exist_ok=True)
    omni = [sys.executable, "-m", "omni"]
    env_note = f"{os.cpu_count()} cores"
    rows = []
    for scale in args.scales:
        cfg, n = prepare(scale, args.out, base, teacher_steps=1 if args.smoke else None)
        print(f"{scale}x: {n} crawl-list rows", flush=True)
        log = args.out / f"log-{scale}x.txt"
        if not args.smoke:  # the target first, unmeasured (smoke: measured with the lists)
            with open(log, "ab") as fh:
                subprocess.run(omni + ["ingest", str(cfg), "--no-prefect"], check=False, stdout=fh,
                               stderr=subprocess.STDOUT)
        work = load_config(cfg)
        for stage in STAGES:
            if stage == "score":  # the teachers: fixed cost, not per item
                with open(log, "ab") as fh:
                    subprocess.run(omni + ["teacher", str(cfg), "--no-prefect"], check=True, stdout=fh,
                                   stderr=subprocess.STDOUT)
            if stage == "ingest":  # measure a fresh ingest (the target's is cheap and fixed)
                for unit in units(work, "ingest"):
                    if unit != "ingest/target":
                        shutil.rmtree(stage_dir(work, unit), ignore_errors=True)
            m = run_measured(omni + [stage, str(cfg), "--no-prefect"], log)
            for unit in units(work, stage):  # every unit of the stage finished (a layout change shows here)
                if not any(stage_dir(work, unit).glob("*.parquet")):
                    raise SystemExit(f"omni {stage} wrote no table under {stage_dir(work, unit)}; see {log}")
            rows.append({"stage": stage, "scale": f"{scale}x", "rows": n, **m,
                         "ms_wall_per_row": 1000 * m["wall_s"] / n, "ms_cpu_per_row": 1000 * m["cpu_s"] / n})
            print(f"  {stage:8s} wall {m['wall_s']:7.1f} s  cpu {m['cpu_s']:7.1f} s  peak {m['peak_rss_mb']:6.0f} MB  "
                  f"{rows[-1]['ms_wall_per_row']:6.1f} ms/row wall", flush=True)
    df = pd.DataFrame(rows)
    # the cost of one more row: growth from the previous scale, free of each process's fixed start-up
    for col, out in (("wall_s", "marginal_ms_wall"), ("cpu_s", "marginal_ms_cpu"), ("peak_rss_mb", "marginal_kb_rss")):
        unit = 1024 if col == "peak_rss_mb" else 1000
        df[out] = df.groupby("stage")[col].diff() * unit / df.groupby("stage")["rows"].diff()
    lines = ["# Scaling: cost per crawl-list row at growing list sizes", "",
             f"`benchmarks/scaling.py`, {env_note}; each stage a separate `omni <stage> --no-prefect` process, "
             "local files, tiny demo-family worlds whose lists grow (same target set).", "",
             "Marginal columns: the growth from the previous scale divided by the rows added (start-up "
             "costs cancel out); flat marginal time and near-zero marginal memory are what scaling means here.", "",
             "| stage | scale | rows | wall s | CPU s | peak RSS MB | wall ms/row | CPU ms/row | marginal wall ms/row "
             "| marginal CPU ms/row | marginal RSS KB/row |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(v, spec):
        return "" if pd.isna(v) else format(v, spec)

    for r in df.sort_values(["stage", "rows"], key=lambda c: c.map(STAGES.index) if c.name == "stage" else c
                            ).to_dict("records"):
        lines.append(f"| {r['stage']} | {r['scale']} | {r['rows']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['ms_wall_per_row']:.1f} | {r['ms_cpu_per_row']:.1f} | "
                     f"{fmt(r['marginal_ms_wall'], '.1f')} | {fmt(r['marginal_ms_cpu'], '.1f')} | "
                     f"{fmt(r['marginal_kb_rss'], '.0f')} |")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
