"""Prediction: softmax probabilities per unit, averaged over temporal x spatial views.

Batches come from a DataLoader (worker processes and pinned memory on a GPU) so that
scoring on a GPU is not fed by one thread.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .data import ClipDataset
from .autocast import use_autocast


def view_grid(views: int) -> list[tuple[float, float]]:
    """(temporal offset, crop position) per view: offsets spread over the clip, crops cycling
    centre / start / end of the long side."""
    if views == 1:
        return [(0.5, 0.5)]
    return [(float(t), (0.5, 0.0, 1.0)[i % 3]) for i, t in enumerate(np.linspace(0.1, 0.9, views))]


class _Views(Dataset):
    def __init__(self, ds: ClipDataset, views: int):
        self.ds, self.grid = ds, view_grid(views)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.stack([self.ds.load(i, self.ds._rng(i), t, pos) for t, pos in self.grid])


@torch.no_grad()
def predict_views(model: torch.nn.Module, ds: ClipDataset, batch_size: int = 32, views: int = 1,
                  amp: bool | str = "auto", loader_workers: int = 0) -> np.ndarray:
    """``float32[N, views, K]`` softmax probabilities of every view of every unit."""
    dev = next(model.parameters()).device
    model.eval()
    use_amp = use_autocast(amp, dev)
    args = {"num_workers": loader_workers, "pin_memory": dev.type == "cuda"}
    if loader_workers > 0:
        args["multiprocessing_context"] = "forkserver"
    out = []
    for xb in DataLoader(_Views(ds, views), batch_size=max(1, batch_size // len(view_grid(views))), **args):
        b, v = xb.shape[:2]
        x = xb.flatten(0, 1).to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(x).float()
        out.append(F.softmax(logits, dim=1).view(b, v, -1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(view_grid(views)), 0), np.float32)


def predict(model: torch.nn.Module, ds: ClipDataset, batch_size: int = 32, views: int = 1,
            amp: bool | str = "auto", loader_workers: int = 0) -> np.ndarray:
    """``float32[N, K]``: probabilities averaged over ``views`` views per unit."""
    return predict_views(model, ds, batch_size, views, amp, loader_workers).mean(axis=1)
