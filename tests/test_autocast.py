"""Precision is chosen per device; these tests hold on a CPU with or without native bf16."""
import pytest
import torch

from omni.learning import autocast

CPU = torch.device("cpu")


def test_forced_settings_are_obeyed():
    assert autocast.use_autocast(True, CPU) is True
    assert autocast.use_autocast(False, torch.device("cuda")) is False
    assert autocast.use_autocast("auto", torch.device("cuda")) is True


def test_auto_never_picks_bf16_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(autocast, "_bench_once", lambda autocast, steps=3: 1 / 0)  # never measured
    assert autocast.use_autocast("auto", CPU) is False


def test_auto_measures_once_per_machine_and_picks_bf16_only_when_faster(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: True)
    calls = []

    def bench(autocast, steps=3):
        calls.append(autocast)
        return 1.0 if autocast else 2.0  # bf16 twice as fast

    monkeypatch.setattr(autocast, "_bench_once", bench)
    assert autocast.use_autocast("auto", CPU) is True
    assert autocast.use_autocast("auto", CPU) is True
    assert len(calls) == 6 and calls[:2] == [False, True]  # fp32 and bf16 in turn, then the cached verdict
    monkeypatch.setenv("OMNI_CACHE_DIR", str(tmp_path / "other"))
    monkeypatch.setattr(autocast, "_bench_once", lambda autocast, steps=3: 1.05 if autocast else 1.0)
    assert autocast.use_autocast("auto", CPU) is False  # slower (or barely faster): fp32


@pytest.mark.e2e
def test_the_first_verdict_can_be_asked_for_while_scoring(monkeypatch, tmp_path):
    """A fresh process that only scores (a Dask worker, a rerun whose training is cached) asks
    for the verdict under no_grad / inference_mode: the measurement must still train (real
    training steps, timed) and the verdict must follow from the timings it recorded."""
    import json
    import math

    monkeypatch.setenv("OMNI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: True)
    for mode in (torch.no_grad, torch.inference_mode):
        for p in tmp_path.rglob("*.json"):
            p.unlink()
        with mode():
            verdict = autocast.use_autocast("auto", CPU)
        (entry,) = json.loads((tmp_path / "precision.json").read_text()).values()
        assert all(math.isfinite(entry[k]) and entry[k] > 0 for k in ("fp32_s", "bf16_s")), entry
        assert verdict is entry["autocast"]
        gain = entry["fp32_s"] / entry["bf16_s"]  # of rounded timings: only a clear margin decides
        if abs(gain - autocast._MIN_GAIN) > 0.01:
            assert verdict is (gain >= autocast._MIN_GAIN), entry


def test_every_process_of_a_machine_gets_the_same_verdict(monkeypatch, tmp_path):
    """Dask workers run with other thread counts than the run itself: they must not measure
    again (a timing can flip), or the same unit would be scored in two precisions."""
    monkeypatch.setenv("OMNI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(autocast, "_bench_once", lambda autocast, steps=3: 1.0 if autocast else 2.0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert autocast.use_autocast("auto", CPU) is True
        torch.set_num_threads(1)
        monkeypatch.setattr(autocast, "_bench_once", lambda autocast, steps=3: 1 / 0)  # never again
        assert autocast.use_autocast("auto", CPU) is True
    finally:
        torch.set_num_threads(threads)


def test_a_moment_of_load_does_not_decide_the_verdict_for_good(monkeypatch, tmp_path):
    """The verdict is cached for the machine: one measurement slowed by another process (here
    the first bf16 one, three times slower) must not pick the slower autocast."""
    monkeypatch.setenv("OMNI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: True)
    seen = []

    def bench(autocast, steps=3):
        seen.append(autocast)
        slow = 3.0 if autocast and seen.count(True) == 1 else 1.0
        return (0.5 if autocast else 1.0) * slow  # bf16 twice as fast when the machine is quiet

    monkeypatch.setattr(autocast, "_bench_once", bench)
    assert autocast.use_autocast("auto", CPU) is True
