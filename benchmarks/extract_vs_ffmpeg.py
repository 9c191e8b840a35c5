"""omni extract vs bare ffmpeg decoding on the same videos (not run in CI).

For each video (the real clips in ../shared/realdata and generated H.264 clips at 320x240 and
640x480), in the same run:
  - ffmpeg: ``ffmpeg -i F -an -f null -`` (every video frame decoded, nothing else: the decode limit);
  - omni: the extract stage's work on the same file (decode every frame once, convert and
    resize the sampled ones in one swscale pass, append to a frame-store shard), with the
    extract defaults for how many frames a clip stores (``extract.fps``, 4 frames a second, at
    most ``max_frames_per_clip``; ``--fps null``: ``frames_per_clip`` spread over the clip).
Both are timed in CPU-seconds (all threads) and reported as source frames per CPU-second.
Every omni run must store its clips (a decode failure is an error here, not a fast row).

Then the frame store's read throughput (clips/s into a training batch through the same
dataset code the trainer uses) against the default student's training step rate on this CPU
(``ModelConfig()``: what the demo and a user's run train with; clips stored as the default
extract stores them: at the model's short side, ``extract.fps`` frames a second).

Without the ffmpeg executable only omni is timed and the ffmpeg columns read nan.

    .venv/bin/python benchmarks/extract_vs_ffmpeg.py
    .venv/bin/python benchmarks/extract_vs_ffmpeg.py --smoke   # two short generated clips, seconds (tests)
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


def generated(folder: Path, seconds: int = 10, sizes=((320, 240), (640, 480))) -> list[Path]:
    """Clips of ``seconds`` at 25 fps: drifting textures with noise, like handheld footage."""
    from omni.demo.world import write_video

    rng = np.random.default_rng(0)
    out = []
    for w, h in sizes:
        base = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(
            rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize((w * 2, h * 2), 3))
        frames = []
        for k in range(25 * seconds):
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


def omni_cpu(path: Path, out: Path, short_side: int, fps: float | None, window_s: float | None,
             repeats: int, backend: str = "pyav") -> tuple[float, int]:
    """Best CPU-seconds of omni's extract work on one file, and the frames it stored per clip."""
    import pandas as pd

    from omni.config import ExtractConfig
    from omni.video.extract import _extract_chunk
    from omni.video.media import check_video, sniff_file

    info = check_video(path, sniff_file(path))
    kind = "untrimmed" if window_s else "video"
    item = {"item_id": "x", "split": "web", "source": "bench", "kind": kind, "label": 0, "path": str(path),
            "duration_s": info.duration_s, "window_s": window_s or info.duration_s,
            "stride_s": window_s or info.duration_s}
    cfg = ExtractConfig(short_side=short_side, fps=fps, backend=backend).model_dump()
    best = None
    for r in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.process_time()
        part = _extract_chunk(f"shard-{r}", [item], cfg, str(out))
        cpu = time.process_time() - t0
        best = cpu if best is None else min(best, cpu)
    rows = pd.read_parquet(part)
    failed = rows[rows["status"] != "ok"]
    if len(rows) == 0 or len(failed):
        raise SystemExit(f"omni extract ({backend}) stored nothing for {path.name}: "
                         f"{failed['reason'].iloc[0] if len(failed) else 'no rows'}")
    return best, int(rows["t"].max())


def loader_vs_training(out: Path, clips: int = 256, passes: int = 3, steps: int = 8) -> list[str]:
    import pandas as pd
    import torch

    from omni.config import ExtractConfig, ModelConfig, TrainConfig, needed_short_side
    from omni.learning.data import ClipDataset, InputPolicy
    from omni.video.framestore import ShardWriter
    from omni.learning.models import build_model, memory_format

    m, ecfg = ModelConfig(), ExtractConfig()  # the student omni trains by default (the demo's too)
    side = needed_short_side([m]) if ecfg.short_side == "auto" else ecfg.short_side
    # a 4 s clip as the default extract stores it: extract.fps frames a second at the model's short side, 4:3
    t = min(ecfg.max_frames_per_clip, round(4.0 * ecfg.fps)) if ecfg.fps else ecfg.frames_per_clip
    shape = (t, side, side * 4 // 3, 3)
    rng = np.random.default_rng(0)
    writer = ShardWriter(out / "frames", "bench")
    rows = []
    for i in range(clips):
        ref = writer.append(rng.integers(0, 255, shape, dtype=np.uint8))
        rows.append({"item_id": f"i{i}", "sample_id": f"i{i}#0", "label": i % 6, **ref})
    writer.close()
    ds = ClipDataset(pd.DataFrame(rows), out / "frames", num_frames=m.num_frames, size=m.input_size, train=True,
                     policy=InputPolicy.of(m, TrainConfig().augment))
    batch = m.batch_size
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0)
    t0 = time.perf_counter()
    n = 0
    for _ in range(passes):
        for x, _y in loader:
            n += len(x)
    read_rate = n / (time.perf_counter() - t0)
    fmt = memory_format(m.arch)
    model = build_model(m.arch, 6, m.width).to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=m.lr)
    x = torch.randn(batch, 3, m.num_frames, m.input_size, m.input_size).contiguous(memory_format=fmt)
    y = torch.randint(0, 6, (batch,))

    def step():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    train_rate = steps * batch / (time.perf_counter() - t0)
    return [f"\n== loader vs training (default student: {m.arch} width {m.width}, {m.num_frames}x{m.input_size}^2 "
            f"{m.resize}, {m.frame_sampling} frames; stored clips {t}x{shape[1]}x{shape[2]}, batch {batch})",
            f"frame store -> training batch: {read_rate:.0f} clips/s (1 process, with augmentation)",
            f"student training step rate:    {train_rate:.0f} clips/s (bf16 autocast)",
            f"ratio loader/training: {read_rate / train_rate:.1f}x (>1: the loader is not the bottleneck)"]


def _fps(text: str) -> float | None:
    return None if text.lower() in ("null", "none") else float(text)


def main(argv: list[str] | None = None) -> int:
    from omni.config import ExtractConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realdata", default=str(ROOT.parent / "shared" / "realdata"))
    ap.add_argument("--short-side", type=int, default=320)
    ap.add_argument("--fps", type=_fps, default=ExtractConfig().fps,
                    help="extract.fps (default: omni's, %(default)s); null: frames_per_clip frames per clip")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="two 2 s generated clips, 1 repeat, a small loader run: "
                    "checks that the benchmark runs (seconds), no real timing")
    ap.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    args = ap.parse_args(argv)
    ffmpeg = shutil.which("ffmpeg")
    work = Path(tempfile.mkdtemp(prefix="omni-bench-extract-"))
    try:
        if args.smoke:
            args.repeats = 1
            videos = generated(work, seconds=2, sizes=((160, 120), (320, 240)))
        else:
            videos = [Path(args.realdata) / n for n in REAL if (Path(args.realdata) / n).exists()] + generated(work)
        lines = [] if ffmpeg else ["ffmpeg: missing (no ffmpeg executable on PATH): omni measured alone, "
                                   "ffmpeg columns nan"]
        lines.append(f"{'video':<34}{'frames':>7}{'ffmpeg f/cpu-s':>16}{'omni f/cpu-s':>14}{'ratio':>7}"
                     f"{'omni 2s-windows':>17}{'ratio':>7}{'decord backend':>16}")
        for line in lines:
            print(line, flush=True)
        na = float("nan")
        tot = {"frames": 0, "ff": 0.0, "om": 0.0, "win": 0.0, "dec": 0.0}
        startup = ffmpeg_startup_cpu() if ffmpeg else na
        stored = set()
        for v in videos:
            n = frame_count(v)
            ff = max(1e-4, ffmpeg_cpu(v, args.repeats) - startup) if ffmpeg else na
            om, t_clip = omni_cpu(v, work / "out", args.short_side, args.fps, None, args.repeats)
            win, t_win = omni_cpu(v, work / "out", args.short_side, args.fps, 2.0, args.repeats)
            dec, _ = omni_cpu(v, work / "out", args.short_side, args.fps, 2.0, args.repeats, backend="decord")
            om, win, dec = (max(c, 1e-4) for c in (om, win, dec))
            stored.add((t_clip, t_win))
            tot["dec"] += dec
            tot["frames"] += n
            tot["ff"] += ff
            tot["om"] += om
            tot["win"] += win
            lines.append(f"{v.name:<34}{n:>7}{n / ff:>16.0f}{n / om:>14.0f}{ff / om:>7.2f}{n / win:>17.0f}"
                         f"{ff / win:>7.2f}{n / dec:>16.0f}")
            print(lines[-1], flush=True)
        lines.append(f"{'all':<34}{tot['frames']:>7}{tot['frames'] / tot['ff']:>16.0f}"
                     f"{tot['frames'] / tot['om']:>14.0f}{tot['ff'] / tot['om']:>7.2f}"
                     f"{tot['frames'] / tot['win']:>17.0f}{tot['ff'] / tot['win']:>7.2f}"
                     f"{tot['frames'] / tot['dec']:>16.0f}")
        how = f"{args.fps:g} frames a second" if args.fps else f"{ExtractConfig().frames_per_clip} frames"
        lines.append(f"(omni: decode + resize to {args.short_side} short side + store, {how} per clip or per 2 s "
                     f"window (frames stored per clip / per window: "
                     f"{', '.join(f'{a}/{b}' for a, b in sorted(stored))});"
                     + (f" ffmpeg: its start-up cost, {startup * 1000:.0f} ms CPU, subtracted;" if ffmpeg else "")
                     + " 'decord backend': the 2 s-window work with extract.backend=decord, source frames per "
                     "CPU-second)")
        print(lines[-2] + "\n" + lines[-1], flush=True)
        if args.smoke:
            tail = loader_vs_training(work, clips=32, passes=1, steps=2)
        else:
            tail = loader_vs_training(work)
        print("\n".join(tail), flush=True)
        lines += tail
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("\n".join(lines) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
