"""omni extract vs bare ffmpeg decoding on the same videos (not run in CI).

For each video (the real clips in ../shared/realdata and generated H.264 clips at 320x240 and
640x480), in the same run:
  - ffmpeg: ``ffmpeg -i F -an -f null -`` (every video frame decoded, nothing else: the decode limit);
  - omni: the extract stage's work on the same file (decode every frame once, convert and
    resize the sampled ones in one swscale pass, append to a frame-store shard).
Both are timed in CPU-seconds (all threads) and reported as source frames per CPU-second.

Then the frame store's read throughput (clips/s into a training batch through the same
dataset code the trainer uses) against the student model's training step rate on this CPU.

    .venv/bin/python benchmarks/extract_vs_ffmpeg.py
"""
from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL = ["demo.mp4", "test.mp4", "test.avi", "ntu_sample.avi", "demo_skeleton.mp4", "demo_spatiotemporal_det.mp4",
        "test_video_structuralize.mp4"]


def generated(folder: Path) -> list[Path]:
    """10 s clips at 25 fps: drifting textures with noise, like handheld footage."""
    from omni.demo.world import write_video

    rng = np.random.default_rng(0)
    out = []
    for w, h in ((320, 240), (640, 480)):
        base = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(
            rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize((w * 2, h * 2), 3))
        frames = []
        for k in range(250):
            y, x = int(h / 2 + h / 3 * np.sin(k / 40)), int(w / 2 + w / 3 * np.cos(k / 50))
            f = base[y:y + h, x:x + w].astype(np.int16) + rng.integers(-10, 10, (h, w, 3), dtype=np.int16)
            frames.append(np.clip(f, 0, 255).astype(np.uint8))
        path = folder / f"gen_{w}x{h}.mp4"
        write_video(path, np.stack(frames), 25, crf=23)
        out.append(path)
    return out


def frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def ffmpeg_startup_cpu() -> float:
    """CPU-seconds of an ffmpeg run that decodes almost nothing: its start-up cost, which is
    subtracted so that short clips do not flatter the in-process decoder."""
    return ffmpeg_cpu(None, 5)


def ffmpeg_cpu(path: Path | None, repeats: int) -> float:
    best = None
    src = ["-f", "lavfi", "-i", "color=size=16x16:duration=0.04"] if path is None else ["-i", str(path)]
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", *src, "-an", "-f", "null", "-"], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        best = cpu if best is None else min(best, cpu)
    return best


def omni_cpu(path: Path, out: Path, short_side: int, frames_per_clip: int, window_s: float | None,
             repeats: int, backend: str = "pyav") -> float:
    from omni.config import ExtractConfig
    from omni.extract import _extract_chunk
    from omni.media import check_video, sniff_file

    info = check_video(path, sniff_file(path))
    kind = "untrimmed" if window_s else "video"
    item = {"item_id": "x", "split": "web", "source": "bench", "kind": kind, "label": 0, "path": str(path),
            "duration_s": info.duration_s, "window_s": window_s or info.duration_s,
            "stride_s": window_s or info.duration_s}
    cfg = ExtractConfig(short_side=short_side, frames_per_clip=frames_per_clip, backend=backend).model_dump()
    best = None
    for r in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.process_time()
        _extract_chunk(f"shard-{r}", [item], cfg, str(out))
        cpu = time.process_time() - t0
        best = cpu if best is None else min(best, cpu)
    return best


def loader_vs_training(out: Path) -> None:
    import pandas as pd
    import torch

    from omni.config import ModelConfig
    from omni.data import ClipDataset
    from omni.demo.world import demo_config
    from omni.framestore import ShardWriter
    from omni.models import build_model

    m = ModelConfig(**demo_config(Path("."), Path("."), Path("."))["train"]["model"])
    rng = np.random.default_rng(0)
    writer = ShardWriter(out / "frames", "bench")
    rows = []
    for i in range(256):
        ref = writer.append(rng.integers(0, 255, (8, 56, 75, 3), dtype=np.uint8))
        rows.append({"item_id": f"i{i}", "sample_id": f"i{i}#0", "label": i % 6, **ref})
    writer.close()
    ds = ClipDataset(pd.DataFrame(rows), out / "frames", m.num_frames, m.input_size, train=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=24, shuffle=True, num_workers=0)
    t0 = time.perf_counter()
    n = 0
    for _ in range(3):
        for x, _y in loader:
            n += len(x)
    read_rate = n / (time.perf_counter() - t0)
    model = build_model(m.arch, 6, m.width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(24, 3, m.num_frames, m.input_size, m.input_size)
    y = torch.randint(0, 6, (24,))
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
    t0 = time.perf_counter()
    steps = 8
    for _ in range(steps):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
    train_rate = steps * 24 / (time.perf_counter() - t0)
    print(f"\n== loader vs training (demo student: {m.arch} width {m.width}, {m.num_frames}x{m.input_size}^2)")
    print(f"frame store -> training batch: {read_rate:.0f} clips/s (1 process, with augmentation)")
    print(f"student training step rate:    {train_rate:.0f} clips/s (bf16 autocast)")
    print(f"ratio loader/training: {read_rate / train_rate:.1f}x (>1: the loader is not the bottleneck)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realdata", default=str(ROOT.parent / "shared" / "realdata"))
    ap.add_argument("--short-side", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("needs the ffmpeg executable (apt-get install -y ffmpeg)")
    work = Path(tempfile.mkdtemp(prefix="omni-bench-extract-"))
    videos = [Path(args.realdata) / n for n in REAL if (Path(args.realdata) / n).exists()] + generated(work)
    print(f"{'video':<34}{'frames':>7}{'ffmpeg f/cpu-s':>16}{'omni f/cpu-s':>14}{'ratio':>7}"
          f"{'omni 2s-windows':>17}{'ratio':>7}{'decord backend':>16}")
    tot = {"frames": 0, "ff": 0.0, "om": 0.0, "win": 0.0, "dec": 0.0}
    startup = ffmpeg_startup_cpu()
    for v in videos:
        n = frame_count(v)
        ff = max(1e-4, ffmpeg_cpu(v, args.repeats) - startup)
        om = omni_cpu(v, work / "out", args.short_side, 8, None, args.repeats)
        win = omni_cpu(v, work / "out", args.short_side, 8, 2.0, args.repeats)
        dec = omni_cpu(v, work / "out", args.short_side, 8, 2.0, args.repeats, backend="decord")
        tot["dec"] += dec
        tot["frames"] += n
        tot["ff"] += ff
        tot["om"] += om
        tot["win"] += win
        print(f"{v.name:<34}{n:>7}{n / ff:>16.0f}{n / om:>14.0f}{ff / om:>7.2f}{n / win:>17.0f}{ff / win:>7.2f}"
              f"{n / dec:>16.0f}")
    print(f"{'all':<34}{tot['frames']:>7}{tot['frames'] / tot['ff']:>16.0f}{tot['frames'] / tot['om']:>14.0f}"
          f"{tot['ff'] / tot['om']:>7.2f}{tot['frames'] / tot['win']:>17.0f}{tot['ff'] / tot['win']:>7.2f}"
          f"{tot['frames'] / tot['dec']:>16.0f}")
    print(f"(omni: decode + resize to {args.short_side} short side + store, 8 frames per clip or per 2 s window;"
          f" ffmpeg: its start-up cost, {startup * 1000:.0f} ms CPU, subtracted; 'decord backend': the 2 s-window"
          f" work with extract.backend=decord, source frames per CPU-second)")
    loader_vs_training(work)


if __name__ == "__main__":
    main()
