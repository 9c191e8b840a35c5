"""The README's deployment path, for real: a Prefect server on 127.0.0.1 with a temporary home,
both work pools, `prefect deploy --all`, a process worker, the pipeline deployment on the tiny
demo world, one stage deployment ad hoc, a deployment with a bad config, and a run cancelled
while it trains. Everything this test starts, it stops (scripts/local_prefect.py)."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e  # runs stages end to end: the slow tier (`pytest -m "not e2e"` skips it)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from local_prefect import LocalPrefect, run_id, wait_for  # noqa: E402

STAGES = ("ingest", "extract", "teacher", "score", "filter", "manifest", "train", "evaluate")


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    with LocalPrefect(tmp_path_factory.mktemp("prefect-home")) as p:
        yield p


def tiny_config(tmp_path: Path) -> tuple[Path, dict]:
    """The tiny demo world and a config over its local files (fast settings)."""
    gen = subprocess.run([sys.executable, "-m", "omni", "demo", "--tiny", "--generate-only", "--workdir",
                          str(tmp_path / "demo")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    cfg = yaml.safe_load((tmp_path / "demo" / "config-local.yaml").read_text())
    cfg["train"]["amp"] = False
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    return cfg_path, cfg


def test_readme_deployment_path_end_to_end(prefect, tmp_path):
    prefect.deploy_all()
    deployments = {d["name"] for d in prefect.api("/deployments/filter", {})}
    assert {"omnisource-cpu", "omnisource", *STAGES} <= deployments
    cfg_path, cfg = tiny_config(tmp_path)
    prefect.start_worker("omni-cpu")

    run = prefect.cli("deployment", "run", "omnisource/omnisource-cpu", "--param", f"config_path={cfg_path}",
                      "--watch", "--watch-timeout", "900", timeout=960)
    runs = prefect.flow_runs()
    parent = next(r for r in runs if r.get("deployment_id") and r["parameters"].get("config_path") == str(cfg_path))
    assert parent["state_type"] == "COMPLETED", (run.stdout + run.stderr)[-3000:] + prefect.log("worker")[-3000:]
    assert parent["name"].startswith("omnisource · ")  # run names say what ran on what
    # every stage ran as its own subflow run, and the library's log lines reached the API
    flows = prefect.flow_names()
    stage_runs = [r for r in runs if r.get("parent_task_run_id")]
    assert set(STAGES) <= {flows[r["flow_id"]] for r in stage_runs if r["state_type"] == "COMPLETED"}
    logs = prefect.logs([r["id"] for r in runs])
    assert any(entry["name"].startswith("omni") for entry in logs), \
        f"library logs did not reach the UI: {sorted({e['name'] for e in logs})}"

    artifacts = prefect.artifacts()
    assert "omnisource-report" in artifacts and "progress-train-omnisource" in artifacts
    # every stage's counts as a table, and the pictures a user looks at
    for stage in STAGES:
        assert artifacts[f"{stage}-counts"]["type"] == "table", stage
    ingest_rows = json.loads(artifacts["ingest-counts"]["data"])
    assert {r["unit"] for r in ingest_rows} >= {"ingest/target", "ingest/web_images"}
    assert sum(r["failed"] for r in ingest_rows) > 0  # the demo's planted bad files are counted
    for key in ("filter-kept-vs-rejected-web-images", "train-omnisource-training-curve",
                "evaluate-omnisource-confusion-matrix"):
        assert "](data:image/jpeg;base64," in artifacts[key]["data"], key
    assert "| baseline |" in artifacts["omnisource-report"]["data"]  # a markdown table, not a code block

    # the run form has typed fields, and a value out of bounds is refused before any run starts
    dep = next(d for d in prefect.api("/deployments/filter", {}) if d["name"] == "omnisource-cpu")
    fields = dep["parameter_openapi_schema"]["definitions"]["RunSettings"]["properties"]
    assert {"workdir", "seed", "student_steps", "teacher_steps", "device", "threads", "keep_fraction",
            "require_top1"} <= set(fields)
    n_runs = len(prefect.flow_runs())
    bad_param = prefect.cli("deployment", "run", "omnisource/omnisource-cpu", "--params",
                            json.dumps({"config_path": str(cfg_path), "settings": {"keep_fraction": 2}}))
    assert bad_param.returncode != 0 and len(prefect.flow_runs()) == n_runs, bad_param.stdout[-2000:]

    # one stage deployment ad hoc: a cache hit now
    run = prefect.cli("deployment", "run", "filter/filter", "--param", f"config_path={cfg_path}", "--watch",
                      "--watch-timeout", "300", timeout=360)
    adhoc = [r for r in prefect.flow_runs() if flows.get(r["flow_id"]) == "filter" and r.get("deployment_id")]
    assert adhoc and adhoc[0]["state_type"] == "COMPLETED", run.stdout[-2000:]
    tasks = prefect.api("/task_runs/filter", {"flow_runs": {"id": {"any_": [adhoc[0]["id"]]}}})
    assert [t["state_name"] for t in tasks] == ["Cached"]  # a cache hit shows as such

    # a bad config fails fast, says why in the run's logs, and is not retried
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg_path.read_text() + "\nfilter: {min_scor: 0.3}\n")
    t0 = time.time()
    prefect.cli("deployment", "run", "omnisource/omnisource-cpu", "--param", f"config_path={bad}", "--watch",
                "--watch-timeout", "300", timeout=360)
    failed = next(r for r in prefect.flow_runs() if r["parameters"].get("config_path") == str(bad))
    assert failed["state_type"] == "FAILED" and failed["run_count"] == 1
    assert time.time() - t0 < 240
    assert any("min_scor: unknown key" in entry["message"] for entry in prefect.logs([failed["id"]]))

    # Cancel (the UI's button, here through the CLI) stops training promptly, keeps its checkpoint,
    # and the next run resumes from it (the pipeline: everything before training is a cache hit)
    params = json.dumps({"config_path": str(cfg_path), "settings": {"student_steps": 200000}})
    ckpt = Path(cfg["workdir"]) / "train" / "baseline" / "checkpoint.pth"
    before = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
    started = prefect.cli("deployment", "run", "omnisource/omnisource-cpu", "--params", params)
    assert started.returncode == 0, started.stdout + started.stderr
    first = run_id(started.stdout)
    wait_for(lambda: ckpt.exists() and ckpt.stat().st_mtime_ns > before, 300, "a new training checkpoint")
    cancel = prefect.cli("flow-run", "cancel", first)
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    t0 = time.time()  # the request is in: from here on it is omni's and the worker's time
    wait_for(lambda: prefect.api(f"/flow_runs/{first}")["state_type"] == "CANCELLED", 120, "the run cancelled")
    cancel_s = time.time() - t0
    print(f"cancel requested -> run Cancelled in {cancel_s:.1f} s")
    assert cancel_s < 30
    wait_for(lambda: any("checkpoint kept at step" in e["message"] for e in prefect.logs()), 30,
             "the stopped run's checkpoint line:\n" + prefect.log("worker")[-4000:])
    again = run_id(prefect.cli("deployment", "run", "omnisource/omnisource-cpu", "--params", params).stdout)
    wait_for(lambda: any("resuming from step" in e["message"] for e in prefect.logs()), 300,
             "the rerun resuming from the checkpoint")
    prefect.cli("flow-run", "cancel", again)
    wait_for(lambda: prefect.api(f"/flow_runs/{again}")["state_type"] in ("CANCELLED", "CRASHED", "FAILED"), 120,
             "the rerun cancelled")
