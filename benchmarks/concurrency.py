"""Two omni runs sharing one machine, against one run alone.

Runs ``omni run CONFIG --no-prefect`` on the tiny demo world (training lengthened so that
compute dominates): once alone, then two at once with omni's core sharing (the default), then
two at once each taking every core (``train.threads`` = all cores: what omni did before it
shared). Reports each run's wall time as a ratio to the lone run; the goal is at most 2.2x on a
2-core machine. Every run starts from an empty workdir.

    .venv/bin/python benchmarks/concurrency.py [--steps 200] [--out benchmarks/results/concurrency.md]

Every run's config (the demo config with its ``--set`` overrides) is validated before anything
runs, so a renamed key fails at once. ``--smoke`` (tests: seconds, no real measurement) times
``omni ingest`` instead of ``omni run``, alone and two at once with core sharing only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from omni.config import ConfigError, load_config  # noqa: E402
from omni.runtime.cores import usable_cores  # noqa: E402


def _cmd(cfg: Path, workdir: Path, steps: int, threads: int | None, command: str = "run") -> list[str]:
    sets = [f"workdir={workdir}", f"train.model.steps={steps}", f"teacher.image.steps={steps}",
            f"teacher.video.steps={steps}"]
    if threads:
        sets.append(f"train.threads={threads}")
    try:  # fail before any run when the demo config or an override key no longer exists
        load_config(cfg, sets)
    except ConfigError as exc:
        raise SystemExit(f"benchmarks/concurrency.py: its config does not load: {exc}") from None
    return [sys.executable, "-m", "omni", command, str(cfg), "--no-prefect",
            *[a for s in sets for a in ("--set", s)]]


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
    ap.add_argument("--smoke", action="store_true", help="omni ingest instead of omni run, alone and two at once "
                    "(cores shared) only: checks that the benchmark runs (seconds), no real measurement")
    args = ap.parse_args(argv)
    command = "ingest" if args.smoke else "run"
    tmp = Path(tempfile.mkdtemp(prefix="omni-concurrency-"))
    subprocess.run([sys.executable, "-m", "omni", "demo", "--tiny", "--generate-only", "--workdir", str(tmp / "demo")],
                   cwd=ROOT, check=True, capture_output=True)
    cfg = tmp / "demo" / "config-local.yaml"
    cores = usable_cores()
    print(f"{cores} usable cores; {args.steps} steps per model; `omni {command}`; work in {tmp}", flush=True)
    modes = [("two at once, cores shared (default)", None), ("two at once, each taking every core", cores)]
    plans = {mode: [_cmd(cfg, tmp / f"{mode[:20].replace(' ', '_')}-{i}", args.steps, threads, command)
                    for i in range(2)] for mode, threads in modes}  # every config checked before the first run
    if args.smoke:
        modes = modes[:1]
    [lone] = _run_together([_cmd(cfg, tmp / "lone", args.steps, None, command)], tmp)
    print(f"one run alone: {lone:.1f} s", flush=True)
    rows = [("alone", [lone])]
    for mode, _threads in modes:
        times = _run_together(plans[mode], tmp)
        print(f"{mode}: {', '.join(f'{t:.1f} s' for t in times)}", flush=True)
        rows.append((mode, times))
    lines = [f"# Two omni runs on one machine ({cores} cores, {os.uname().machine})", "",
             f"`benchmarks/concurrency.py --steps {args.steps}{' --smoke' if args.smoke else ''}`: tiny demo world, "
             f"`omni {command} --no-prefect`, "
             "every run from an empty workdir; ratio = wall time / the lone run's.", "",
             "| runs | wall time per run (s) | ratio to alone (each) |", "|---|---|---|"]
    for mode, times in rows:
        lines.append(f"| {mode} | {', '.join(f'{t:.1f}' for t in times)} | "
                     f"{', '.join(f'{t / lone:.2f}x' for t in times)} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.smoke:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
