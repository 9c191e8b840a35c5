"""Two omni runs sharing one machine, against one run alone.

Runs ``omni run CONFIG --no-prefect`` on the tiny demo world (training lengthened so that
compute dominates): once alone, then two at once with omni's core sharing (the default), then
two at once each taking every core (``train.threads`` = all cores: what omni did before it
shared). Reports each run's wall time as a ratio to the lone run; the goal is at most 2.2x on a
2-core machine. Every run starts from an empty workdir.

    .venv/bin/python benchmarks/concurrency.py [--steps 200] [--out benchmarks/results/concurrency.md]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from omni.cores import usable_cores  # noqa: E402


def _cmd(cfg: Path, workdir: Path, steps: int, threads: int | None) -> list[str]:
    sets = [f"workdir={workdir}", f"train.model.steps={steps}", f"teacher.image.steps={steps}",
            f"teacher.video.steps={steps}"]
    if threads:
        sets.append(f"train.threads={threads}")
    return [sys.executable, "-m", "omni", "run", str(cfg), "--no-prefect", *[a for s in sets for a in ("--set", s)]]


def _run_together(cmds: list[list[str]], logs: Path) -> list[float]:
    started = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=open(logs / f"run{i}.log", "w"), stderr=subprocess.STDOUT)
             for i, c in enumerate(cmds)]
    times = [0.0] * len(procs)
    pending = set(range(len(procs)))
    while pending:
        for i in list(pending):
            if procs[i].poll() is not None:
                if procs[i].returncode:
                    raise RuntimeError(f"run {i} failed: see {logs / f'run{i}.log'}")
                times[i] = time.perf_counter() - started
                pending.discard(i)
        time.sleep(0.2)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200, help="optimisation steps of every model")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "concurrency.md")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="omni-concurrency-"))
    subprocess.run([sys.executable, "-m", "omni", "demo", "--tiny", "--generate-only", "--workdir", str(tmp / "demo")],
                   cwd=ROOT, check=True, capture_output=True)
    cfg = tmp / "demo" / "config-local.yaml"
    cores = usable_cores()
    print(f"{cores} usable cores; {args.steps} steps per model; work in {tmp}", flush=True)
    [lone] = _run_together([_cmd(cfg, tmp / "lone", args.steps, None)], tmp)
    print(f"one run alone: {lone:.1f} s", flush=True)
    rows = [("alone", [lone])]
    for mode, threads in (("two at once, cores shared (default)", None),
                          ("two at once, each taking every core", cores)):
        times = _run_together([_cmd(cfg, tmp / f"{mode[:20].replace(' ', '_')}-{i}", args.steps, threads)
                               for i in range(2)], tmp)
        print(f"{mode}: {', '.join(f'{t:.1f} s' for t in times)}", flush=True)
        rows.append((mode, times))
    lines = [f"# Two omni runs on one machine ({cores} cores, {os.uname().machine})", "",
             f"`benchmarks/concurrency.py --steps {args.steps}`: tiny demo world, `omni run --no-prefect`, "
             "every run from an empty workdir; ratio = wall time / the lone run's.", "",
             "| runs | wall time per run (s) | ratio to alone (each) |", "|---|---|---|"]
    for mode, times in rows:
        lines.append(f"| {mode} | {', '.join(f'{t:.1f}' for t in times)} | "
                     f"{', '.join(f'{t / lone:.2f}x' for t in times)} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
