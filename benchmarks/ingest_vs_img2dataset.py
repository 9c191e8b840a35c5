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

    .venv-bench/bin/pip install img2dataset      # a separate venv: its pins differ from ours
    .venv/bin/python benchmarks/ingest_vs_img2dataset.py --images 2000 \
        --img2dataset .venv-bench/bin/img2dataset
"""
from __future__ import annotations

import argparse
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


def make_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    """Distinct photo-sized JPEGs (640x480 and 1024x768 mixed): smooth scenes plus noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        w, h = (640, 480) if i % 2 == 0 else (1024, 768)
        small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        arr = np.asarray(im).astype(np.int16) + rng.integers(-12, 12, (h, w, 3), dtype=np.int16)
        name = f"img_{i:05d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / name, quality=88)
        names.append(name)
    return names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        "sources": [{"name": "images", "kind": "image", "list": str(url_list)}],
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


def run_omni(cfg: Path) -> tuple[float, float, pd.DataFrame]:
    work = Path(yaml.safe_load(cfg.read_text())["workdir"])
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    wall, cpu, _ = timed([sys.executable, "-m", "omni", "ingest", str(cfg), "--no-prefect"], env=env)
    return wall, cpu, pd.read_parquet(work / "ingest" / "items.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--img2dataset", default=str(ROOT / ".venv-bench" / "bin" / "img2dataset"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--omni-workers", type=int, default=8, help="omni ingest threads (img2dataset: 2x16)")
    ap.add_argument("--skip-img2dataset", action="store_true", help="time omni only (for tuning)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="omni-bench-ingest-"))
    served = work / "served"
    t0 = time.time()
    names = make_images(served, args.images)
    (served / "page.jpg").write_bytes(b"<!DOCTYPE html><html><body>not an image</body></html>")
    print(f"generated {len(names)} images in {time.time() - t0:.0f}s under {served}")
    make_target(work / "target")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(served)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        base = f"http://127.0.0.1:{port}"
        clean = work / "clean.csv"
        pd.DataFrame({"url": [f"{base}/{n}" for n in names], "query": "thing"}).to_csv(clean, index=False)

        if args.skip_img2dataset:
            i_wall = i_cpu = float("nan")
            i_stats = pd.DataFrame({"status": []})
        else:
            i_wall, i_cpu, i_stats = run_img2dataset(args.img2dataset, clean, work / "i2d-out")
        o_wall, o_cpu, o_items = run_omni(omni_config(work, clean, work / "target", args.omni_workers))
        n = len(names)
        i_ok = int((i_stats["status"] == "success").sum())
        o_ok = int((o_items["status"] == "ok").sum())
        print("\n== clean list: %d images, resize to 256 short side" % n)
        print(f"{'tool':<12}{'ok':>6}{'wall s':>9}{'cpu s':>9}{'items/wall-s':>14}{'items/cpu-s':>13}")
        for tool, ok, wall, cpu in (("img2dataset", i_ok, i_wall, i_cpu), ("omni", o_ok, o_wall, o_cpu)):
            print(f"{tool:<12}{ok:>6}{wall:>9.1f}{cpu:>9.1f}{n / wall:>14.1f}{n / cpu:>13.1f}")
        print(f"ratio omni/img2dataset: {(n / o_cpu) / (n / i_cpu):.2f}x per CPU-second, "
              f"{(n / o_wall) / (n / i_wall):.2f}x per wall-second")

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
        _, _, b_items = run_omni(omni_config(work, bad, work / "target"))
        expect = dict(rows)
        got = dict(zip(b_items["url"], b_items["reason"]))
        missing = [u for u, e in expect.items() if e and not got.get(u, "").startswith(e)]
        _, _, b_i2d = run_img2dataset(args.img2dataset, bad, work / "i2d-bad")
        print(f"\n== bad-input list: {len(rows)} rows (10% 404, 10% refused, 10% non-image)")
        print("omni reasons:", json.dumps(b_items.loc[b_items["status"] != "ok", "reason"]
                                          .str.replace(r"\(.*", "", regex=True).value_counts().to_dict()))
        print(f"omni rows with the expected reason: {len(rows) - len(missing)}/{len(rows)}"
              + ("" if not missing else f"  MISSING: {missing[:3]}"))
        print("img2dataset statuses:", json.dumps(b_i2d["status"].value_counts().to_dict()),
              "errors:", json.dumps(b_i2d["error_message"].fillna("").str[:40].value_counts().head(4).to_dict()))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
