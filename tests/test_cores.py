"""Runs on one machine split its cores instead of oversubscribing them (omni/runtime/cores.py)."""
import subprocess
import sys
import time

import torch

from omni.runtime.cores import CoreShare, live_runs, usable_cores


def test_two_runs_split_the_cores_and_a_finished_run_gives_them_back(tmp_path, monkeypatch):
    monkeypatch.setattr("omni.runtime.cores.usable_cores", lambda: 8)
    before = torch.get_num_threads()
    try:
        with CoreShare(folder=tmp_path, every_s=3600) as a:
            assert a.threads == 8 and torch.get_num_threads() == 8
            # another process registers (a second flow run on the same worker)
            other = subprocess.Popen([sys.executable, "-c", "import sys, time; from omni.runtime.cores import CoreShare\n"
                                      f"with CoreShare(folder=__import__('pathlib').Path({str(tmp_path)!r})):\n"
                                      "    print('in', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
            assert other.stdout.readline().strip() == "in"
            assert live_runs(tmp_path) == 2
            assert a.apply() == 8  # re-checked only every few seconds ...
            assert a.apply(force=True) == 4 and torch.get_num_threads() == 4  # ... then halved
            other.kill()
            other.wait()
            assert a.apply(force=True) == 8  # the killed run's registration is stale: cores come back
            assert len(list(tmp_path.glob("*.run"))) == 1
        assert live_runs(tmp_path) == 0 and not list(tmp_path.glob("*.run"))
    finally:
        torch.set_num_threads(before)


def test_a_fixed_thread_budget_and_loader_workers(tmp_path, monkeypatch):
    monkeypatch.setattr("omni.runtime.cores.usable_cores", lambda: 8)
    before = torch.get_num_threads()
    try:
        with CoreShare(fixed=3, folder=tmp_path) as s:
            assert s.threads == 3 and not list(tmp_path.glob("*.run"))  # opts out of sharing
        with CoreShare(reserved=2, folder=tmp_path) as s:
            assert s.threads == 6  # one core per DataLoader worker process
        (tmp_path / "file").write_text("not a folder")
        with CoreShare(folder=tmp_path / "file" / "runs") as s:  # an unusable registry: run alone, never fail
            assert s.threads == 8
    finally:
        torch.set_num_threads(before)


def test_real_core_count_is_positive():
    assert usable_cores() >= 1
