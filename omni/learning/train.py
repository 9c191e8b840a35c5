"""Training: one model on a target dataset plus, for OmniSource, auxiliary web datasets.

The loop follows the torchvision references: ``fit`` builds model, optimizer and a named
learning-rate schedule, then calls ``train_one_epoch`` until the step budget is spent. Each
step draws a target batch and one batch from each auxiliary source (class-resampled) and
minimises CE(target) + w * CE(auxiliary), the paper's summed loss; with ``mixup_alpha`` > 0
target clips are also mixed with auxiliary clips (cross-dataset mixup). A source whose dataset
gives probability vectors (soft targets, ``ClipDataset``'s ``soft_weight``) is learned from those;
the other parts of the batch then as one-hot vectors. Checkpoints are
plain dicts written atomically; a rerun with the same key resumes from the last one.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, WeightedRandomSampler, default_collate

from ..runtime import diskspace
from ..runtime.atomic import torch_save_atomic
from ..runtime.cancel import Cancelled
from ..config import LEGACY_INPUT, ModelConfig
from .data import ClipDataset, resampling_weights
from .models import build_model, freeze_batchnorm, memory_format
from .pretrained import classifier_name, is_named
from .autocast import use_autocast
from ..runtime.ranks import Ranks, current

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class JointOptions:
    """How auxiliary (web) batches join the target batches."""

    aux_batch_size: int = 8
    aux_loss_weight: float = 1.0
    resample_power: float | None = 0.5
    cap_per_class: int | None = None
    mixup_alpha: float = 0.0
    aux_drop: float = 0.0  # share of each auxiliary batch (highest loss first) left out once ramped in
    aux_drop_ramp: float = 0.3  # share of the steps over which the dropped share grows from 0

    def drop_at(self, step: int, total: int) -> float:
        """The share of each auxiliary batch left out at ``step`` of ``total``: 0 at the start
        (the model has learned nothing to judge by), ``aux_drop`` after the ramp."""
        if self.aux_drop <= 0:
            return 0.0
        ramp = max(1.0, self.aux_drop_ramp * total)
        return self.aux_drop * min(1.0, step / ramp)


@dataclass(frozen=True)
class RunOptions:
    """How fast and where: never changes what is computed (not part of any cache key)."""

    device: str = "auto"
    checkpoint_every_steps: int = 50
    loader_workers: int = 0


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda requested but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def _forever(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


class AuxStream:
    """One auxiliary source's batches, forever, and resumable: ``batches`` counts what was drawn,
    and ``skip(n)`` draws the next ``n`` batches' indices without reading a clip, so a resumed run
    reads exactly the batches an uninterrupted one would (with the dataset's visit counter
    restored, the same augmentations too). In process (no loader workers) it reads the clips
    itself, drawing one number of the global random stream at each pass as a DataLoader iterator
    does, so its batches and every random draw after them equal ``DataLoader``'s; with workers
    it is the DataLoader, resumed at a pass's start only."""

    def __init__(self, loader: DataLoader):
        self.loader, self.batches = loader, 0
        self._in_process = loader.num_workers == 0
        self._indices = self._index_passes() if self._in_process else None
        self._loaded = None if self._in_process else _forever(loader)

    def _index_passes(self) -> Iterator[list]:
        while True:
            passes = iter(self.loader.batch_sampler)
            torch.empty((), dtype=torch.int64).random_()  # the base seed a DataLoader iterator draws
            yield from passes

    def skip(self, n: int) -> None:
        if not self._in_process:
            return
        for _ in range(n):
            next(self._indices)
        self.batches += n

    def __iter__(self) -> "AuxStream":
        return self

    def __next__(self):
        self.batches += 1
        if not self._in_process:
            return next(self._loaded)
        ds = self.loader.dataset
        return self.loader.collate_fn([ds[i] for i in next(self._indices)])


def _loader_args(workers: int, dev: torch.device) -> dict:
    """0 workers = load in the training process (enough on a CPU, where the frame store reads
    ~25x faster than a small model trains); more for GPU workers."""
    if workers <= 0:
        return {"num_workers": 0, "pin_memory": dev.type == "cuda"}
    return {"num_workers": workers, "persistent_workers": True, "pin_memory": dev.type == "cuda",
            "multiprocessing_context": "forkserver"}


class RankSlices(BatchSampler):
    """This rank's share of each batch a single process would draw: every rank draws the same
    global batches (same sampler, same generator seed) and keeps ``batch[rank::world_size]``, so
    together the ranks train on exactly the single process's samples, class resampling included.
    A rank whose share of a short batch is empty gets an empty batch (``None`` from the loader),
    except with ``skip_short``, where a global batch smaller than the number of ranks is skipped
    (the target loader: every rank needs target clips in every step)."""

    def __init__(self, batches: BatchSampler, ranks: Ranks, skip_short: bool = False):
        self.batches, self.ranks, self.skip_short = batches, ranks, skip_short

    def __iter__(self):
        for batch in self.batches:
            if not self.skip_short or len(batch) >= self.ranks.world_size:
                yield batch[self.ranks.rank::self.ranks.world_size]

    def __len__(self) -> int:
        n = len(self.batches)
        last = len(self.batches.sampler) % self.batches.batch_size
        short = self.skip_short and last and not self.batches.drop_last and last < self.ranks.world_size
        return n - int(bool(short))


class FullBatches(torch.utils.data.Sampler):
    """The target clips of one epoch, ``ceil(n / batch)`` full batches of them: successive
    permutations of the clips (from ``seed``) are read as one stream, so every batch holds
    ``batch`` clips and every clip is seen equally often. A small target set is the point: keeping
    a short last batch instead (18 clips: batches of 16 and 2 in turn) gave BatchNorm two-clip
    batches every other step and cost the baseline about 10 points against the plain reference
    (issue 33). ``epoch`` picks the epoch's part of the stream, so a resumed run reads the same."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch, self.seed, self.epoch = n, batch, seed, 0
        self.per_epoch = -(-n // batch) * batch if n else 0
        self.skip = 0  # clips of the next pass already trained on (a run resumed mid-epoch)

    def __len__(self) -> int:
        return self.per_epoch - self.skip

    def __iter__(self):
        done, self.skip = self.skip, 0
        start, need = self.epoch * self.per_epoch + done, self.per_epoch - done
        out, j = [], start // self.n if self.n else 0
        skip = start - j * self.n
        while len(out) < need:
            perm = np.random.default_rng([self.seed, j]).permutation(self.n)
            out.extend(perm[skip:].tolist())
            skip, j = 0, j + 1
        return iter(out[:need])


def _collate(batch: list):
    return default_collate(batch) if batch else None  # an empty share of a short batch


def _loader(ds: ClipDataset, sampler, batch: int, drop_last: bool, ranks: Ranks, loader: dict,
            skip_short: bool = False, generator: torch.Generator | None = None) -> DataLoader:
    """``generator`` is also the loader's (it draws each epoch's worker base seed from it before
    the sampler's permutation), exactly as ``DataLoader(shuffle=True, generator=...)`` does."""
    batches = BatchSampler(sampler, batch, drop_last)
    if not ranks.many:
        return DataLoader(ds, batch_sampler=batches, generator=generator, **loader)
    return DataLoader(ds, batch_sampler=RankSlices(batches, ranks, skip_short), collate_fn=_collate,
                      generator=generator, **loader)


def _aux_loader(ds: ClipDataset, batch: int, joint: JointOptions, seed: int, loader: dict,
                ranks: Ranks = Ranks()) -> DataLoader:
    weights = resampling_weights(ds.labels, joint.resample_power, joint.cap_per_class)
    gen = torch.Generator().manual_seed(seed)
    sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(ds),
                                    replacement=True, generator=gen)
    return _loader(ds, sampler, batch, False, ranks, loader)


def total_steps(mcfg: ModelConfig, steps_per_epoch: int) -> int:
    """The step budget: ``steps`` when set, else ``epochs`` passes over the target set."""
    return mcfg.steps if mcfg.steps else mcfg.epochs * steps_per_epoch


def lr_schedule(name: str, total: int, warmup: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up, then ``cosine`` decay to 0 or ``constant``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if name == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    return factor


def build_optimizer(model: torch.nn.Module, mcfg: ModelConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum or AdamW; no weight decay on norms and biases. With
    ``backbone_lr_mult`` below 1, every parameter but the classifier's (the model's last linear
    layer) learns at that share of ``lr``: the classifier's groups come first, the backbone's after."""
    def split(params) -> list[dict]:
        decay, no_decay = [], []
        for p in params:
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        return [{"params": decay, "weight_decay": mcfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    if mcfg.backbone_lr_mult == 1.0:
        groups = split(model.parameters())
    else:
        head = classifier_name(model) + "."
        named = list(model.named_parameters())
        groups = split(p for n, p in named if n.startswith(head)) + [
            {**g, "lr": mcfg.lr * mcfg.backbone_lr_mult} for g in split(p for n, p in named if not n.startswith(head))]
    if mcfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=mcfg.lr)
    return torch.optim.SGD(groups, lr=mcfg.lr, momentum=0.9, nesterov=True)


def joint_loss(model, x, y, parts: list[int], joint: JointOptions, smoothing: float, use_amp: bool,
               dev: torch.device, totals: tuple[float, ...] | None = None, world_size: int = 1,
               drop: float = 0.0) -> torch.Tensor:
    """CE(target batch) + w * CE(aux batches), with optional cross-dataset mixup.

    With ``drop`` > 0, each auxiliary source's batch loses that share of its samples, those
    the model currently fits worst (the small-loss rule of Co-teaching, Han et al. 2018: web
    samples whose label the model keeps contradicting are the likely label noise). The count
    left out is ``kept_count``'s rounding of the share; under torchrun each rank chooses within
    its own slice of the batch.

    With ``totals`` (the global target, auxiliary and, with ``drop``, kept auxiliary batch sizes
    over all ranks) each rank's loss is its share of the global means, so DDP's gradient average
    equals the gradient of the single-process loss even when ranks hold unequal slices."""
    n_t = parts[0]
    lam, perm = None, None
    if joint.mixup_alpha > 0 and len(parts) > 1:  # mix target clips with auxiliary clips
        lam = float(np.random.beta(joint.mixup_alpha, joint.mixup_alpha))
        perm = torch.randint(n_t, len(y), (n_t,), device=x.device)
        x = x.clone()
        x[:n_t] = lam * x[:n_t] + (1 - lam) * x[perm]
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
        logits = model(x).float()

    def ce(lg, t, total):
        if totals is None:
            return F.cross_entropy(lg, t, label_smoothing=smoothing)
        return F.cross_entropy(lg, t, label_smoothing=smoothing, reduction="sum") * world_size / max(total, 1)

    t_total, a_total, k_total = (*totals, None)[:3] if totals else (None, None, None)
    if lam is not None:
        loss = lam * ce(logits[:n_t], y[:n_t], t_total) + (1 - lam) * ce(logits[:n_t], y[perm], t_total)
    else:
        loss = ce(logits[:n_t], y[:n_t], t_total)
    if len(parts) > 1 and len(y) > n_t:
        if drop > 0:
            loss = loss + joint.aux_loss_weight * _small_loss_ce(logits, y, parts, drop, smoothing, k_total,
                                                                 world_size)
        else:
            loss = loss + joint.aux_loss_weight * ce(logits[n_t:], y[n_t:], a_total)
    return loss


def kept_count(n: int, drop: float) -> int:
    """Of a source's ``n`` auxiliary samples in a batch, how many the small-loss rule keeps:
    ``n`` less the rounded ``drop`` share, and at least one."""
    return max(1, n - round(drop * n)) if n else 0


def _small_loss_ce(logits, y, parts: list[int], drop: float, smoothing: float, k_total: float | None,
                   world_size: int) -> torch.Tensor:
    """Mean CE over the auxiliary samples kept: per source, all but the ``drop`` share with the
    highest loss; ``k_total``: the kept count over all ranks (torchrun)."""
    per = F.cross_entropy(logits, y, label_smoothing=smoothing, reduction="none")
    kept, start = [], parts[0]
    for n in parts[1:]:
        part = per[start:start + n]
        start += n
        if n:
            kept.append(torch.topk(part, kept_count(n, drop), largest=False).values)
    total = torch.cat(kept)
    if k_total is None:
        return total.mean()
    return total.sum() * world_size / max(k_total, 1)


def _same_form(ys: list[torch.Tensor]) -> list[torch.Tensor]:
    """Class indices and probability targets (a source trained with soft targets) in one form:
    every part as probability vectors as soon as one part is."""
    soft = next((y for y in ys if y.dim() == 2), None)
    if soft is None:
        return ys
    return [y if y.dim() == 2 else F.one_hot(y, soft.shape[1]).to(soft.dtype) for y in ys]


@dataclass
class _State:
    step: int
    total: int
    steps_per_epoch: int
    seen: int = 0
    losses: list | None = None


def train_one_epoch(model, tloader: DataLoader, aux_iters: dict, opt, sched, state: _State, joint: JointOptions,
                    smoothing: float, use_amp: bool, dev: torch.device, on_step: Callable[[], None],
                    ranks: Ranks = Ranks(), fmt: torch.memory_format = torch.contiguous_format,
                    freeze_bn: bool = False) -> None:
    """One pass over the target loader (or up to the step budget); batches in ``fmt``; with
    ``freeze_bn`` the BatchNorm layers keep their running statistics."""
    model.train()
    if freeze_bn:
        freeze_batchnorm(model)
    for xb, yb in tloader:
        if state.step >= state.total:
            return
        xs, ys, parts = [xb], [yb], [len(yb)]
        for it in aux_iters.values():
            got = next(it)
            if got is None:  # this rank's share of a short auxiliary batch is empty (torchrun)
                continue
            xa, ya = got
            xs.append(xa)
            ys.append(ya)
            parts.append(len(ya))
        x = torch.cat(xs).to(dev, non_blocking=True).contiguous(memory_format=fmt)
        y = torch.cat(_same_form(ys)).to(dev, non_blocking=True)
        totals = None
        drop = joint.drop_at(state.step, state.total)
        if ranks.many:  # this step's global batch sizes: each rank's loss is its share of the global means
            totals = tuple(ranks.sum([parts[0], sum(parts[1:]), sum(kept_count(n, drop) for n in parts[1:])]))
        loss = joint_loss(model, x, y, parts, joint, smoothing, use_amp, dev, totals, ranks.world_size, drop=drop)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        state.step += 1
        state.seen += len(y)
        state.losses.append(loss.detach())  # kept on the device: no sync per step
        on_step()


def _stream_positions(state: _State, target: ClipDataset, aux_iters: dict) -> dict:
    """What a checkpoint keeps besides the weights so that a resumed run continues exactly: the
    data streams' positions, the datasets' visit counters (their augmentations), NumPy's global
    random state (mixup), the clips seen and the recent losses (the curve, the final loss)."""
    return {"np_rng": np.random.get_state(), "seen": state.seen,
            "losses": [float(x) for x in state.losses], "target_visits": target._calls,
            "aux": {k: {"batches": it.batches, "visits": it.loader.dataset._calls} for k, it in aux_iters.items()}}


def _resume_streams(ck: dict, state: _State, target: ClipDataset, tsampler: FullBatches, aux_iters: dict,
                    steps_per_epoch: int, batch: int, dev: torch.device) -> None:
    """Put the data streams where the checkpoint's run left them (``_stream_positions``); a
    checkpoint from before these were kept resumes at its epoch's start, as it always did."""
    if "target_visits" not in ck:
        return
    tsampler.skip = (state.step % max(1, steps_per_epoch)) * batch
    target._calls = ck["target_visits"]
    for k, it in aux_iters.items():
        pos = ck["aux"].get(k, {"batches": 0, "visits": 0})
        it.skip(pos["batches"])
        it.loader.dataset._calls = pos["visits"]
    np.random.set_state(ck["np_rng"])
    state.seen = ck["seen"]
    state.losses = [torch.tensor(x, device=dev) for x in ck["losses"]]


def fit(mcfg: ModelConfig, class_names: list[str], target: ClipDataset, out_dir: Path, key: str, *,
        aux: dict[str, ClipDataset] | None = None, joint: JointOptions = JointOptions(), seed: int = 0,
        amp: bool | str = "auto", run: RunOptions = RunOptions(), progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None) -> dict:
    """Train and write ``model.pt`` (weights, config, class names) under ``out_dir``.

    Under ``torchrun`` (omni/runtime/ranks.py) every rank trains a DistributedDataParallel replica on its
    slice of each global batch (``RankSlices``); rank 0 writes checkpoints and the model, and
    every rank resumes from the same checkpoint."""
    ranks = current()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = pick_device(run.device)
    use_amp = use_autocast(amp, dev)
    torch.manual_seed(seed)
    np.random.seed(seed)
    num_classes = len(class_names)
    fmt = memory_format(mcfg.arch)
    model = build_model(mcfg.arch, num_classes, mcfg.width, mcfg.pretrained).to(dev, memory_format=fmt)
    batch = min(mcfg.batch_size, len(target))
    gen = torch.Generator().manual_seed(seed)
    largs = _loader_args(run.loader_workers, dev)
    tsampler = FullBatches(len(target), batch, seed)
    tloader = _loader(target, tsampler, batch, True, ranks, largs, skip_short=True, generator=gen)
    aux = {k: v for k, v in (aux or {}).items() if len(v)}
    aux_iters = {k: AuxStream(_aux_loader(v, joint.aux_batch_size, joint, seed + i, largs, ranks))
                 for i, (k, v) in enumerate(aux.items())}
    steps_per_epoch = len(tloader)
    total = total_steps(mcfg, steps_per_epoch)
    opt = build_optimizer(model, mcfg)
    warmup = max(1, int(total * mcfg.warmup_frac))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(mcfg.lr_schedule, total, warmup))
    ckpt_path = out_dir / "checkpoint.pth"
    if ranks.main:  # model.pt and a checkpoint (weights and optimizer state): refuse what clearly does not fit
        weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
        diskspace.expect(out_dir, 4 * weights)
        have = ckpt_path.stat().st_size if ckpt_path.exists() else 0
        diskspace.require(out_dir, 4 * weights - have, f"training {out_dir.name} (a {weights / 1e6:.0f} MB model)")
    state = _State(step=0, total=total, steps_per_epoch=steps_per_epoch, losses=[])
    curve: list[dict] = []
    try:
        ck = torch.load(ckpt_path, map_location=dev, weights_only=False) if ckpt_path.exists() else {}
    except Exception as exc:  # a damaged checkpoint: start again rather than fail
        log.warning("%s: checkpoint unreadable (%s: %s): starting from step 0", out_dir.name, type(exc).__name__,
                    str(exc)[:80])
        ck = {}
    if ckpt_path.exists():
        if ck.get("key") == key:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["lr_scheduler"])
            state.step = ck["step"]
            _resume_streams(ck, state, target, tsampler, aux_iters, steps_per_epoch, batch, dev)
            curve = list(ck.get("curve", []))
            torch.set_rng_state(ck["torch_rng"])
            log.info("%s: resuming from step %d/%d", out_dir.name, state.step, total)
        else:
            ckpt_path.unlink()
    net = model
    if ranks.many:
        if dev.type == "cuda":  # BatchNorm statistics over the global batch (SyncBatchNorm is CUDA-only)
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[torch.cuda.current_device()] if dev.type == "cuda" else None)
    resumed_from = state.step
    started = time.time()
    log_every = max(1, total // 10)

    def checkpoint() -> None:
        if not ranks.main:
            return
        torch_save_atomic({"key": key, "model": model.state_dict(), "optimizer": opt.state_dict(),
                           "lr_scheduler": sched.state_dict(), "step": state.step,
                           "torch_rng": torch.get_rng_state(), "config": mcfg.model_dump(mode="json"),
                           "class_names": list(class_names), "curve": curve,
                           **_stream_positions(state, target, aux_iters)}, ckpt_path)

    def on_step() -> None:
        if progress:
            progress(state.step, total)
        if state.step % run.checkpoint_every_steps == 0 or state.step == total:
            checkpoint()
        if state.step % log_every == 0 or state.step == total:
            el = time.time() - started
            loss = float(torch.stack(state.losses[-log_every:]).mean())
            del state.losses[:-max(log_every, steps_per_epoch)]  # bounded memory
            curve.append({"step": state.step, "loss": round(loss, 4), "lr": sched.get_last_lr()[0]})
            log.info("%s step %d/%d loss %.3f lr %.4f  %.1f clips/s  eta %.0fs", out_dir.name, state.step, total,
                     loss, sched.get_last_lr()[0], state.seen / max(el, 1e-9),
                     (total - state.step) * el / max(1, state.step - resumed_from))
        stop = bool(should_stop and should_stop())
        if ranks.any(stop):  # every rank stops after the same step
            raise Cancelled(f"{out_dir.name}: stopped at step {state.step}/{total}")

    epoch = state.step // max(1, steps_per_epoch)
    try:
        while state.step < total:
            target.epoch = tsampler.epoch = epoch
            train_one_epoch(net, tloader, aux_iters, opt, sched, state, joint, mcfg.label_smoothing, use_amp,
                            dev, on_step, ranks, fmt, freeze_bn=mcfg.freeze_bn)
            epoch += 1
    except BaseException:  # a stop request or a crash: keep what was learned so far
        if state.step > resumed_from:
            checkpoint()
            log.info("%s: checkpoint kept at step %d/%d", out_dir.name, state.step, total)
        raise
    elapsed = time.time() - started
    if ranks.main:
        torch_save_atomic({"model": model.state_dict(), "config": mcfg.model_dump(mode="json"),
                           "num_classes": num_classes, "class_names": list(class_names)}, out_dir / "model.pt")
    state.seen = int(ranks.sum([state.seen])[0])
    ranks.barrier()  # model.pt is there for every rank
    return {"steps": total, "world_size": ranks.world_size, "resumed_from_step": resumed_from, "clips_seen": state.seen,
            "clips_per_s": round(state.seen / elapsed, 1) if elapsed > 0 and state.seen else None,
            "final_loss": (round(float(torch.stack(state.losses[-max(1, steps_per_epoch):]).mean()), 4)
                           if state.losses else None),
            "device": str(dev), "autocast_bf16": use_amp, "elapsed_s": round(elapsed, 1), "curve": curve}


def train_student(rows, t, class_names: list[str], root: Path, out_dir: Path, key: str, *,
                  run: RunOptions = RunOptions(), progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None) -> dict:
    """A student on ``rows`` (target train samples plus, for OmniSource, web samples in the
    manifest's unified form) with ``t``'s recipe (a ``TrainConfig``): the train stage's body,
    also used by ``omni ablate``."""
    m = t.model
    target = rows[rows["source"] == "target"]

    def ds(r, soft_weight=0.0):
        return ClipDataset.for_model(r, root, m, train=True, pseudo_clip=t.pseudo_clip,
                                     warp_strength=t.warp_strength, seed=t.seed, soft_weight=soft_weight,
                                     augment=t.augment, class_names=class_names)

    aux = {src: ds(g, t.soft_target_weight) for src, g in rows[rows["source"] != "target"].groupby("source")}
    # the paper's target:auxiliary batch ratio of about 1:1, split over the sources
    aux_batch = t.aux_batch_size or max(1, -(-m.batch_size // max(1, len(aux))))
    joint = JointOptions(aux_batch_size=aux_batch, aux_loss_weight=t.aux_loss_weight,
                         resample_power=t.resample_power, cap_per_class=t.cap_per_class, mixup_alpha=t.mixup_alpha,
                         aux_drop=t.aux_drop, aux_drop_ramp=t.aux_drop_ramp)
    res = fit(m, class_names, ds(target), out_dir, key, aux=aux, joint=joint, seed=t.seed, amp=t.amp, run=run,
              progress=progress, should_stop=should_stop)
    res.update(aux_units={k: len(v) for k, v in aux.items()}, aux_batch_size=aux_batch, target_units=len(target))
    return res


def load_model(path: Path, device: str = "auto") -> tuple[torch.nn.Module, ModelConfig, list[str]]:
    """A trained model (eval mode, on ``device``), its config and its class names."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    named = ck["config"].get("pretrained") if is_named(ck["config"].get("pretrained")) else None
    # (older models: their input; named weights only for the input they were trained with: never loaded here)
    mcfg = ModelConfig(**{**LEGACY_INPUT, **ck["config"], "pretrained": named})
    model = build_model(mcfg.arch, ck["num_classes"], mcfg.width)
    model.load_state_dict(ck["model"])
    names = ck.get("class_names") or [str(i) for i in range(ck["num_classes"])]
    return model.to(pick_device(device)).eval(), mcfg, names
