"""Where one image item's ingest CPU goes, part by part (not run in CI).

Serves ``benchmarks/ingest_vs_img2dataset.py``'s clean list (the same distinct JPEGs, from a
separate ``http.server`` process on 127.0.0.1, so the server's CPU is not counted) and runs the
``ingest/images`` unit on it in this process with the fetch jobs run one after the other on the
main thread (``_run_jobs`` replaced by a plain loop). Each part's functions are wrapped by a
thread-CPU timer: fetch (HTTP, sha256, temp-file write), sniffing, the JPEG data-length check,
decode (open, DCT-scaled load, RGB), EXIF orientation, resize, leak thumbnail, store (original
and re-encoded JPEG), journal, and the batch steps (list, records, dedup and leaks, Parquet,
stats). Rounds alternate an untimed run (the real CPU per item) and a timed one (the shares).
``--top N`` adds one run under cProfile and prints its top functions by own time.

    .venv/bin/python benchmarks/ingest_profile.py --images 200            # 640x480/1024x768 JPEGs
    .venv/bin/python benchmarks/ingest_profile.py --images 200 --small    # 320x240/400x300
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_vs_img2dataset import make_images, make_target, serving  # noqa: E402

# part -> the functions (module, attribute) whose time is the part's; each is wrapped by a timer
# (thread CPU time, ``time.thread_time``) where ingest looks it up
PARTS = [
    ("fetch (HTTP, sha256, temp file)", [("omni.fetching.fetch", "Fetcher.fetch")]),
    ("sniff", [("omni.fetching.validate", "sniff_file")]),
    ("JPEG data-length check", [("omni.video.media", "jpeg_data_shortfall")]),
    ("decode (open, DCT-scaled load, RGB)", [("omni.fetching.validate", "check_image")]),
    ("EXIF orientation", [("omni.video.media", "upright")]),
    ("resize to short side", [("omni.fetching.validate", "_resized")]),
    ("leak thumbnail", [("omni.fetching.leak", "thumbnail"), ("omni.fetching.leak", "encode")]),
    ("store original", [("omni.fetching.validate", "store_download")]),
    ("re-encode JPEG + store", [("omni.fetching.validate", "store_resized_jpeg")]),
    ("journal write", [("omni.fetching.journal", "Journal.add")]),
    ("batch: dedup + leak check", [("omni.fetching.ingest", "mark_duplicates_and_leaks")]),
    ("batch: journal records", [("omni.fetching.ingest", "_attach_records")]),
    ("batch: items.parquet + stats", [("omni.fetching.ingest", "write_parquet_atomic"),
                                      ("omni.fetching.ingest", "write_json_atomic")]),
    ("batch: read list", [("omni.fetching.ingest", "read_source_list")]),
]
# (part, contained part): the contained part's time is taken out of the containing one's
NESTED = [("decode (open, DCT-scaled load, RGB)", "JPEG data-length check"),
          ("decode (open, DCT-scaled load, RGB)", "EXIF orientation")]


class Timers:
    """Wraps each part's functions with a timer while active (the fetch jobs run on this thread)."""

    def __init__(self):
        self.spent = {label: 0.0 for label, _ in PARTS}
        self._saved = []

    def __enter__(self):
        import importlib

        for label, funcs in PARTS:
            for mod_name, attr in funcs:
                owner = importlib.import_module(mod_name)
                *path, name = attr.split(".")
                for p in path:
                    owner = getattr(owner, p)
                orig = getattr(owner, name)
                self._saved.append((owner, name, orig))
                setattr(owner, name, self._wrap(label, orig))
        return self

    def _wrap(self, label, fn):
        spent = self.spent

        def timed(*a, **k):
            t0 = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                spent[label] += time.thread_time() - t0
        return timed

    def __exit__(self, *exc):
        for owner, name, orig in reversed(self._saved):
            setattr(owner, name, orig)

    def rows(self, whole: float) -> list[tuple[str, float]]:
        parts = dict(self.spent)
        for outer, inner in NESTED:
            parts[outer] -= parts[inner]
        rows = list(parts.items())
        rows.append(("other (record keeping, progress, watchdog thread)", whole - sum(parts.values())))
        return rows


def run_ingest(cfg_path: Path, serial: bool, prof: cProfile.Profile | None = None):
    """``ingest_source`` for the config's one source, as the ingest unit calls it; returns CPU seconds."""
    from omni.config import load_config
    from omni.fetching import ingest as ingest_mod
    from omni.pipeline import stage_dir
    from omni.pipeline.runner import run_unit

    cfg = load_config(cfg_path)
    shutil.rmtree(cfg.workdir, ignore_errors=True)
    run_unit(cfg, "ingest/target")  # the target unit is not what is measured
    if serial:  # every fetch on this thread, so that cProfile sees it
        def serial_jobs(jobs, work, workers, total, already, progress):
            for job in jobs:
                work(job)
        ingest_mod._run_jobs, saved = serial_jobs, ingest_mod._run_jobs
    try:
        c0 = time.process_time()
        if prof:
            prof.enable()
        run_unit(cfg, "ingest/images")
        if prof:
            prof.disable()
        cpu = time.process_time() - c0
    finally:
        if serial:
            ingest_mod._run_jobs = saved
    items = pd.read_parquet(stage_dir(cfg, "ingest/images") / "items.parquet")
    return cpu, items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--small", action="store_true", help="320x240/400x300 JPEGs (the smoke list's sizes)")
    ap.add_argument("--short-side", type=int, default=256, help="ingest.image_short_side (0: keep originals)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--top", type=int, default=0, help="also run once under cProfile and print its top N functions")
    ap.add_argument("--smoke", action="store_true", help="a tiny run for the tests: 6 small JPEGs, one round")
    args = ap.parse_args(argv)
    if args.smoke:
        args.images, args.small, args.rounds = 6, True, 1
    import yaml

    work = Path(args.workdir or tempfile.mkdtemp(prefix="omni-ingest-profile-"))
    served = work / "served"
    names = make_images(served, args.images, small=args.small)
    make_target(work / "target")
    with serving(served) as port:
        clean = work / "clean.csv"
        pd.DataFrame({"url": [f"http://127.0.0.1:{port}/{n}" for n in names], "query": "thing"}).to_csv(clean, index=False)
        cfg = {"workdir": str(work / "omni-work"), "classes": ["thing"],
               "target": {"train": str(work / "target" / "train.csv"), "val": str(work / "target" / "val.csv")},
               "sources": [{"name": "images", "kind": "image", "list": str(clean)}],
               "ingest": {"allow_private_addresses": True, "workers": 1, "per_host": 16, "tries": 1,
                          **({"image_short_side": args.short_side} if args.short_side else {})}}
        cfg_path = work / "omni.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        n = len(names)
        plain = timed = 0.0
        timers = Timers()
        for _ in range(args.rounds):  # interleaved, so a busy spell of the machine hits both alike
            cpu, items = run_ingest(cfg_path, serial=True)
            assert (items["status"] == "ok").all(), items["reason"].value_counts()
            plain += cpu
            with timers:
                timed += run_ingest(cfg_path, serial=True)[0]
        prof = None
        if args.top:
            prof = cProfile.Profile(time.process_time)
            run_ingest(cfg_path, serial=True, prof=prof)
    items_done = n * args.rounds
    size = "320x240/400x300" if args.small else "640x480/1024x768"
    print(f"{n} JPEGs ({size}) x {args.rounds} rounds, image_short_side {args.short_side or 'none'}, "
          "fetched one at a time on one thread")
    print(f"CPU per item: {1e3 * plain / items_done:.2f} ms without timers ({items_done / plain:.0f} items per "
          f"CPU-second), {1e3 * timed / items_done:.2f} ms with them")
    print("\n| part | share of CPU | ms per item |\n|---|---|---|")
    for label, t in timers.rows(timed):
        print(f"| {label} | {100 * t / timed:.1f}% | {1e3 * t / items_done:.3f} |")
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
