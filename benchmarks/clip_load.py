"""What loading one training clip costs: omni's data path with its noise bank against fresh draws.

The training data path (``omni.learning.data.ClipDataset``: read the frames from the frame store, squash to
the model's input, standardise per clip, then the default ``train.augment``: shift, gain,
brightness, Gaussian noise) runs on the training process's own thread, between steps, so its cost
adds to every step. The Gaussian noise is a slice of a bank of normals drawn once per process
(``omni.learning.data.noise_slice``); the reference draws ``numel`` fresh normals per clip with a seeded
torch generator (omni's data path before). Interleaved round by round, one thread, in one process,
on a frame store of random clips and stills written as the extract stage writes them (stills
become warped pseudo-clips, as web images do).

    .venv/bin/python benchmarks/clip_load.py --out benchmarks/results/clip_load.md
    .venv/bin/python benchmarks/clip_load.py --smoke
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def fresh_draws(n: int, rng: np.random.Generator):
    """The reference: ``n`` new standard normals per clip (omni's data path before the bank)."""
    import torch

    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    return torch.randn(n, generator=gen)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=200, help="clips loaded per kind per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--smoke", action="store_true", help="a few clips, one round: exercises the code only")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    import torch

    from omni.learning import data
    from omni.config import TrainConfig, needed_short_side
    from train_speed import build_store, device_name

    torch.set_num_threads(1)
    clips, rounds = (4, 1) if a.smoke else (a.clips, a.rounds)
    t = TrainConfig()
    m = t.model
    work = Path(tempfile.mkdtemp(prefix="omni-clip-load-"))
    bank = data.noise_slice
    try:
        videos, images = build_store(work, n_videos=64, n_images=64, short_side=needed_short_side([m]),
                                     frames=32, classes=5)
        kinds = {"video clip": data.ClipDataset.for_model(videos, work, m, train=True, augment=t.augment),
                 "still (warped pseudo-clip)": data.ClipDataset.for_model(images, work, m, train=True, augment=t.augment,
                                                                         pseudo_clip=t.pseudo_clip,
                                                                         warp_strength=t.warp_strength)}
        sides = {"fresh draws per clip (reference)": fresh_draws, "noise bank (omni)": bank}
        res = {(k, s): [] for k in kinds for s in sides}
        for ds in kinds.values():
            for i in range(3):
                ds[i]
        for _ in range(rounds):
            for s, fn in sides.items():
                data.noise_slice = fn
                for k, ds in kinds.items():
                    t0 = time.perf_counter()
                    for i in range(clips):
                        ds[i % len(ds)]
                    res[(k, s)].append((time.perf_counter() - t0) / clips * 1000)
    finally:
        data.noise_slice = bank
        shutil.rmtree(work, ignore_errors=True)
    lines = [f"Device: {device_name(torch.device('cpu'))}, 1 thread; default `train.model` ({m.arch}, "
             f"{m.num_frames} x {m.input_size} px) and `train.augment`; {clips} clips per kind per round, "
             f"{rounds} interleaved round(s){'; SMOKE RUN: no timing value' if a.smoke else ''}; "
             f"{time.strftime('%Y-%m-%d')}", "",
             "| clip | reference ms/clip | omni ms/clip | omni / reference |", "|---|---|---|---|"]
    ref_name, omni_name = sides
    for k in kinds:
        r, o = np.mean(res[(k, ref_name)]), np.mean(res[(k, omni_name)])
        lines.append(f"| {k} | {r:.2f} | {o:.2f} | {o / r:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
