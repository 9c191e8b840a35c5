"""Score: every usable web sample of one source through its teacher.

Images go to the 2D teacher as one frame, videos and untrimmed windows to the 3D teacher as
clips. Each row keeps the label it was scored against, the teacher's top class, the
probability of the query class and the full probability vector.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import write_parquet_atomic
from .models import is_2d
from .predict import predict
from .teacher import teacher_dataset
from .train import load_model

SCORE_COLUMNS = ["sample_id", "item_id", "source", "label", "teacher", "teacher_label", "teacher_score",
                 "teacher_probs"]


def score_samples(samples: pd.DataFrame, root: Path, teacher_dir: Path, teacher: str, out_dir: Path, *,
                  amp: bool | str = "auto", device: str = "auto", batch_size: int = 32, loader_workers: int = 0,
                  progress=None) -> dict:
    """Writes ``out_dir/scores.parquet``; returns counts."""
    web = samples[samples["extract_status"] == "ok"].reset_index(drop=True)
    rows = []
    if len(web):
        model, m, _ = load_model(Path(teacher_dir) / "model.pt", device)
        ds = teacher_dataset(web, root, m, train=False, image_frames=1 if is_2d(m.arch) else m.num_frames,
                             group_by_item=False)
        probs = predict(model, ds, batch_size=batch_size, views=1, amp=amp, loader_workers=loader_workers)
        for r, p in zip(web.to_dict("records"), probs):
            label = int(r["label"])
            rows.append({"sample_id": r["sample_id"], "item_id": r["item_id"], "source": r["source"],
                         "label": label, "teacher": teacher, "teacher_label": int(p.argmax()),
                         "teacher_score": float(p[label]) if label >= 0 else 0.0,
                         "teacher_probs": p.astype(np.float32).tolist()})
    if progress:
        progress(len(web), len(web))
    write_parquet_atomic(pd.DataFrame(rows, columns=SCORE_COLUMNS), Path(out_dir) / "scores.parquet")
    return {"scored": len(rows)}
