"""CPU stages on CPU workers, GPU stages on GPU workers, for real: a Prefect server on 127.0.0.1
(temporary home and database), both work pools, `prefect deploy --all`, and one process worker
per pool. The `omnisource` deployment (stages_on_pools) runs each stage as a run of its own
deployment on its pool: first with no worker on omni-gpu (the run says so and fails after a short
`worker_wait_s`, cancelling the waiting stage run), then with both workers (every stage on its
pool, and the outputs of `omni run --no-prefect` on the same config). Everything this test
starts, it stops (scripts/local_prefect.py)."""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # servers, workers and stages end to end: the slow tier

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_deployment as td  # noqa: E402  (module import: its test is not collected again here)
from local_prefect import LocalPrefect, run_id, wait_for  # noqa: E402
from omni_testing import snapshot, snapshot_diff  # noqa: E402

from omni.pipeline import GPU_STAGES, STAGES  # noqa: E402

POOL = {stage: "omni-gpu" if stage in GPU_STAGES else "omni-cpu" for stage in STAGES}


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    with LocalPrefect(tmp_path_factory.mktemp("prefect-home")) as p:
        p.env["PREFECT_WORKER_QUERY_SECONDS"] = "2"  # workers poll every 2 s (default 10): 9 runs to pick up
        p.deploy_all()
        p.start_worker("omni-cpu", name="worker-cpu")
        wait_for(lambda: online(p, "omni-cpu") == 1, 120, "the omni-cpu worker online")
        yield p


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return td.tiny_config(tmp_path_factory.mktemp("pools"))


def online(p: LocalPrefect, pool: str) -> int:
    return sum(w["status"] == "ONLINE" for w in p.api(f"/work_pools/{pool}/workers/filter", {}))


def run_pipeline(p: LocalPrefect, params: dict) -> tuple[dict, str]:
    """Start the `omnisource` deployment, wait for its end; (its flow run, the CLI's output)."""
    started = p.cli("deployment", "run", "omnisource/omnisource", "--params", json.dumps(params))
    assert started.returncode == 0, started.stdout + started.stderr
    rid = run_id(started.stdout)
    wait_for(lambda: p.api(f"/flow_runs/{rid}")["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"),
             900, "the pipeline run's end:\n" + p.log("worker-cpu")[-3000:], every=2)
    return p.api(f"/flow_runs/{rid}"), started.stdout


def stage_runs(p: LocalPrefect, parent_id: str) -> dict[str, dict]:
    """The parent's stage runs by flow name (linked to it through their placeholder task runs)."""
    tasks = {t["id"] for t in p.api("/task_runs/filter", {"flow_runs": {"id": {"any_": [parent_id]}}})}
    flows = p.flow_names()
    return {flows[r["flow_id"]]: r for r in p.flow_runs() if r.get("parent_task_run_id") in tasks}


def test_a_pool_without_worker_fails_the_run_saying_so(prefect, config):
    cfg_path, _ = config
    assert online(prefect, "omni-gpu") == 0
    t0 = time.time()
    parent, _ = run_pipeline(prefect, {"config_path": str(cfg_path), "worker_wait_s": 10})
    took = time.time() - t0
    assert parent["state_type"] == "FAILED", parent["state"]
    assert parent["name"].startswith("omnisource · ")
    message = parent["state"]["message"]
    assert "omni-gpu has no worker" in message and "worker_wait_s" in message, message
    # the CPU stages ran on omni-cpu; teacher waited on omni-gpu, was cancelled, and nothing after it started
    runs = stage_runs(prefect, parent["id"])
    assert set(runs) == {"ingest", "extract", "teacher"}, sorted(runs)
    for stage in ("ingest", "extract"):
        assert runs[stage]["state_type"] == "COMPLETED" and runs[stage]["work_pool_name"] == "omni-cpu", stage
    teacher = runs["teacher"]
    assert teacher["work_pool_name"] == "omni-gpu" and teacher["state_type"] == "CANCELLED", teacher["state"]
    assert teacher["name"] == f"teacher · {cfg_path.parent.name}/{cfg_path.name}"
    # said on the run page while it waited: a log line and an artifact on the parent run
    logs = [e["message"] for e in prefect.logs([parent["id"]])]
    assert any("stage teacher is waiting: no worker polls work pool omni-gpu" in m
               and "prefect worker start --pool omni-gpu" in m for m in logs), logs[-20:]
    note = prefect.artifacts()["omnisource-no-worker"]
    assert note["flow_run_id"] == parent["id"] and "no worker polls work pool omni-gpu" in note["data"]
    table = json.loads(prefect.artifacts()["omnisource-stages"]["data"])
    assert [(r["stage"], r["pool"], r["state"]) for r in table[:3]] == [
        ("ingest", "omni-cpu", "Completed"), ("extract", "omni-cpu", "Completed"), ("teacher", "omni-gpu", "Cancelled")]
    assert took < 300, took  # bounded: two small CPU stages, then 10 s of waiting


def test_stages_run_on_their_pools_with_the_outputs_of_omni_run(prefect, config):
    cfg_path, cfg = config
    prefect.start_worker("omni-gpu", name="worker-gpu")
    wait_for(lambda: online(prefect, "omni-gpu") == 1, 120, "the omni-gpu worker online")
    parent, _ = run_pipeline(prefect, {"config_path": str(cfg_path)})
    assert parent["state_type"] == "COMPLETED", (
        json.dumps(parent["state"]) + prefect.log("worker-cpu")[-3000:] + prefect.log("worker-gpu")[-3000:])

    # every stage is its own flow run of its own deployment, on the pool it belongs to, taken by
    # that pool's worker (and only by it)
    runs = stage_runs(prefect, parent["id"])
    assert set(runs) == set(STAGES), sorted(runs)
    deployments = {d["id"]: d for d in prefect.api("/deployments/filter", {})}
    worker_log = {"omni-cpu": prefect.log("worker-cpu"), "omni-gpu": prefect.log("worker-gpu")}
    for stage, run in runs.items():
        assert run["state_type"] == "COMPLETED", (stage, run["state"])
        assert deployments[run["deployment_id"]]["name"] == stage
        assert run["work_pool_name"] == POOL[stage], (stage, run["work_pool_name"])
        other = "omni-cpu" if POOL[stage] == "omni-gpu" else "omni-gpu"
        submitted = f"submitting flow run '{run['id']}'"
        assert submitted in worker_log[POOL[stage]] and submitted not in worker_log[other], stage
    assert parent["work_pool_name"] == "omni-cpu" and f"submitting flow run '{parent['id']}'" in worker_log["omni-cpu"]
    # the run page: the stages in order with their pools, and the run's report
    table = json.loads(prefect.artifacts()["omnisource-stages"]["data"])
    assert [(r["stage"], r["pool"], r["state"]) for r in table] == [(s, POOL[s], "Completed") for s in STAGES]
    assert prefect.artifacts()["omnisource-report"]["flow_run_id"] == parent["id"]

    # the outputs equal an `omni run --no-prefect` of the same config (same workdir path: the pools'
    # run is moved aside first)
    workdir = Path(cfg["workdir"])
    tops = ("manifest", "train", "eval")
    got = {k: v for k, v in snapshot(workdir, tops).items() if not k.endswith(".png")}
    assert {"manifest/web_items.parquet", "manifest/train.parquet", "train/omnisource/train.parquet",
            "eval/omnisource/metrics.json", "eval/baseline/metrics.json"} <= set(got)
    shutil.move(workdir, workdir.with_name(workdir.name + "-pools"))
    ref = subprocess.run([sys.executable, "-m", "omni", "run", "--no-prefect", str(cfg_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert ref.returncode == 0, ref.stderr[-3000:]
    want = {k: v for k, v in snapshot(workdir, tops).items() if not k.endswith(".png")}
    assert got == want, snapshot_diff(got, want)
