"""Training, with optional auxiliary sources, and prediction.

``fit`` trains one model on a target dataset and, for OmniSource, auxiliary datasets: each
step draws a target batch and one batch from each auxiliary source (class-resampled), and
minimises CE(target) + w * CE(auxiliary), the paper's summed loss; with ``mixup_alpha`` > 0
target and auxiliary clips are also mixed (cross-dataset mixup). Checkpoints are plain dicts
written atomically every few steps; a rerun with the same key resumes from the last one.
"""
from __future__ import annotations

import logging
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, WeightedRandomSampler

from .config import ModelConfig
from .data import ClipDataset, resampling_weights
from .models import build_model

log = logging.getLogger(__name__)


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda requested but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _forever(loader: DataLoader):
    while True:
        yield from loader


def _loader_args(workers: int, dev: torch.device) -> dict:
    """DataLoader worker settings: 0 = load in the training process (enough on a CPU, where the
    frame store reads ~25x faster than a small model trains); more for GPU workers."""
    if workers <= 0:
        return {"num_workers": 0, "pin_memory": dev.type == "cuda"}
    return {"num_workers": workers, "persistent_workers": True, "pin_memory": dev.type == "cuda",
            "multiprocessing_context": "forkserver"}


def _aux_loader(ds: ClipDataset, batch: int, power: float | None, cap: int | None, seed: int,
                loader: dict) -> DataLoader:
    weights = resampling_weights(ds.labels, power, cap)
    gen = torch.Generator().manual_seed(seed)
    sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(ds),
                                    replacement=True, generator=gen)
    return DataLoader(ds, batch_size=batch, sampler=sampler, drop_last=False, **loader)


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def fit(mcfg: ModelConfig, num_classes: int, target: ClipDataset, out_dir: Path, key: str,
        aux: dict[str, ClipDataset] | None = None, aux_batch_size: int = 8, aux_loss_weight: float = 1.0,
        resample_power: float | None = 0.5, cap_per_class: int | None = None, mixup_alpha: float = 0.0,
        seed: int = 0, device: str = "auto", amp: bool = True, checkpoint_every_steps: int = 50,
        loader_workers: int = 0, progress: Callable[[int, int], None] | None = None) -> dict:
    """Train and write ``model.pt`` (weights + config) under ``out_dir``; returns a summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = build_model(mcfg.arch, num_classes, mcfg.width, mcfg.pretrained).to(dev)
    batch = min(mcfg.batch_size, len(target))
    gen = torch.Generator().manual_seed(seed)
    largs = _loader_args(loader_workers, dev)
    # keep a short last batch (small target sets are the point), unless BatchNorm would see one clip
    tloader = DataLoader(target, batch_size=batch, shuffle=True, drop_last=len(target) % batch == 1,
                         generator=gen, **largs)
    aux = {k: v for k, v in (aux or {}).items() if len(v)}
    aux_iters = {k: _forever(_aux_loader(v, aux_batch_size, resample_power, cap_per_class, seed + i, largs))
                 for i, (k, v) in enumerate(aux.items())}
    steps_per_epoch = len(tloader)
    total = mcfg.epochs * steps_per_epoch
    opt = torch.optim.SGD(model.parameters(), lr=mcfg.lr, momentum=0.9, nesterov=True,
                          weight_decay=mcfg.weight_decay)
    warm = min(steps_per_epoch, max(1, total // 20))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    ckpt_path = out_dir / "checkpoint.pth"
    step = 0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=dev, weights_only=False)
        if ck.get("key") == key:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["lr_scheduler"])
            step = ck["step"]
            torch.set_rng_state(ck["torch_rng"])
            log.info("resuming %s from step %d/%d", out_dir.name, step, total)
        else:
            ckpt_path.unlink()
    resumed_from = step
    seen = 0
    started = time.time()
    losses = []
    model.train()
    while step < total:
        target.epoch = step // steps_per_epoch
        for xb, yb in tloader:
            if step >= total:
                break
            xs, ys, parts = [xb], [yb], [len(yb)]
            for it in aux_iters.values():
                xa, ya = next(it)
                xs.append(xa)
                ys.append(ya)
                parts.append(len(ya))
            x = torch.cat(xs).to(dev, non_blocking=True)
            y = torch.cat(ys).to(dev, non_blocking=True)
            lam, perm = None, None
            if mixup_alpha > 0 and len(parts) > 1:  # mix target clips with auxiliary clips
                lam = float(np.random.beta(mixup_alpha, mixup_alpha))
                n_t = parts[0]
                perm = torch.randint(n_t, len(y), (n_t,))
                x[:n_t] = lam * x[:n_t] + (1 - lam) * x[perm]
            with autocast(dev, amp):
                logits = model(x).float()
            n_t = parts[0]
            if lam is not None:
                loss_t = lam * F.cross_entropy(logits[:n_t], y[:n_t]) + (1 - lam) * F.cross_entropy(logits[:n_t], y[perm])
            else:
                loss_t = F.cross_entropy(logits[:n_t], y[:n_t])
            loss = loss_t
            if len(parts) > 1:
                loss = loss + aux_loss_weight * F.cross_entropy(logits[n_t:], y[n_t:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            seen += len(y)
            losses.append(float(loss.detach()))
            if progress:
                progress(step, total)
            if step % checkpoint_every_steps == 0 or step % steps_per_epoch == 0 or step == total:
                _save_atomic({"key": key, "model": model.state_dict(), "optimizer": opt.state_dict(),
                              "lr_scheduler": sched.state_dict(), "step": step,
                              "epoch": step / steps_per_epoch, "torch_rng": torch.get_rng_state(),
                              "config": mcfg.model_dump(mode="json")}, ckpt_path)
            if step % max(1, steps_per_epoch * max(1, mcfg.epochs // 5)) == 0:
                el = time.time() - started
                log.info("%s step %d/%d loss %.3f  %.1f clips/s  eta %.0fs", out_dir.name, step, total,
                         np.mean(losses[-steps_per_epoch:]), seen / el, (total - step) * el / max(1, step - resumed_from))
    elapsed = time.time() - started
    _save_atomic({"model": model.state_dict(), "config": mcfg.model_dump(mode="json"),
                  "num_classes": num_classes}, out_dir / "model.pt")
    return {"steps": total, "resumed_from_step": resumed_from, "clips_seen": seen,
            "clips_per_s": round(seen / elapsed, 1) if elapsed > 0 and seen else None,
            "final_loss": round(float(np.mean(losses[-steps_per_epoch:])), 4) if losses else None,
            "device": str(dev), "elapsed_s": round(elapsed, 1)}


def load_model(path: Path, device: str = "auto") -> tuple[torch.nn.Module, ModelConfig]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    mcfg = ModelConfig(**{**ck["config"], "pretrained": None})
    model = build_model(mcfg.arch, ck["num_classes"], mcfg.width)
    model.load_state_dict(ck["model"])
    return model.to(pick_device(device)).eval(), mcfg


@torch.no_grad()
def predict(model: torch.nn.Module, ds: ClipDataset, batch_size: int = 32, views: int = 1,
            amp: bool = True) -> np.ndarray:
    """Softmax probabilities per unit, averaged over ``views`` temporal x spatial views."""
    dev = next(model.parameters()).device
    model.eval()
    out = []
    if views == 1:
        combos = [(0.5, 0.5)]
    else:  # temporal offsets spread over the clip, crops cycling centre / start / end
        combos = [(t, (0.5, 0.0, 1.0)[i % 3]) for i, t in enumerate(np.linspace(0.1, 0.9, views))]
    for start in range(0, len(ds), batch_size):
        idx = range(start, min(len(ds), start + batch_size))
        probs = 0
        for t_off, pos in combos:
            x = torch.stack([ds.load(i, ds._rng(i), t_off, pos) for i in idx]).to(dev)
            with autocast(dev, amp):
                probs = probs + F.softmax(model(x).float(), dim=1)
        out.append((probs / len(combos)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def classification_metrics(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """top1, top5 (top-min(5, K)), mean class accuracy and per-class accuracy."""
    pred = probs.argmax(1)
    k = min(5, num_classes)
    topk = np.argsort(-probs, axis=1)[:, :k]
    per_class = {}
    for c in range(num_classes):
        m = labels == c
        if m.any():
            per_class[c] = float((pred[m] == c).mean())
    return {
        "top1": float((pred == labels).mean()),
        "top5": float((topk == labels[:, None]).any(1).mean()),
        "mean_class_accuracy": float(np.mean(list(per_class.values()))) if per_class else 0.0,
        "per_class_accuracy": per_class,
        "num_samples": int(len(labels)),
    }
