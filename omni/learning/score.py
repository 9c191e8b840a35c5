"""Score: every usable web sample of one source through its teacher.

Images go to the 2D teacher as one frame, videos and untrimmed windows to the 3D teacher as
clips. Each row keeps the label it was scored against, the teacher's top class, the
probability of the query class and the full probability vector.

Samples are scored in shards of ``shard_items``; each shard writes ``parts/<shard>.parquet``
and ``scores.parquet`` is then assembled from the parts one at a time, so no process holds
every probability vector of a list, a rerun scores only the shards without a part, and the
shards can be spread over a Dask cluster (``scheduler``) or over the ranks of a ``torchrun``
job (``rank``/``world_size``) with the same result.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..runtime.atomic import concat_parquet_atomic, write_parquet_atomic
from ..runtime.fanout import map_shards
from .models import is_2d
from .predict import predict
from .teacher import teacher_dataset
from .train import load_model

SCORE_COLUMNS = ["sample_id", "item_id", "source", "label", "teacher", "teacher_label", "teacher_score",
                 "teacher_probs"]

_MODELS: dict = {}  # per process: a worker scoring several shards loads its teacher once


def _teacher(path: Path, device: str):
    key = (str(path), path.stat().st_mtime_ns, device)
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = load_model(path, device)
    return _MODELS[key]


def score_shard(shard_id: str, web: pd.DataFrame, root: str, teacher_dir: str, teacher: str, out_dir: str,
                amp: bool | str, device: str, batch_size: int, loader_workers: int) -> str:
    """Score one shard of samples; writes and returns ``out_dir/parts/<shard_id>.parquet``."""
    model, m, _ = _teacher(Path(teacher_dir) / "model.pt", device)
    ds = teacher_dataset(web, Path(root), m, train=False, image_frames=1 if is_2d(m.arch) else m.num_frames,
                         group_by_item=False)
    probs = predict(model, ds, batch_size=batch_size, views=1, amp=amp, loader_workers=loader_workers)
    labels = web["label"].astype(int).to_numpy()
    part = pd.DataFrame({
        "sample_id": web["sample_id"].to_numpy(), "item_id": web["item_id"].to_numpy(),
        "source": web["source"].to_numpy(), "label": labels, "teacher": teacher,
        "teacher_label": probs.argmax(axis=1).astype(int) if len(probs) else np.zeros(0, int),
        "teacher_score": [float(p[lab]) if lab >= 0 else 0.0 for p, lab in zip(probs, labels)],
        "teacher_probs": [p.astype(np.float32) for p in probs],
    }, columns=SCORE_COLUMNS)
    path = Path(out_dir) / "parts" / f"{shard_id}.parquet"
    write_parquet_atomic(part, path)
    return str(path)


def score_samples(samples: pd.DataFrame, root: Path, teacher_dir: Path, teacher: str, out_dir: Path, *,
                  amp: bool | str = "auto", device: str = "auto", batch_size: int = 32, loader_workers: int = 0,
                  shard_items: int = 256, scheduler: str | None = None, resources: dict | None = None,
                  rank: int = 0, world_size: int = 1, progress=None) -> dict:
    """Writes ``out_dir/scores.parquet`` (rank 0, once every shard has its part); returns counts.

    With ``world_size > 1`` each rank scores shards ``rank, rank + world_size, ...`` and only
    rank 0 assembles (the caller waits for every rank between the two)."""
    out_dir = Path(out_dir)
    web = samples[samples["extract_status"] == "ok"].reset_index(drop=True)
    if world_size == 1:  # with several ranks the caller has rank 0 do this first (prepare_parts)
        prepare_parts(out_dir, len(web), shard_items)
    shards = [(f"score-{i // shard_items:05d}", web.iloc[i:i + shard_items]) for i in range(0, len(web), shard_items)]
    todo = [(sid, rows) for k, (sid, rows) in enumerate(shards)
            if k % world_size == rank and not (out_dir / "parts" / f"{sid}.parquet").exists()]
    done = len(web) - sum(len(rows) for _, rows in todo)
    sizes = {sid: len(rows) for sid, rows in todo}

    def finished(part: str) -> None:
        nonlocal done
        done += sizes[Path(part).stem]
        if progress:
            progress(done, len(web))

    if progress:
        progress(done, len(web))
    map_shards(score_shard, [(sid, rows, str(root), str(teacher_dir), teacher, str(out_dir), amp, device,
                              batch_size, loader_workers) for sid, rows in todo], finished,
               scheduler=scheduler, resources=resources, name=f"score {teacher}")
    return {"scored": len(web), "shards": len(shards), "shards_this_run": len(todo)}


def prepare_parts(out_dir: Path, samples: int, shard_items: int) -> None:
    """Parts of an earlier run are reused only if they were cut the same way."""
    import json
    import shutil

    from ..runtime.atomic import write_json_atomic

    parts = Path(out_dir) / "parts"
    layout = {"samples": samples, "shard_items": shard_items}
    f = parts / "_layout.json"
    try:
        same = json.loads(f.read_text()) == layout
    except (OSError, ValueError):
        same = False
    if not same:
        shutil.rmtree(parts, ignore_errors=True)  # omni's own part files of another shard size
        write_json_atomic(f, layout)


def assemble_scores(out_dir: Path, shards: int) -> None:
    """``scores.parquet`` from the shards' parts, read one at a time."""
    out_dir = Path(out_dir)
    parts = [out_dir / "parts" / f"score-{i:05d}.parquet" for i in range(shards)]
    missing = [p.name for p in parts if not p.exists()]
    if missing:
        raise RuntimeError(f"scores: {len(missing)} shard(s) have no part yet (e.g. {missing[0]}): run again")
    concat_parquet_atomic(parts, out_dir / "scores.parquet",
                          empty=pd.DataFrame({c: pd.Series(dtype=object) for c in SCORE_COLUMNS}))
