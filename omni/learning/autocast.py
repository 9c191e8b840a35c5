"""Which precision to train and score in, decided per device by what is fast there.

``amp: auto`` (the default) means: bf16 autocast on CUDA; on a CPU only where the CPU has
native bf16 instructions (AVX512-BF16 or AMX) *and* a one-off micro-benchmark on this machine
(the best of three alternating rounds of each precision, so a moment of load does not decide it)
measured autocast faster than fp32. The benchmark's verdict is cached per CPU model and torch
version under ``~/.cache/omni/precision.json`` (``OMNI_CACHE_DIR`` moves it). Without native
bf16, CPU autocast emulates bf16 and was measured 10x+ slower, so it is never picked.
``amp: true`` / ``false`` force the choice.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from ..runtime.atomic import write_json_atomic

log = logging.getLogger(__name__)

_MIN_GAIN = 1.1  # autocast must be at least this much faster than fp32 to be picked on a CPU


def cpu_has_native_bf16() -> bool:
    """True when this CPU executes bf16 matrix work natively (AVX512-BF16 or AMX tiles)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # an older torch without the probe
            continue
    return False


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_file() -> Path:
    root = os.environ.get("OMNI_CACHE_DIR") or Path.home() / ".cache" / "omni"
    return Path(root) / "precision.json"


def _bench_once(autocast: bool, steps: int = 3) -> float:
    """Seconds per training step of a small 3D conv net on the CPU, fp32 or bf16 autocast."""
    # the verdict is first asked for wherever a model first runs, scoring under no_grad or
    # inference_mode too: the measurement trains, so it builds its tensors with autograd on
    with torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv3d(3, 16, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv3d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(), torch.nn.Linear(32, 4))
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        x = torch.randn(4, 3, 8, 48, 48)
        y = torch.zeros(4, dtype=torch.long)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = torch.nn.functional.cross_entropy(net(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        step()  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - t0) / steps


def _measure(rounds: int = 3) -> tuple[float, float]:
    """Seconds per step in fp32 and in bf16 autocast: the best of ``rounds`` alternating
    measurements of each. The verdict is kept for good, so one slow round (another process
    taking the cores for a moment) must not decide it: a busy machine slows both modes in turn and
    the minimum of each is its unloaded speed."""
    fp32 = bf16 = float("inf")
    for _ in range(rounds):
        fp32 = min(fp32, _bench_once(False))
        bf16 = min(bf16, _bench_once(True))
    return fp32, bf16


def _read_cache(path: Path) -> dict:
    try:
        cached = json.loads(path.read_text())
        return cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        return {}


def cpu_autocast_pays() -> bool:
    """Native bf16 and a measured gain on this machine (cached).

    One verdict per CPU model and torch version, whatever a process's thread count: every process
    of a machine (a run's own, Dask workers, torchrun ranks) must compute in the same precision, or
    the same unit scored here or on a worker would differ. A measurement is a timing, so two
    processes measuring at once may disagree: the first verdict written wins."""
    if not cpu_has_native_bf16():
        return False
    ident = f"{_cpu_model()}|torch {torch.__version__}"
    path = _cache_file()
    cached = _read_cache(path)
    if ident in cached:
        return bool(cached[ident]["autocast"])
    fp32, bf16 = _measure()
    verdict = fp32 / bf16 >= _MIN_GAIN
    log.info("precision: CPU bf16 autocast %.3fs/step vs fp32 %.3fs/step -> %s", bf16, fp32,
             "bf16" if verdict else "fp32")
    cached = _read_cache(path)
    if ident in cached:  # another process measured meanwhile: its verdict stands
        return bool(cached[ident]["autocast"])
    cached[ident] = {"autocast": verdict, "fp32_s": round(fp32, 4), "bf16_s": round(bf16, 4),
                     "threads": torch.get_num_threads()}
    try:
        write_json_atomic(path, cached)
    except OSError:
        pass  # an unwritable home only costs the benchmark again next time
    return verdict


def use_autocast(amp: bool | str, device: torch.device) -> bool:
    """Resolve the ``amp`` setting (True, False or "auto") for a device."""
    if amp is True or amp is False:
        return amp
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        return cpu_autocast_pays()
    return False
