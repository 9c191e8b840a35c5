"""Faults a long run meets on a real machine (issue 35), each injected, each outcome compared with an
uninterrupted run's:

- a worker dies mid-extract (SIGKILL of ``omni extract``, without Prefect and as the process that
  runs the Prefect flow run): the next run decodes only the chunks that were not finished, and the
  ingest and extract outputs equal an uninterrupted run's byte for byte;
- a worker dies mid-training as a Prefect flow run: the next run resumes from the checkpoint;
- the Prefect server goes away mid-run and comes back on the same port and database: the run
  finishes, and the same command again is all cache hits, every output equal to an uninterrupted
  run's byte for byte.

Byte for byte means ``omni_testing.snapshot``: every file's bytes, JSON without its times and
speeds, journals (they record when) aside. Every server and process a test starts, it stops."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from omni import pipeline
from omni.config import load_config

from omni_testing import decode_gate_env, snapshot, snapshot_diff, wait_for, write_config

pytestmark = pytest.mark.e2e  # runs stages end to end: the slow tier (`pytest -m "not e2e"` skips it)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from local_prefect import LocalPrefect, stop  # noqa: E402

CHUNK = 4  # target clips per extract chunk: the tiny world's 24 clips are 6 chunks
EXTRACT = ("ingest", "extract")


def _omni(args: list[str], env: dict, errfile: Path) -> subprocess.Popen:
    with open(errfile, "w") as err:  # a file, not a pipe: a held process must not block on a full pipe
        return subprocess.Popen([sys.executable, "-m", "omni", *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)


def _finish(p: subprocess.Popen, errfile: Path, timeout: float = 300) -> str:
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise
    err = errfile.read_text()
    assert rc == 0, err[-3000:]
    return err


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _ingested(tmp: Path, world: Path, name: str) -> tuple[Path, Path]:
    """A config whose ingest is done (in this process: fast) and whose extract is not."""
    (tmp / name).mkdir()
    cfg_path = write_config(tmp / name, world, extract={"shard_items": CHUNK, "workers": 1},
                            train={"amp": False})
    cfg = load_config(cfg_path)
    pipeline.run_stage(cfg, "ingest")
    return cfg_path, cfg.workdir


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    with LocalPrefect(tmp_path_factory.mktemp("prefect-home")) as p:
        yield p


@pytest.fixture(scope="module")
def extract_reference(tmp_path_factory, tiny_world):
    """An uninterrupted ``omni extract`` (its outputs and the videos it decoded, in order)."""
    tmp = tmp_path_factory.mktemp("extract-ref")
    cfg_path, workdir = _ingested(tmp, tiny_world, "ref")
    log = tmp / "decodes.log"
    _finish(_omni(["extract", str(cfg_path), "--no-prefect"], decode_gate_env(tmp / "inject", log), tmp / "err"),
            tmp / "err")
    return snapshot(workdir, EXTRACT), _lines(log)


def _flow_runs(server: LocalPrefect, name: str) -> list[dict]:
    flows = server.flow_names()
    return [r for r in server.flow_runs() if flows.get(r["flow_id"]) == name]


@pytest.mark.parametrize("via", ["no-prefect", "prefect"])
def test_a_worker_killed_mid_extract_resumes_chunk_by_chunk(via, tmp_path, tiny_world, extract_reference, request):
    reference, ref_decodes = extract_reference
    cfg_path, workdir = _ingested(tmp_path, tiny_world, "killed")
    unit = workdir / "extract" / "target"
    if via == "prefect":  # the process that runs the flow run against a server, as a worker starts it
        server = request.getfixturevalue("prefect_server")
        base, args = server.env, ["extract", str(cfg_path)]
    else:
        base, args = dict(os.environ), ["extract", str(cfg_path), "--no-prefect"]
    # hold the second clip of the third chunk: two chunks finished, one part-way (its shard half written)
    hold_at = 2 * CHUNK + 2
    log = tmp_path / "decodes-killed.log"
    p = _omni(args, decode_gate_env(tmp_path / "inject", log, hold_at, base), tmp_path / "err-killed")
    try:
        wait_for(lambda: len(_lines(log)) >= hold_at or p.poll() is not None, 240, "the third extract chunk")
        assert p.poll() is None, (tmp_path / "err-killed").read_text()[-3000:]
        parts = sorted((unit / "parts").glob("*.parquet"))
        assert [q.name for q in parts] == ["shard-00000.parquet", "shard-00001.parquet"]
        assert list((unit / "frames").glob(".shard-00002.*.tmp"))  # the third chunk's shard, part-written
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finished = [*parts, *sorted((unit / "frames").glob("shard-*.bin"))]
    assert len(finished) == 4
    stamps = {q: (q.stat().st_ino, q.stat().st_mtime_ns) for q in finished}
    assert not (unit / "_done.json").exists()

    log2 = tmp_path / "decodes-rerun.log"
    err = _finish(_omni(args, decode_gate_env(tmp_path / "inject", log2, 0, base), tmp_path / "err-rerun"),
                  tmp_path / "err-rerun")
    assert "Traceback" not in err, err[-3000:]
    # the two finished chunks are neither decoded nor written again; everything else is decoded once
    assert {q: (q.stat().st_ino, q.stat().st_mtime_ns) for q in finished} == stamps
    done_before = _lines(log)[:2 * CHUNK]
    assert Counter(_lines(log2)) == Counter(ref_decodes) - Counter(done_before)
    assert not list((unit / "frames").glob(".*.tmp"))
    got = snapshot(workdir, EXTRACT)
    assert got == reference, snapshot_diff(got, reference)
    if via == "prefect":
        runs = _flow_runs(server, "extract")
        mine = [r for r in runs if r["parameters"].get("config_path") == str(cfg_path)]
        assert len(mine) == 2 and "COMPLETED" in {r["state_type"] for r in mine}


@pytest.fixture(scope="module")
def ready_to_train(tmp_path_factory, tiny_world):
    """A config whose stages up to the manifest are done (in this process: fast)."""
    tmp = tmp_path_factory.mktemp("train-faults")
    cfg_path = write_config(tmp, tiny_world, train={"baseline": False, "amp": False})
    cfg = load_config(cfg_path)
    for stage in pipeline.STAGES_BEFORE_TRAINING:
        pipeline.run_stage(cfg, stage)
    return cfg_path, cfg.workdir


def _checkpoint_step(path: Path) -> int:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["step"])
    except Exception:  # not there yet, or being replaced
        return 0


def test_a_flow_run_killed_mid_training_resumes_to_the_uninterrupted_model(prefect_server, ready_to_train, tmp_path):
    import shutil

    import torch
    import yaml

    cfg_path, workdir = ready_to_train
    before = snapshot(workdir)
    run_dir = workdir / "train" / "first_round"
    sets = ["--set", "train.model.steps=60", "--set", "train.checkpoint_every_steps=5", "--set", "train.threads=1"]
    args = ["train", str(cfg_path), *sets]
    # the uninterrupted run, on a copy of the workdir (the keys do not depend on where it is), without Prefect
    ref = yaml.safe_load(cfg_path.read_text())
    shutil.copytree(workdir, tmp_path / "ref-work")
    ref["workdir"] = str(tmp_path / "ref-work")
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump(ref))
    ref_run = _omni(["train", str(tmp_path / "ref.yaml"), "--no-prefect", *sets], prefect_server.env,
                    tmp_path / "err-ref")
    _finish(ref_run, tmp_path / "err-ref")
    p = _omni(args, prefect_server.env, tmp_path / "err-killed")
    try:
        wait_for(lambda: _checkpoint_step(run_dir / "checkpoint.pth") >= 10 or p.poll() is not None, 300,
                 "a training checkpoint at step 10 or later", every=0.2)
        assert p.poll() is None, (tmp_path / "err-killed").read_text()[-3000:]
        at_kill = _checkpoint_step(run_dir / "checkpoint.pth")
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert not (run_dir / "_done.json").exists()

    err = _finish(_omni(args, prefect_server.env, tmp_path / "err-rerun"), tmp_path / "err-rerun")
    assert "Traceback" not in err, err[-3000:]
    info = json.loads((run_dir / "_done.json").read_text())
    assert 10 <= at_kill <= info["resumed_from_step"] < info["steps"] == 60  # steps done before the kill: kept
    assert json.loads((workdir / "train" / "omnisource" / "_done.json").read_text())["steps"] == 60
    # what a user sees in the UI: the rerun's log says where it resumed, and the rerun completed
    runs = [r for r in _flow_runs(prefect_server, "train") if r["parameters"].get("config_path") == str(cfg_path)]
    assert len(runs) == 2 and "COMPLETED" in {r["state_type"] for r in runs}
    logs = prefect_server.logs([r["id"] for r in runs])
    assert any(f"first_round: resuming from step {info['resumed_from_step']}/60" in e["message"] for e in logs)
    # the resumed students are the uninterrupted ones, tensor for tensor
    for run in ("first_round", "omnisource"):
        got = torch.load(workdir / "train" / run / "model.pt", weights_only=False)["model"]
        want = torch.load(tmp_path / "ref-work" / "train" / run / "model.pt", weights_only=False)["model"]
        assert all(torch.equal(got[k], want[k]) for k in want), run
    # nothing before training changed
    after = snapshot(workdir)
    assert {k: v for k, v in after.items() if k in before and not k.startswith("train/")} == \
        {k: v for k, v in before.items() if not k.startswith("train/")}


def test_the_prefect_server_goes_away_mid_run_and_comes_back(tmp_path, tiny_world):
    (tmp_path / "ref").mkdir()
    ref_cfg = load_config(write_config(tmp_path / "ref", tiny_world, train={"amp": False}))
    pipeline.run_pipeline(ref_cfg)  # uninterrupted (and without Prefect: the same code, the same outputs)
    reference = snapshot(ref_cfg.workdir)

    (tmp_path / "run").mkdir()
    cfg_path = write_config(tmp_path / "run", tiny_world, train={"amp": False})
    workdir = load_config(cfg_path).workdir
    with LocalPrefect(tmp_path / "prefect-home") as server:
        p = _omni(["run", str(cfg_path)], server.env, tmp_path / "err-first")
        try:
            wait_for(lambda: (workdir / "extract" / "target" / "_done.json").exists() or p.poll() is not None, 300,
                     "the first run's extract", every=0.2)
            assert p.poll() is None, (tmp_path / "err-first").read_text()[-3000:]
            server.stop_server()  # gone mid-run ...
            t0 = time.time()
            time.sleep(15)  # ... for 15 s: the outage itself, not a wait for anything
            server.start_server()  # ... and back on the same port and database
            print(f"server away for {time.time() - t0:.0f} s")
            rc = p.wait(timeout=300)
        finally:
            stop(p, signal.SIGKILL)
        err = (tmp_path / "err-first").read_text()
        first = [r for r in _flow_runs(server, "omnisource") if r["parameters"].get("config_path") == str(cfg_path)]
        # the run finished, or it failed with a clear state and one clear line
        assert rc == 0 and first[0]["state_type"] == "COMPLETED" or \
            rc != 0 and first[0]["state_type"] in ("FAILED", "CRASHED") and "Traceback" not in err, \
            f"rc {rc}, state {first[0]['state_type']}:\n{err[-4000:]}"

        earlier = {r["id"] for r in server.flow_runs()}
        _finish(_omni(["run", str(cfg_path)], server.env, tmp_path / "err-again"), tmp_path / "err-again")
        got = snapshot(workdir)
        assert got == reference, snapshot_diff(got, reference)
        again = [r for r in server.flow_runs() if r["id"] not in earlier]
        assert again and {r["state_type"] for r in again} == {"COMPLETED"}
        if rc == 0:  # every unit the first run finished is a cache hit now
            tasks = server.api("/task_runs/filter", {"flow_runs": {"id": {"any_": [r["id"] for r in again]}}})
            units = [t for t in tasks if not re.search(r"-\d+$", t["name"])]  # not the stage subflows' own
            assert units and {t["state_name"] for t in units} == {"Cached"}, sorted(t["name"] for t in units)
