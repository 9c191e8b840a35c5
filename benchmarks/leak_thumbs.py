"""Leak detection against the target val set: how many thumbnails per val clip.

A web item is a leak when each of its frame thumbnails has a near twin among a val clip's
thumbnails (``omni.fetching.leak``). Val clips are summarised by ``omni.fetching.validate.VAL_THUMBS`` thumbnails
spread over their duration; a web image grabbed from a frame between two of them can be missed.
This runs only the ingest stage of zoo worlds (each world's generator plants re-encoded, resized,
cropped copies of val clips, as web videos and as single-frame web images) once per thumbnail
count, and counts planted leaks found and clean web items wrongly called leaks.

    python benchmarks/leak_thumbs.py [--worlds all] [--seeds 0,1,2] [--counts 8,16,32]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def leaks(world: Path, workdir: Path, count: int) -> dict:
    from learning_quality import _config, world_config

    from omni import pipeline
    from omni.fetching import validate
    from omni.demo.world import _relative_url

    validate.VAL_THUMBS = count
    cfg = _config(world_config(world, workdir, []))
    for _ in pipeline.run_stage(cfg, "ingest", pipeline.Keys(cfg)):
        pass
    items = pd.concat([pd.read_parquet(pipeline.stage_dir(cfg, f"ingest/{s.name}") / "items.parquet")
                       for s in cfg.sources], ignore_index=True)
    status = dict(zip([_relative_url(u) for u in items["url"]], items["status"]))
    truth = pd.read_parquet(world / "ground_truth.parquet")
    planted = truth.loc[truth["planted"] == "leak", "url"]
    clean = truth.loc[truth["planted"] == "", "url"]
    return {"planted": len(planted), "found": int(sum(status.get(u) == "leak" for u in planted)),
            "false": int(sum(status.get(u) == "leak" for u in clean)), "clean": len(clean)}


def main(argv=None) -> int:
    from learning_quality import make_world

    from omni.demo.world import ZOO

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", default="all")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--counts", default="8,16,32")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/omni-leak-thumbs"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "leak_thumbs")
    ap.add_argument("--table-only", action="store_true", help="rebuild table.md from --out/runs.csv")
    a = ap.parse_args(argv)
    if a.table_only:
        write_table(pd.read_csv(a.out / "runs.csv"), a.out)
        return 0
    worlds = [*ZOO, "demo"] if a.worlds == "all" else a.worlds.split(",")
    counts = [int(c) for c in a.counts.split(",")]
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for w in worlds:
        for s in (int(x) for x in a.seeds.split(",")):
            world = make_world(a.cache, w, s)
            for n in counts:
                t = time.time()
                r = {"world": w, "seed": s, "val_thumbs": n,
                     **leaks(world, a.cache / "work" / f"{w}-s{s}-n{n}", n), "wall_s": round(time.time() - t, 1)}
                rows.append(r)
                print(json.dumps(r), flush=True)
    write_table(pd.DataFrame(rows), a.out)
    return 0


def write_table(df: pd.DataFrame, out: Path) -> None:
    df.to_csv(out / "runs.csv", index=False)
    g = df.groupby("val_thumbs")[["planted", "found", "false", "clean"]].sum()
    lines = ["| val thumbnails per clip | leaks found / planted | clean web items called leaks | ingest s (mean) |",
             "|---|---|---|---|"]
    for n, r in g.iterrows():
        lines.append(f"| {n} | {r['found']} / {r['planted']} | {r['false']} of {r['clean']} | "
                     f"{df[df.val_thumbs == n]['wall_s'].mean():.1f} |")
    missed = df[(df["found"] < df["planted"]) | (df["false"] > 0)]
    lines += ["", f"{len(df) // df['val_thumbs'].nunique()} world-seeds. Misses and false leaks:", "",
              "| world, seed | val thumbnails | found / planted | false leaks |", "|---|---|---|---|"]
    lines += [f"| `{r.world}` s{r.seed} | {r.val_thumbs} | {r.found} / {r.planted} | {r.false} |" for r in missed.itertuples()]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
