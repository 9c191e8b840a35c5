"""The manifest stage: ``web_items.parquet`` (every web item with its verdict) and ``train.parquet``
(what the student learns from), built by omni/selection/manifest.py."""
from __future__ import annotations

import pandas as pd

from .unit import Unit


def manifest_inputs(u: Unit) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ingested items, extracted web samples, target samples) of every source."""
    from ..video.extract import SAMPLE_COLUMNS

    names = [s.name for s in u.cfg.sources]

    def cat(paths, columns=None):
        frames = [pd.read_parquet(p) for p in paths]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    items = cat([u.input(f"ingest/{n}") / "items.parquet" for n in names],
                ["item_id", "source", "kind", "url", "query", "status", "reason", "sha256"])
    samples_cols = [c if c not in ("status", "reason") else f"extract_{c}" for c in SAMPLE_COLUMNS]
    web = cat([u.input(f"extract/{n}") / "samples.parquet" for n in names], samples_cols)
    target = pd.read_parquet(u.input("extract/target") / "samples.parquet")
    return items, web, target


def write_manifest(u: Unit, items, web, scores, filtered, target) -> dict:
    from ..runtime.atomic import write_parquet_atomic
    from ..selection.manifest import build_manifest

    web_items, train = build_manifest(items, web, scores, filtered, target, u.settings["classes"],
                                      u.settings["source_order"])
    write_parquet_atomic(web_items, u.dir / "web_items.parquet")
    write_parquet_atomic(train, u.dir / "train.parquet")
    counts = {f"{src}/{st}": int(n) for (src, st), n in web_items.groupby(["source", "status"]).size().items()}
    return {"web_rows": len(web_items), "train_samples": len(train), "by_source_status": counts}


def body(u: Unit) -> dict:
    from ..learning.score import SCORE_COLUMNS

    names = [s.name for s in u.cfg.sources]
    items, web, target = manifest_inputs(u)
    light = [c for c in SCORE_COLUMNS if c != "teacher_probs"]  # the vectors stay in score/; never all in memory
    scores = pd.concat([pd.read_parquet(u.input(f"score/{n}") / "scores.parquet", columns=light) for n in names],
                       ignore_index=True) if names else pd.DataFrame(columns=light)
    filtered = pd.read_parquet(u.input("filter") / "filtered.parquet")
    return write_manifest(u, items, web, scores, filtered, target)
