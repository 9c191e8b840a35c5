"""omni ingest vs img2dataset on the same local image list (not run in CI).

Serves N distinct JPEGs from a local HTTP server on 127.0.0.1 (a separate process, so its CPU
is not counted), then runs, one after the other in this run:
  - img2dataset: resize to 256 short side (keep_ratio), 2 processes, files output;
  - omni ingest: the same list, images re-encoded at 256 short side (ingest.image_short_side),
    plus what img2dataset does not do: content sniffing, sha256 storage, duplicate and
    val-leak checks, a resumable journal;
and prints items per CPU-second and per wall-second for both, and the ratios. A second pass
runs a list with 10% 404s, 10% refused connections and 10% non-images and checks that every
omni row got its reason.

omni's ingest writes one folder per unit: the source's rows are read from
``<workdir>/ingest/<source>/items.parquet`` (``omni.pipeline.stage_dir``). Without img2dataset
(not found at --img2dataset, nor on PATH) only omni is timed and the table says so.

    .venv-bench/bin/pip install img2dataset      # a separate venv: its pins differ from ours
    .venv/bin/python benchmarks/ingest_vs_img2dataset.py --images 2000 \
        --img2dataset .venv-bench/bin/img2dataset
    .venv/bin/python benchmarks/ingest_vs_img2dataset.py --smoke   # a few small images, seconds (tests)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


SOURCE = "images"  # the crawl list's source name in omni's config


def make_images(folder: Path, n: int, seed: int = 0, small: bool = False) -> list[str]:
    """Distinct photo-sized JPEGs (640x480 and 1024x768 mixed; ``small``: 320x240 and 400x300):
    smooth scenes plus noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        w, h = ((320, 240) if i % 2 == 0 else (400, 300)) if small else ((640, 480) if i % 2 == 0 else (1024, 768))
        coarse = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        im = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        arr = np.asarray(im).astype(np.int16) + rng.integers(-12, 12, (h, w, 3), dtype=np.int16)
        name = f"img_{i:05d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / name, quality=88)
        names.append(name)
    return names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    """Until the local server accepts connections."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the local image server did not start on port {port}")
            time.sleep(0.05)


@contextlib.contextmanager
def serving(folder: Path):
    """A plain HTTP server on 127.0.0.1 over ``folder`` while the block runs; yields its port."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        server.terminate()
        server.wait()


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return wall, cpu, proc


def omni_config(work: Path, url_list: Path, target: Path, workers: int = 16) -> Path:
    cfg = {
        "workdir": str(work / "omni-work"),
        "classes": ["thing"],
        "target": {"train": str(target / "train.csv"), "val": str(target / "val.csv")},
        "sources": [{"name": SOURCE, "kind": "image", "list": str(url_list)}],
        "ingest": {"allow_private_addresses": True, "workers": workers, "per_host": 16, "image_short_side": 256,
                   "tries": 1},
    }
    path = work / "omni.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def make_target(folder: Path) -> None:
    from omni.demo.world import write_video

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        write_video(folder / f"{name}.mp4", rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8), 10)
    (folder / "train.csv").write_text("path,label\na.mp4,thing\n")
    (folder / "val.csv").write_text("path,label\nb.mp4,thing\n")


def run_img2dataset(exe: str, url_list: Path, out: Path) -> tuple[float, float, pd.DataFrame]:
    shutil.rmtree(out, ignore_errors=True)
    wall, cpu, _ = timed([exe, "--url_list", str(url_list), "--input_format", "csv", "--url_col", "url",
                          "--output_folder", str(out), "--processes_count", "2", "--thread_count", "16",
                          "--image_size", "256", "--resize_mode", "keep_ratio", "--output_format", "files",
                          "--timeout", "5", "--retries", "0"])
    stats = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("*.parquet"))], ignore_index=True)
    return wall, cpu, stats


def find_img2dataset(exe: str) -> str | None:
    """The img2dataset executable: ``exe`` if it exists, else one on PATH, else None."""
    if Path(exe).is_file():
        return exe
    return shutil.which(Path(exe).name) or shutil.which("img2dataset")


def items_path(cfg: Path) -> Path:
    """Where omni's ingest writes the source's rows: its unit folder ``ingest/<source>``."""
    from omni.config import load_config
    from omni.pipeline import stage_dir

    return stage_dir(load_config(cfg), f"ingest/{SOURCE}") / "items.parquet"


def run_omni(cfg: Path) -> tuple[float, float, pd.DataFrame]:
    work = Path(yaml.safe_load(cfg.read_text())["workdir"])
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    wall, cpu, _ = timed([sys.executable, "-m", "omni", "ingest", str(cfg), "--no-prefect"], env=env)
    path = items_path(cfg)
    if not path.is_file():
        raise SystemExit(f"omni ingest finished but wrote no {path} (has the workdir layout changed?)")
    return wall, cpu, pd.read_parquet(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--img2dataset", default=str(ROOT / ".venv-bench" / "bin" / "img2dataset"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--omni-workers", type=int, default=8, help="omni ingest threads (img2dataset: 2x16)")
    ap.add_argument("--skip-img2dataset", action="store_true", help="time omni only (for tuning)")
    ap.add_argument("--smoke", action="store_true",
                    help="12 small images, 2 omni workers: checks that the benchmark runs (seconds), no real timing")
    ap.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    args = ap.parse_args(argv)
    if args.smoke:
        args.images, args.omni_workers = 12, 2
    work = Path(args.workdir or tempfile.mkdtemp(prefix="omni-bench-ingest-"))
    exe = None if args.skip_img2dataset else find_img2dataset(args.img2dataset)
    report: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        report.append(line)

    served = work / "served"
    t0 = time.time()
    names = make_images(served, args.images, small=args.smoke)
    (served / "page.jpg").write_bytes(b"<!DOCTYPE html><html><body>not an image</body></html>")
    print(f"generated {len(names)} images in {time.time() - t0:.0f}s under {served}")
    if exe is None:
        say("img2dataset: " + ("skipped (--skip-img2dataset)" if args.skip_img2dataset else
                               f"missing (not at {args.img2dataset}, not on PATH): omni measured alone"))
    make_target(work / "target")
    with serving(served) as port:
        base = f"http://127.0.0.1:{port}"
        clean = work / "clean.csv"
        pd.DataFrame({"url": [f"{base}/{n}" for n in names], "query": "thing"}).to_csv(clean, index=False)

        if exe is None:
            i_wall = i_cpu = float("nan")
            i_stats = pd.DataFrame({"status": []})
        else:
            i_wall, i_cpu, i_stats = run_img2dataset(exe, clean, work / "i2d-out")
        o_wall, o_cpu, o_items = run_omni(omni_config(work, clean, work / "target", args.omni_workers))
        n = len(names)
        i_ok = int((i_stats["status"] == "success").sum())
        o_ok = int((o_items["status"] == "ok").sum())
        say("\n== clean list: %d images, resize to 256 short side" % n)
        say(f"{'tool':<12}{'ok':>6}{'wall s':>9}{'cpu s':>9}{'items/wall-s':>14}{'items/cpu-s':>13}")
        tools = (("img2dataset", i_ok, i_wall, i_cpu),) if exe else ()
        for tool, ok, wall, cpu in tools + (("omni", o_ok, o_wall, o_cpu),):
            say(f"{tool:<12}{ok:>6}{wall:>9.1f}{cpu:>9.1f}{n / wall:>14.1f}{n / max(cpu, 1e-3):>13.1f}")
        if exe:
            say(f"ratio omni/img2dataset: {i_cpu / o_cpu:.2f}x per CPU-second, {i_wall / o_wall:.2f}x per wall-second")

        # bad inputs: 10% 404, 10% refused connection, 10% not an image
        closed = free_port()
        rows = []
        for k, name in enumerate(names[: max(100, n // 4)]):
            kind = k % 10
            if kind == 0:
                rows.append((f"{base}/missing_{k}.jpg", "http 404"))
            elif kind == 1:
                rows.append((f"http://127.0.0.1:{closed}/{name}", "connection refused"))
            elif kind == 2:
                rows.append((f"{base}/page.jpg?{k}", "not an image: html"))
            else:
                rows.append((f"{base}/{name}", ""))
        bad = work / "bad.csv"
        pd.DataFrame({"url": [u for u, _ in rows], "query": "thing"}).to_csv(bad, index=False)
        _, _, b_items = run_omni(omni_config(work, bad, work / "target", args.omni_workers))
        expect = dict(rows)
        got = dict(zip(b_items["url"], b_items["reason"].fillna("")))
        missing = [u for u, e in expect.items() if e and not got.get(u, "").startswith(e)]
        say(f"\n== bad-input list: {len(rows)} rows (10% 404, 10% refused, 10% non-image)")
        say("omni reasons: " + json.dumps(b_items.loc[b_items["status"] != "ok", "reason"]
                                          .str.replace(r"\(.*", "", regex=True).value_counts().to_dict()))
        say(f"omni rows with the expected reason: {len(rows) - len(missing)}/{len(rows)}"
            + ("" if not missing else f"  MISSING: {missing[:3]}"))
        if exe:
            _, _, b_i2d = run_img2dataset(exe, bad, work / "i2d-bad")
            say("img2dataset statuses: " + json.dumps(b_i2d["status"].value_counts().to_dict()) + " errors: "
                + json.dumps(b_i2d["error_message"].fillna("").str[:40].value_counts().head(4).to_dict()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(report) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
