"""Frame store codecs side by side: bytes per sample and training-loader clips/s, raw vs JPEG.

Two sets of samples: the demo world's extracted samples (a finished demo workdir, re-coded), and
the real videos in ../shared/realdata decoded as omni's default extract stores them (2 s windows
at ``extract.fps`` frames a second, the short side the default models need: 64 px). Each set is
written with every codec into a fresh store; the training loader (``ClipDataset``, the default
student's input policy and training augmentation, one process) then draws the same clips from
each, interleaved, and the training step rate of the default student (``ModelConfig()``) is
measured in the same run for reference. Ratios are to raw.

    .venv/bin/python benchmarks/frame_store.py --demo-workdir omni-demo/run [--out benchmarks/results/frame_store.md]
    .venv/bin/python benchmarks/frame_store.py --smoke --out /tmp/fs.md   # a few generated clips, seconds (tests)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from omni.config import ExtractConfig, ModelConfig, TeacherConfig, TrainConfig, needed_short_side  # noqa: E402
from omni.learning.data import ClipDataset, InputPolicy  # noqa: E402
from omni.video.framestore import FrameStore, ShardWriter  # noqa: E402

CODECS = (("raw", None), ("jpeg", 95), ("jpeg", 90), ("jpeg", 75))
STUDENT = ModelConfig()  # the model omni trains by default


def default_short_side() -> int:
    """The short side omni's default extract stores (``extract.short_side: auto`` for the default models)."""
    ecfg = ExtractConfig()
    if ecfg.short_side != "auto":
        return ecfg.short_side
    teachers = TeacherConfig()
    return needed_short_side((teachers.image, teachers.video, STUDENT))


def demo_samples(workdir: Path, limit: int) -> list[np.ndarray]:
    samples = pd.concat([pd.read_parquet(p) for p in sorted(workdir.glob("extract/*/samples.parquet"))])
    samples = samples[samples["shard"].astype(str) != ""]
    samples = samples.sample(min(limit, len(samples)), random_state=0)
    store = FrameStore(workdir)
    return [np.asarray(store.read_row(r)) for r in samples.to_dict("records")]


def synthetic_samples(n: int, short_side: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` 4:3 clips of 2 s as the default extract stores them: smooth moving textures plus noise
    (JPEG sizes like those of footage, not of pure noise)."""
    from PIL import Image

    from omni.video.decode import Window
    from omni.video.extract import frames_per_window

    rng = np.random.default_rng(seed)
    t = frames_per_window([Window(0.0, 2.0)], ExtractConfig())
    h, w = short_side, short_side * 4 // 3
    out = []
    for _ in range(n):
        base = np.asarray(Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((2 * w, 2 * h), 3))
        frames = [base[k: k + h, 2 * k: 2 * k + w].astype(np.int16) + rng.integers(-8, 8, (h, w, 3), dtype=np.int16)
                  for k in range(t)]
        out.append(np.clip(np.stack(frames), 0, 255).astype(np.uint8))
    return out


def realdata_samples(folder: Path, short_side: int) -> list[np.ndarray]:
    from omni.video.decode import Window, decode_windows
    from omni.video.extract import frames_per_window
    from omni.video.media import check_video, sniff_file

    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (".mp4", ".avi", ".webm", ".mkv"):
            continue
        try:
            dur = check_video(p, sniff_file(p), None).duration_s or 2.0
            wins = [Window(s, min(dur, s + 2.0)) for s in np.arange(0, max(dur - 2.0, 0.01), 2.0)[:8]]
            out += decode_windows(p, wins, frames_per_window(wins, ExtractConfig()), short_side)
        except Exception as exc:  # a file this decoder cannot read is not this benchmark's subject
            print(f"  skipped {p.name}: {exc}")
    return out


def write_store(samples: list[np.ndarray], root: Path, codec: str, quality: int | None) -> pd.DataFrame:
    w = ShardWriter(root / "frames", "shard-00000", codec=codec, quality=quality or 90)
    rows = []
    for i, s in enumerate(samples):
        ref = w.append(s)
        ref["shard"] = "frames/" + ref["shard"]
        rows.append({**ref, "item_id": f"i{i}", "sample_id": f"s{i}", "label": i % 4})
    w.close()
    return pd.DataFrame(rows)


def loader_rate(ds: ClipDataset, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        ds[i % len(ds)]
    return n / (time.perf_counter() - t0)


def train_rate(m: ModelConfig, steps: int = 5) -> float:
    """Clips/s of one training step of a model (omni's default student), for scale."""
    from omni.learning.models import build_model, memory_format

    fmt = memory_format(m.arch)
    batch = m.batch_size
    model = build_model(m.arch, 4, m.width, None).to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), m.lr)
    x = torch.randn(batch, 3, m.num_frames, m.input_size, m.input_size).contiguous(memory_format=fmt)
    y = torch.randint(0, 4, (batch,))
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo-workdir", type=Path, help="a finished demo run's workdir (omni demo: WORKDIR/run)")
    ap.add_argument("--realdata", type=Path, default=ROOT.parent / "shared" / "realdata")
    ap.add_argument("--limit", type=int, default=400, help="demo samples to re-code")
    ap.add_argument("--draws", type=int, default=300, help="clips drawn per loader measurement")
    ap.add_argument("--input-size", type=int, default=STUDENT.input_size)
    ap.add_argument("--short-side", type=int, default=None, help="realdata decode size (default: what omni's "
                    "default extract stores)")
    ap.add_argument("--smoke", action="store_true", help="12 generated clips only, few draws and steps: checks "
                    "that the benchmark runs (seconds), no real timing")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "frame_store.md")
    args = ap.parse_args(argv)
    side = args.short_side or default_short_side()
    fps = ExtractConfig().fps
    student = STUDENT.model_copy(update={"input_size": args.input_size})
    policy = InputPolicy.of(student, TrainConfig().augment)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sets = []
    if args.smoke:
        args.draws = 24
        sets.append((f"generated, {side} px, 2 s at {fps:g} fps", synthetic_samples(12, side)))
    else:
        if args.demo_workdir:
            sets.append(("demo world samples", demo_samples(args.demo_workdir, args.limit)))
        if args.realdata.is_dir():
            sets.append((f"realdata, {side} px, 2 s windows at {fps:g} fps", realdata_samples(args.realdata, side)))
    if not sets:
        raise SystemExit("no samples: give --demo-workdir, put ../shared/realdata beside the repository, or --smoke")
    torch.set_num_threads(max(1, threads))
    rate = train_rate(student, steps=1 if args.smoke else 5)
    lines = ["# Frame store: raw vs JPEG", "",
             f"`benchmarks/frame_store.py{' --smoke' if args.smoke else ''}`: bytes per sample, and clips/s of the "
             f"training loader (one process, the default student's input: {student.num_frames} "
             f"{student.frame_sampling} "
             f"frames, {student.resize} to {student.input_size} px, {student.normalize} normalisation, training "
             f"augmentation), same clips, same run. For scale: one {student.arch} (width {student.width}, batch "
             f"{student.batch_size}) training step runs at {rate:.0f} clips/s on this machine.", ""]
    for name, samples in sets:
        if not samples:
            continue
        shape = samples[0].shape
        lines += [f"## {name} ({len(samples)} samples, e.g. {shape[0]}x{shape[1]}x{shape[2]})", "",
                  "| codec | bytes/sample | vs raw | loader clips/s | vs raw | mean abs pixel error |",
                  "|---|---|---|---|---|---|"]
        with tempfile.TemporaryDirectory() as tmp:
            stores = {}
            for codec, q in CODECS:
                root = Path(tmp) / f"{codec}{q or ''}"
                rows = write_store(samples, root, codec, q)
                size = sum(p.stat().st_size for p in (root / "frames").iterdir())
                ds = ClipDataset(rows, root, num_frames=student.num_frames, size=student.input_size, train=True,
                                 group_by_item=False, policy=policy)
                err = float(np.mean([np.abs(np.asarray(ds.store.read_row(r)).astype(np.int16) - s).mean()
                                     for r, s in zip(rows.to_dict("records")[:50], samples[:50])]))
                stores[(codec, q)] = (ds, size / len(samples), err)
            rates = {k: [] for k in stores}
            for _ in range(3):  # interleaved, so that a busy moment hits every codec alike
                for k, (ds, _, _) in stores.items():
                    rates[k].append(loader_rate(ds, args.draws // 3))
            raw_bytes, raw_rate = stores[("raw", None)][1], float(np.median(rates[("raw", None)]))
            for (codec, q), (ds, per, err) in stores.items():
                r = float(np.median(rates[(codec, q)]))
                lines.append(f"| {codec}{f' q{q}' if q else ''} | {per / 1e3:.1f} KB | {per / raw_bytes:.3f} | "
                             f"{r:.0f} | {r / raw_rate:.2f} | {err:.2f} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
