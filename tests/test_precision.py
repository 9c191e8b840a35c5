"""Precision is chosen per device; these tests hold on a CPU with or without native bf16."""
import torch

from omni import precision

CPU = torch.device("cpu")


def test_forced_settings_are_obeyed():
    assert precision.use_autocast(True, CPU) is True
    assert precision.use_autocast(False, torch.device("cuda")) is False
    assert precision.use_autocast("auto", torch.device("cuda")) is True


def test_auto_never_picks_bf16_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(precision, "_bench_once", lambda autocast, steps=3: 1 / 0)  # never measured
    assert precision.use_autocast("auto", CPU) is False


def test_auto_measures_once_per_machine_and_picks_bf16_only_when_faster(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    calls = []

    def bench(autocast, steps=3):
        calls.append(autocast)
        return 1.0 if autocast else 2.0  # bf16 twice as fast

    monkeypatch.setattr(precision, "_bench_once", bench)
    assert precision.use_autocast("auto", CPU) is True
    assert precision.use_autocast("auto", CPU) is True
    assert len(calls) == 2  # one fp32 and one bf16 measurement, then the cached verdict
    monkeypatch.setenv("OMNI_CACHE_DIR", str(tmp_path / "other"))
    monkeypatch.setattr(precision, "_bench_once", lambda autocast, steps=3: 1.05 if autocast else 1.0)
    assert precision.use_autocast("auto", CPU) is False  # slower (or barely faster): fp32
