"""Training and scoring speed: omni's own loop against a plain PyTorch loop, per model and precision.

For each model omni ships (the image teacher, the video teacher/student at the defaults in
``omni/config.py``, the student's joint step with a web-image source, and torchvision's ``r3d_18``
at 112 px; ``tsn_<timm model>``, ``c3d_small`` (at its old 48 px crop recipe) or ``c3d_patch`` by name), in one process and interleaved round by round:

- **plain** (the reference): pre-built tensors on the device, ``model(x)``, cross-entropy,
  backward, the recipe's optimizer step (AdamW at the defaults, as omni); scoring: ``model(x)`` + softmax under ``no_grad``;
- **omni**: ``omni.learning.train.fit`` on a ``ClipDataset`` over a real frame store (written here with
  ``omni.video.framestore.ShardWriter`` from random frames at the short side omni stores for the model
  (``extract.short_side: auto``; ``--short-side`` to force one), 8 frames per clip,
  as the extract stage stores them) and ``omni.learning.predict.predict`` on the same store.

Both sides run in fp32 and with bf16 autocast. Reported per row: steps/s (training) and clips/s
(scoring) of each side, omni/plain, and the share of omni's step time spent waiting for the
DataLoader (each ``next()`` on a loader iterator is timed, separately from the step). The table
also names the precision ``omni.learning.autocast.use_autocast("auto", device)`` picks.

On a CPU without native bf16 (AVX512-BF16/AMX), bf16 autocast is emulated and ~10x slower; such
rows are measured with one step per side, and skipped (with the reason) when one step would
exceed ``--bf16-budget-s``.

On CUDA: GPU utilisation is sampled with ``nvidia-smi --query-gpu=utilization.gpu`` (100 ms) during
each timed phase; ``--loader-workers``, ``--channels-last`` and ``--compile`` apply (omni's loop
pins memory on CUDA by itself; the last two are applied to omni's model by wrapping
``omni.learning.train.build_model``, to show what they would bring).

    .venv/bin/python benchmarks/train_speed.py --out benchmarks/results/train_speed.md
    .venv/bin/python benchmarks/train_speed.py --quick --out /tmp/ts.md      # CI-sized, < 1 min
    .venv/bin/python benchmarks/train_speed.py --device cuda --loader-workers 6 --channels-last
    .venv/bin/python benchmarks/train_speed.py --threads-study               # 1 vs 2 threads, 1 vs 2 processes
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# ---------------------------------------------------------------------------------------------
# the models, at omni's defaults


@dataclass
class Spec:
    name: str           # row name
    model: object       # omni.config.ModelConfig
    aux_images: int = 0  # web-image batch per step (the student's joint step), 0: target only
    note: str = ""


def specs(names: list[str], quick: bool, tiny: bool, device: str) -> list[Spec]:
    from omni.config import ModelConfig, TeacherConfig, TrainConfig

    image, video, student = TeacherConfig().image, TeacherConfig().video, TrainConfig().model
    out = []
    for n in names:
        if n == "image_teacher":
            s = Spec(f"{image.arch} on {image.num_frames} frame(s) (image teacher)", image.model_copy())
        elif n == "video_teacher":
            same = (video.arch, video.width, video.input_size, video.num_frames, video.batch_size) == \
                   (student.arch, student.width, student.input_size, student.num_frames, student.batch_size)
            s = Spec(f"{video.arch} (video teacher" + (" = student)" if same else ")"), video.model_copy())
        elif n == "student_joint":
            s = Spec(f"{student.arch} student + web images", student.model_copy(), aux_images=student.batch_size,
                     note="joint step: target batch + one image source (warped pseudo-clips)")
        elif n in ("r3d_18", "mc3_18", "r2plus1d_18"):
            # a GPU model: 112 px, 8 frames; on a CPU a small batch keeps it to a few seconds a step
            s = Spec(f"{n} (112 px)", ModelConfig(arch=n, input_size=112, num_frames=8,
                                                  batch_size=16 if device == "cuda" else 2))
        elif n.startswith("tsn_") or n in ("c3d_small", "c3d_patch"):
            s = Spec(n, ModelConfig(arch=n, **({"input_size": 48, "resize": "crop", "normalize": "dataset",
                                                 "frame_sampling": "segments"} if n == "c3d_small" else {})))
        else:
            raise SystemExit(f"--models: unknown model {n!r}")
        if tiny:  # test-sized shapes: only the code path is exercised
            s.model = s.model.model_copy(update={"input_size": 32, "num_frames": min(4, s.model.num_frames),
                                                 "batch_size": 2, "width": 8})
            s.aux_images = min(s.aux_images, 2)
        out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# a real frame store


def build_store(root: Path, n_videos: int, n_images: int, short_side: int, frames: int = 8,
                classes: int = 5, seed: int = 0):
    """Random uint8 clips (``frames`` x short_side x 4/3 short_side) and still images, written with
    omni's ShardWriter exactly as the extract stage stores them; returns (videos, images) sample rows."""
    import pandas as pd

    from omni.video.framestore import ShardWriter

    rng = np.random.default_rng(seed)
    h, w = short_side, int(round(short_side * 4 / 3))
    tables = []
    for kind, n, t in (("video", n_videos, frames), ("image", n_images, 1)):
        wr = ShardWriter(root / "extract" / "frames", f"shard-{kind}")
        rows = []
        for i in range(n):
            ref = wr.append(rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8))
            ref["shard"] = f"extract/frames/{ref['shard']}"
            rows.append({**ref, "item_id": f"{kind}{i}", "sample_id": f"{kind}{i}", "label": i % classes})
        wr.close()
        tables.append(pd.DataFrame(rows))
    return tables[0], tables[1]


# ---------------------------------------------------------------------------------------------
# timing helpers


class LoaderWait:
    """Times every ``next()`` on any DataLoader iterator (the training process waiting for data)."""

    def __init__(self):
        self.calls: list[tuple[float, float]] = []  # (start, seconds)
        self._orig = None

    def __enter__(self):
        from torch.utils.data import dataloader as dl

        self._orig = orig = dl._BaseDataLoaderIter.__next__
        calls = self.calls

        def timed(it):
            t0 = time.perf_counter()
            try:
                return orig(it)
            finally:
                calls.append((t0, time.perf_counter() - t0))

        dl._BaseDataLoaderIter.__next__ = timed
        return self

    def __exit__(self, *exc):
        from torch.utils.data import dataloader as dl

        dl._BaseDataLoaderIter.__next__ = self._orig

    def between(self, t0: float, t1: float) -> float:
        return sum(s for start, s in self.calls if t0 <= start < t1)


class GpuUtil:
    """``nvidia-smi`` utilisation samples (percent) while active; empty off CUDA."""

    def __init__(self, device: str):
        self.on = device == "cuda" and shutil.which("nvidia-smi") is not None
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = None

    def _run(self):
        idx = str(torch.cuda.current_device())
        proc = subprocess.Popen(["nvidia-smi", "-i", idx, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                 "-lms", "100"], stdout=subprocess.PIPE, text=True)
        try:
            for line in proc.stdout:
                if self._stop.is_set():
                    break
                with contextlib.suppress(ValueError):
                    self.samples.append(float(line.strip()))
        finally:
            proc.terminate()
            proc.wait()

    def __enter__(self):
        if self.on:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread:
            self._stop.set()
            self._thread.join(timeout=2)

    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def adapt(model: torch.nn.Module, opts) -> torch.nn.Module:
    if opts.channels_last:
        fmt = torch.channels_last_3d if not getattr(model, "backbone", None) else torch.channels_last
        model = model.to(memory_format=fmt)
    if opts.compile:
        model = torch.compile(model)
    return model


@contextlib.contextmanager
def omni_model_options(opts):
    """channels_last / torch.compile for omni's loop too: wrap the builder fit() calls."""
    import omni.learning.train as tr

    orig = tr.build_model
    if opts.channels_last or opts.compile:
        tr.build_model = lambda *a, **k: adapt(orig(*a, **k), opts)
    try:
        yield
    finally:
        tr.build_model = orig


# ---------------------------------------------------------------------------------------------
# the two sides


@dataclass
class Phase:
    steps: int = 0
    seconds: float = 0.0
    data_s: float = 0.0
    util: list = field(default_factory=list)

    def add(self, steps, seconds, data_s=0.0, util=None):  # noqa: D401
        self.steps += steps
        self.seconds += seconds
        self.data_s += data_s
        if util is not None:
            self.util.append(util)

    @property
    def rate(self) -> float | None:
        return self.steps / self.seconds if self.seconds > 0 else None


def plain_optimizer(model, m) -> torch.optim.Optimizer:
    """The recipe's optimizer as a plain loop would write it (same kind, lr and weight decay)."""
    if m.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=m.lr, weight_decay=m.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=m.lr, momentum=0.9, nesterov=True, weight_decay=m.weight_decay)


def plain_train(model, x, y, steps: int, warmup: int, bf16: bool, dev, opts, m) -> tuple[int, float, float | None]:
    opt = plain_optimizer(model, m)
    model.train()

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
        loss = F.cross_entropy(logits, y, label_smoothing=m.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())  # omni reads the loss every step too

    for _ in range(warmup):
        step()
    sync(dev)
    with GpuUtil(dev.type) as gu:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(dev)
        sec = time.perf_counter() - t0
    return steps, sec, gu.mean()


def omni_train(spec: Spec, target, aux, steps: int, warmup: int, bf16: bool, opts, workdir: Path, classes: list[str]):
    """``omni.learning.train.fit`` for warmup + steps steps; the timed span is from the end of the last
    warm-up step to the end of the last step (per-step progress callbacks)."""
    from omni.learning.train import JointOptions, RunOptions, fit

    stamps: list[float] = []
    dev = torch.device(opts.device)

    def progress(step, total):
        sync(dev)
        stamps.append(time.perf_counter())

    out = workdir / f"fit-{time.monotonic_ns()}"
    mcfg = spec.model.model_copy(update={"steps": warmup + steps})
    joint = JointOptions(aux_batch_size=spec.aux_images) if aux is not None else JointOptions()
    with LoaderWait() as lw, GpuUtil(opts.device) as gu, omni_model_options(opts):
        fit(mcfg, classes, target, out, key="bench", aux={"web_images": aux} if aux is not None else None,
            joint=joint, amp=bf16, run=RunOptions(device=opts.device, loader_workers=opts.loader_workers,
                                                  checkpoint_every_steps=opts.checkpoint_every),
            progress=progress)
    shutil.rmtree(out, ignore_errors=True)
    t0, t1 = stamps[warmup - 1] if warmup else None, stamps[-1]
    if t0 is None:
        raise ValueError("omni_train needs warmup >= 1 (the first step's start is not observable)")
    return steps, t1 - t0, lw.between(t0, t1), gu.mean()


def plain_score(model, xs: list, bf16: bool, dev) -> tuple[int, float, float | None]:
    model.eval()
    with torch.no_grad():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):  # warm-up, full batch shape
            model(xs[0])
        sync(dev)
        with GpuUtil(dev.type) as gu:
            t0 = time.perf_counter()
            n = 0
            for x in xs:
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = model(x).float()
                F.softmax(logits, dim=1).cpu()
                n += len(x)
            sync(dev)
            sec = time.perf_counter() - t0
    return n, sec, gu.mean()


def omni_score(model, ds, batch: int, bf16: bool, opts) -> tuple[int, float, float, float | None]:
    from omni.learning.predict import predict

    model.eval()
    with torch.no_grad(), torch.autocast(opts.device, dtype=torch.bfloat16, enabled=bf16):
        model(torch.stack([ds[i][0] for i in range(min(batch, len(ds)))]).to(opts.device))  # warm-up
    sync(torch.device(opts.device))
    with LoaderWait() as lw, GpuUtil(opts.device) as gu:
        t0 = time.perf_counter()
        probs = predict(model, ds, batch_size=batch, views=1, amp=bf16, loader_workers=opts.loader_workers)
        sec = time.perf_counter() - t0
    return len(probs), sec, lw.between(t0, t0 + sec), gu.mean()


# ---------------------------------------------------------------------------------------------


def fmt(v, digits=3):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"


def run_benchmark(opts) -> tuple[str, list[dict]]:
    from omni.config import needed_short_side
    from omni.learning.data import ClipDataset
    from omni.learning.models import build_model
    from omni.learning.autocast import cpu_has_native_bf16, use_autocast

    if opts.threads:
        torch.set_num_threads(opts.threads)
    dev = torch.device(opts.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    auto_bf16 = use_autocast("auto", dev)
    native = cpu_has_native_bf16() if dev.type == "cpu" else None
    emulated_bf16 = dev.type == "cpu" and not native
    spec_list = specs(opts.models, opts.quick, opts.tiny, opts.device)
    classes = [f"c{i}" for i in range(5)]
    work = Path(tempfile.mkdtemp(prefix="omni-train-speed-"))
    rows: list[dict] = []
    try:
        stores = {}
        for spec in spec_list:
            m = spec.model
            # the store omni keeps for this model (extract.short_side: auto), unless --short-side
            side = opts.short_side or needed_short_side([m])
            if side not in stores:
                biggest = max(s.model.batch_size for s in spec_list)
                stores[side] = build_store(work / f"s{side}", n_videos=max(2 * biggest, opts.score_clips),
                                           n_images=max((s.aux_images for s in spec_list), default=0) * 2,
                                           short_side=side, frames=opts.stored_frames, classes=len(classes))
            videos, images = stores[side]
            work_s = work / f"s{side}"
            target = ClipDataset.for_model(videos.iloc[:max(2 * m.batch_size, 4)], work_s, m, train=True)
            aux = (ClipDataset.for_model(images, work_s, m, train=True, pseudo_clip="warp")
                   if spec.aux_images else None)
            # the plain side's tensors: the same clips omni loads, built once
            n_train = m.batch_size + spec.aux_images
            xs = [target[i % len(target)][0] for i in range(m.batch_size)]
            xs += [aux[i % len(aux)][0] for i in range(spec.aux_images)] if aux is not None else []
            x = torch.stack(xs).to(dev)
            y = torch.arange(n_train, device=dev) % len(classes)
            score_ds = ClipDataset.for_model(videos.iloc[:opts.score_clips], work_s, m, train=False)
            row_side = side
            sx = torch.stack([score_ds[i][0] for i in range(len(score_ds))])
            score_batches = [sx[i:i + opts.score_batch].to(dev) for i in range(0, len(sx), opts.score_batch)]
            # prime the process for these shapes (lazy kernel/thread-pool set-up: the first steps in
            # a process run several times slower); untimed
            torch.manual_seed(0)
            plain_train(adapt(build_model(m.arch, len(classes), m.width).to(dev), opts), x, y, 1, 1, False, dev,
                        opts, m)
            for precision in opts.precisions:
                bf16 = precision == "bf16"
                row = {"model": spec.name, "precision": precision, "batch": n_train,
                       "input": f"{m.num_frames}x{m.input_size}px", "stored": row_side, "note": spec.note}
                rounds, steps, warmup = opts.rounds, opts.steps, opts.warmup
                torch.manual_seed(0)
                model = adapt(build_model(m.arch, len(classes), m.width).to(dev), opts)
                if bf16 and emulated_bf16 and opts.quick and not opts.tiny:
                    row["note"] = "bf16 emulated on this CPU (~10x slower): not run in --quick"
                    rows.append(row)
                    continue
                if bf16 and emulated_bf16:
                    # one probe step decides whether a measured row fits the budget
                    _, probe_s, _ = plain_train(model, x, y, 1, 0, True, dev, opts, m)
                    row["note"] = (row["note"] + "; " if row["note"] else "") + \
                        f"bf16 emulated on this CPU: one plain step {probe_s:.1f}s"
                    if probe_s * 3 > opts.bf16_budget_s:
                        row["note"] += f" (> budget: rest not run)"
                        row["plain_steps_s"] = 1 / probe_s
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        continue
                    rounds, steps, warmup = 1, 1, 1
                plain, omni, pscore, oscore = Phase(), Phase(), Phase(), Phase()
                for r in range(rounds):  # interleaved: plain, omni, plain, omni ...
                    torch.manual_seed(r)
                    model = adapt(build_model(m.arch, len(classes), m.width).to(dev), opts)
                    def add_plain(ph, res):  # (n, seconds, gpu util)
                        ph.add(res[0], res[1], 0.0, res[2])

                    sides = [lambda: add_plain(plain, plain_train(model, x, y, steps, warmup, bf16, dev, opts, m)),
                             lambda: omni.add(*omni_train(spec, target, aux, steps, warmup, bf16, opts, work, classes))]
                    for fn in (sides if r % 2 == 0 else sides[::-1]):  # who goes first alternates
                        fn()
                    scoring = [lambda: add_plain(pscore, plain_score(model, score_batches, bf16, dev)),
                               lambda: oscore.add(*omni_score(model, score_ds, opts.score_batch, bf16, opts))]
                    for fn in (scoring if r % 2 == 0 else scoring[::-1]):
                        fn()
                row.update(plain_steps_s=plain.rate, omni_steps_s=omni.rate,
                           train_ratio=omni.rate / plain.rate if plain.rate and omni.rate else None,
                           omni_data_wait=omni.data_s / omni.seconds if omni.seconds else None,
                           plain_clips_s=pscore.rate, omni_clips_s=oscore.rate,
                           score_ratio=oscore.rate / pscore.rate if pscore.rate and oscore.rate else None,
                           score_data_wait=oscore.data_s / oscore.seconds if oscore.seconds else None,
                           timed_steps=omni.steps)
                if dev.type == "cuda":
                    row.update(gpu_util_plain_train=np.mean(plain.util) if plain.util else None,
                               gpu_util_omni_train=np.mean(omni.util) if omni.util else None,
                               gpu_util_omni_score=np.mean(oscore.util) if oscore.util else None)
                rows.append(row)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return table(rows, opts, dev, auto_bf16, native), rows


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    from omni.learning.autocast import _cpu_model

    return f"{_cpu_model()} ({os.cpu_count()} logical cores)"


def table(rows: list[dict], opts, dev, auto_bf16: bool, native) -> str:
    head = ["model", "precision", "batch", "input", "stored short side", "plain steps/s", "omni steps/s", "omni/plain",
            "omni data wait", "plain score clips/s", "omni score clips/s", "omni/plain (score)",
            "omni score data wait"]
    if dev.type == "cuda":
        head += ["GPU busy train (plain/omni)", "GPU busy score (omni)"]
    head.append("note")
    lines = [f"Device: {device_name(dev)}; torch {torch.__version__}; {torch.get_num_threads()} intra-op threads; "
             f"loader workers {opts.loader_workers}"
             + (f"; channels_last" if opts.channels_last else "") + ("; torch.compile" if opts.compile else ""),
             "",
             f"`omni.learning.autocast.use_autocast(\"auto\", {dev.type})` picks: **{'bf16' if auto_bf16 else 'fp32'}**"
             + (f" (native bf16 on this CPU: {'yes' if native else 'no'})" if dev.type == "cpu" else ""),
             f"Frame store: {opts.stored_frames} frames per clip (4:3 frames); timed steps per "
             f"side: {opts.rounds} rounds x {opts.steps} (bf16 emulated: 1 x 1).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pct = lambda v: "–" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    for r in rows:
        cells = [r["model"], r["precision"], str(r["batch"]), r["input"], str(r.get("stored", "")), fmt(r.get("plain_steps_s")),
                 fmt(r.get("omni_steps_s")), fmt(r.get("train_ratio"), 2), pct(r.get("omni_data_wait")),
                 fmt(r.get("plain_clips_s")), fmt(r.get("omni_clips_s")), fmt(r.get("score_ratio"), 2), pct(r.get("score_data_wait"))]
        if dev.type == "cuda":
            g = lambda k: "–" if r.get(k) is None else f"{r[k]:.0f}%"  # noqa: E731
            cells += [f"{g('gpu_util_plain_train')} / {g('gpu_util_omni_train')}", g("gpu_util_omni_score")]
        cells.append(r.get("note") or "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# thread budgets


def _worker_steps(threads: int, seconds: float, width: int, size: int, frames: int, batch: int) -> dict:
    """Plain c3d_small training steps in ``seconds`` at ``threads`` intra-op threads."""
    torch.set_num_threads(threads)
    from omni.learning.models import build_model

    torch.manual_seed(0)
    model = build_model("c3d_small", 5, width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, frames, size, size)
    y = torch.arange(batch) % 5

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return {"threads": threads, "steps": n, "seconds": time.perf_counter() - t0}


def threads_study(opts) -> str:
    """c3d_small (video teacher defaults) steps/s: 1 vs 2 threads in one process, and two processes
    side by side at 1 thread each vs one process at 2 threads; interleaved, ``--rounds`` times."""
    from omni.config import TeacherConfig

    m = TeacherConfig().video
    if opts.tiny:
        m = m.model_copy(update={"width": 8, "input_size": 32, "num_frames": 4, "batch_size": 2})
    sec = opts.study_seconds
    args = [sys.executable, "-c",
            "import json,sys; sys.path.insert(0, %r); sys.path.insert(0, %r); import train_speed as t; "
            "print(json.dumps(t._worker_steps(int(sys.argv[1]), %f, %d, %d, %d, %d)))"
            % (str(ROOT), str(Path(__file__).parent), sec, m.width, m.input_size, m.num_frames, m.batch_size)]

    def procs(threads_each: list[int]) -> list[dict]:
        ps = [subprocess.Popen(args + [str(t)], stdout=subprocess.PIPE, text=True) for t in threads_each]
        return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in ps]

    res = {"1 process x 1 thread": [], "1 process x 2 threads": [], "2 processes x 1 thread": [],
           "2 processes x 2 threads": []}
    for _ in range(opts.rounds):
        for t in (1, 2):
            r = procs([t])[0]
            res[f"1 process x {t} thread{'s' if t > 1 else ''}"].append(r["steps"] / r["seconds"])
        for t in (1, 2):
            rs = procs([t, t])
            res[f"2 processes x {t} thread{'s' if t > 1 else ''}"].append(sum(r["steps"] / r["seconds"] for r in rs))
    base = np.mean(res["1 process x 2 threads"])
    lines = [f"Device: {device_name(torch.device('cpu'))}; c3d_small {m.num_frames}x{m.input_size}px batch "
             f"{m.batch_size} width {m.width}, plain training loop, {sec:.0f} s per measurement, "
             f"{opts.rounds} interleaved rounds", "",
             "| layout | total steps/s (mean) | per round | vs 1 process x 2 threads |", "|---|---|---|---|"]
    for k, v in res.items():
        lines.append(f"| {k} | {np.mean(v):.3f} | {', '.join(f'{x:.3f}' for x in v)} | {np.mean(v) / base:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized: the two teachers, few steps (< 1 min)")
    ap.add_argument("--tiny", action="store_true", help="test-sized shapes (32 px, batch 2): exercises the code only")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--models", default=None,
                    help="comma list (default: image_teacher,video_teacher,student_joint,r3d_18; quick: the first two)")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per side per round")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (plain, omni, plain, omni ...)")
    ap.add_argument("--short-side", type=int, default=None, help="frame store short side (default: per model, what extract.short_side auto stores for it)")
    ap.add_argument("--stored-frames", type=int, default=None, help="frames per stored clip (extract.frames_per_clip)")
    ap.add_argument("--score-clips", type=int, default=None)
    ap.add_argument("--score-batch", type=int, default=None, help="default: evaluate.batch_size")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--loader-workers", type=int, default=0)
    ap.add_argument("--checkpoint-every", type=int, default=None, help="default: train.checkpoint_every_steps")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--bf16-budget-s", type=float, default=None,
                    help="CPU without native bf16: skip a bf16 row whose 3 steps would take longer")
    ap.add_argument("--threads-study", action="store_true", help="thread-budget study instead (c3d_small, CPU)")
    ap.add_argument("--study-seconds", type=float, default=20.0)
    opts = ap.parse_args(argv)
    from omni.config import EvaluateConfig, ExtractConfig, TrainConfig

    quick = opts.quick or opts.tiny
    opts.models = (opts.models or ("image_teacher,video_teacher" if quick else
                                   "image_teacher,video_teacher,student_joint,r3d_18")).split(",")
    opts.precisions = opts.precisions.split(",")
    opts.steps = opts.steps or (2 if quick else 3)
    opts.rounds = opts.rounds or (1 if quick else 2)
    # default: each model's frames at the short side omni stores for it (extract.short_side: auto)
    opts.short_side = opts.short_side or (48 if opts.tiny else None)
    opts.stored_frames = opts.stored_frames or ExtractConfig().frames_per_clip
    opts.score_batch = opts.score_batch or (4 if opts.tiny else EvaluateConfig().batch_size)
    opts.score_clips = opts.score_clips or (8 if opts.tiny else 16 if quick else 32)
    opts.checkpoint_every = opts.checkpoint_every or TrainConfig().checkpoint_every_steps
    opts.bf16_budget_s = opts.bf16_budget_s or (2.0 if opts.tiny else 20.0 if quick else 90.0)
    if opts.device == "cpu" and (opts.channels_last or opts.compile):
        print("note: --channels-last/--compile are meant for CUDA; applied anyway", file=sys.stderr)
    if opts.threads_study:
        if opts.tiny:
            opts.study_seconds = min(opts.study_seconds, 1.0)
            opts.rounds = 1
        text = threads_study(opts)
    else:
        text, _ = run_benchmark(opts)
    print(text)
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
