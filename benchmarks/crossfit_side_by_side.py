"""Two cross-fitted first-round students: one after the other, or side by side in two processes?

``filter.refine_crossfit`` trains two students. On a CPU omni trains them at once, the second in a
spawned child process, each process taking its fair share of the cores (``omni/runtime/cores.py``), instead
of one after the other with every core each (``omni/pipeline/crossfit.py``: ``_train_two_side_by_side``).
This measures both layouts in one run, interleaved round by round, with omni's own training
(``omni.learning.train.fit``: the default ``train.model``, its data path over a real frame store of random
clips written as the extract stage writes them, a web-video source beside the target as in a
joint step), and reports the wall time of the pair and the ratio:

- **one after the other** (the reference): two students in this process, ``torch`` at every usable core;
- **side by side**: two processes at once, each at ``cores // 2`` threads.

    .venv/bin/python benchmarks/crossfit_side_by_side.py --out benchmarks/results/crossfit_side_by_side.md
    .venv/bin/python benchmarks/crossfit_side_by_side.py --smoke      # seconds: exercises the code only
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def student(store: Path, steps: int, threads: int, smoke: bool, seed: int) -> float:
    """One student of ``steps`` steps on the store's target and web clips; its wall seconds."""
    import pandas as pd
    import torch

    from omni.config import TrainConfig
    from omni.learning.data import ClipDataset
    from omni.learning.train import JointOptions, RunOptions, fit

    torch.set_num_threads(threads)
    t = TrainConfig()
    m = t.model.model_copy(update={"steps": steps})
    if smoke:
        m = m.model_copy(update={"width": 8, "input_size": 32, "num_frames": 4, "batch_size": 2})
    videos = pd.read_parquet(store / "videos.parquet")
    classes = [f"c{i}" for i in range(int(videos["label"].max()) + 1)]
    n_target = max(2 * m.batch_size, 4)
    target = ClipDataset.for_model(videos.iloc[:n_target], store, m, train=True, augment=t.augment)
    web = ClipDataset.for_model(videos.iloc[n_target:], store, m, train=True, augment=t.augment)
    out = Path(tempfile.mkdtemp(prefix="omni-sbs-fit-"))
    t0 = time.perf_counter()
    try:
        fit(m, classes, target, out, key="bench", aux={"web_videos": web},
            joint=JointOptions(aux_batch_size=m.batch_size), seed=seed, amp=t.amp, run=RunOptions(device="cpu"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return time.perf_counter() - t0


def _child(store: Path, steps: int, threads: int, smoke: bool, seed: int) -> subprocess.Popen:
    code = ("import json,sys; sys.path.insert(0, %r); sys.path.insert(0, %r); import crossfit_side_by_side as b; "
            "print(json.dumps(b.student(__import__('pathlib').Path(%r), %d, %d, %r, %d)))"
            % (str(ROOT), str(Path(__file__).parent), str(store), steps, threads, smoke, seed))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def one_after_the_other(store: Path, steps: int, cores: int, smoke: bool) -> float:
    t0 = time.perf_counter()
    for seed in (0, 1):  # a fresh process per student, as the side-by-side pair has
        p = _child(store, steps, cores, smoke, seed)
        out = p.communicate()[0]
        if p.returncode:
            raise SystemExit(f"student failed: {out}")
    return time.perf_counter() - t0


def side_by_side(store: Path, steps: int, cores: int, smoke: bool) -> float:
    t0 = time.perf_counter()
    ps = [_child(store, steps, max(1, cores // 2), smoke, seed) for seed in (0, 1)]
    for p in ps:
        out = p.communicate()[0]
        if p.returncode:
            raise SystemExit(f"student failed: {out}")
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=150, help="steps per student")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (reference, side by side, ...)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, a few steps: exercises the code only")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    a = ap.parse_args(argv)
    from omni.config import TrainConfig, needed_short_side
    from omni.runtime.cores import usable_cores
    from omni.learning.autocast import use_autocast

    import torch
    from train_speed import build_store, device_name

    steps, rounds = (3, 1) if a.smoke else (a.steps, a.rounds)
    cores = usable_cores()
    m = TrainConfig().model
    work = Path(tempfile.mkdtemp(prefix="omni-sbs-"))
    try:
        videos, _ = build_store(work, n_videos=40 if a.smoke else 200, n_images=0,
                                short_side=needed_short_side([m]), classes=5)
        videos.to_parquet(work / "videos.parquet")
        ref, sbs = [], []
        for _ in range(rounds):
            ref.append(one_after_the_other(work, steps, cores, a.smoke))
            sbs.append(side_by_side(work, steps, cores, a.smoke))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bf16 = use_autocast(TrainConfig().amp, torch.device("cpu"))
    lines = [f"Device: {device_name(torch.device('cpu'))}, {cores} usable cores; two students of {steps} steps "
             f"each, {'SMOKE RUN (tiny shapes; no timing value): ' if a.smoke else ''}default `train.model` ({m.arch}, {m.num_frames} x {m.input_size} px, batch {m.batch_size} "
             f"target + {m.batch_size} web clips per step, {'bf16' if bf16 else 'fp32'}), {rounds} interleaved "
             f"round(s); {time.strftime('%Y-%m-%d')}", "",
             "| layout | wall s per pair (mean) | per round | time vs one after the other |", "|---|---|---|---|",
             f"| one after the other, {cores} threads each (reference) | {np.mean(ref):.1f} | "
             f"{', '.join(f'{x:.1f}' for x in ref)} | 1.00 |",
             f"| side by side, 2 processes x {max(1, cores // 2)} thread(s) | {np.mean(sbs):.1f} | "
             f"{', '.join(f'{x:.1f}' for x in sbs)} | {np.mean(sbs) / np.mean(ref):.2f} |"]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    print(json.dumps({"reference_s": float(np.mean(ref)), "side_by_side_s": float(np.mean(sbs))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
