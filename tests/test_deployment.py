"""The README's deployment path, for real: a Prefect server on 127.0.0.1 with a temporary home,
both work pools, `prefect deploy --all`, a process worker, the pipeline deployment on the tiny
demo world, one stage deployment ad hoc, and a deployment with a bad config. Everything this
test starts, it stops."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, path: str, body: dict | None = None):
    req = urllib.request.Request(url + path, data=json.dumps(body or {}).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or "null")


def _stop(p: subprocess.Popen, sig=signal.SIGINT, timeout=30) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_EXTRA_LOGGERS": "omni"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")
    p = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                         env=env, stdout=log, stderr=subprocess.STDOUT, cwd=home)
    url = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(240):
            try:
                _api(url, "/health")
                break
            except Exception:
                if p.poll() is not None:
                    raise RuntimeError((home / "server.log").read_text()[-2000:])
                time.sleep(0.5)
        else:
            raise RuntimeError("prefect server did not start in 120 s")
        yield {**env, "PREFECT_API_URL": url, "OMNI_HOME": str(ROOT)}, url
    finally:
        _stop(p, signal.SIGTERM)
        log.close()


def _prefect(env, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _flow_runs(url: str) -> list[dict]:
    return _api(url, "/flow_runs/filter", {"limit": 200})


def _logs(url: str, flow_run_ids: list[str]) -> list[dict]:
    out, offset = [], 0
    while True:
        page = _api(url, "/logs/filter", {"limit": 200, "offset": offset,
                                          "logs": {"flow_run_id": {"any_": flow_run_ids}}})
        out += page
        if len(page) < 200:
            return out
        offset += 200


def _run_id(cli_output: str) -> str:
    import re

    m = re.search(r"UUID: ([0-9a-f-]{36})", cli_output)
    assert m, cli_output
    return m.group(1)


def _ids(url: str) -> list[str]:
    return [r["id"] for r in _flow_runs(url)]


def _wait(cond, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_readme_deployment_path_end_to_end(server, tmp_path):
    env, url = server
    for pool in ("omni-cpu", "omni-gpu"):
        p = _prefect(env, "work-pool", "create", pool, "--type", "process")
        assert p.returncode == 0, p.stdout + p.stderr
    p = _prefect(env, "--no-prompt", "deploy", "--all")
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    deployments = {d["name"] for d in _api(url, "/deployments/filter", {})}
    assert {"omnisource-cpu", "omnisource-gpu", "ingest", "extract", "teacher", "score", "filter", "manifest",
            "train", "evaluate"} <= deployments

    # the tiny demo world and a config over its local files (fast settings)
    gen = subprocess.run([sys.executable, "-m", "omni", "demo", "--tiny", "--generate-only", "--workdir",
                          str(tmp_path / "demo")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    cfg = yaml.safe_load((tmp_path / "demo" / "config-local.yaml").read_text())
    cfg["train"]["amp"] = False
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))

    worker_log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "omni-cpu"], env=env, cwd=ROOT,
                              stdout=worker_log, stderr=subprocess.STDOUT)
    try:
        run = _prefect(env, "deployment", "run", "omnisource/omnisource-cpu", "--param",
                       f"config_path={cfg_path}", "--watch", "--watch-timeout", "900", timeout=960)
        runs = _flow_runs(url)
        parent = next(r for r in runs if r["name"] and r.get("deployment_id") and r["parameters"].get("config_path")
                      == str(cfg_path))
        assert parent["state_type"] == "COMPLETED", (run.stdout + run.stderr)[-3000:] + \
            (tmp_path / "worker.log").read_text()[-3000:]
        # every stage ran as its own subflow run, and the library's log lines reached the API
        stage_runs = [r for r in runs if r.get("parent_task_run_id")]
        flows = {f["id"]: f["name"] for f in _api(url, "/flows/filter", {})}
        assert {"ingest", "extract", "teacher", "score", "filter", "manifest", "train", "evaluate"} <= \
            {flows[r["flow_id"]] for r in stage_runs if r["state_type"] == "COMPLETED"}
        logs = _logs(url, [r["id"] for r in runs])
        assert any(entry["name"].startswith("omni") for entry in logs), \
            f"library logs did not reach the UI: {sorted({e['name'] for e in logs})}"
        assert parent["name"].startswith("omnisource · ")  # run names say what ran on what
        artifacts = {a["key"]: a for a in _api(url, "/artifacts/filter", {}) if a.get("key")}
        assert "omnisource-report" in artifacts and "progress-train-omnisource" in artifacts
        # every stage's counts as a table, and the pictures a user looks at
        for stage in ("ingest", "extract", "teacher", "score", "filter", "manifest", "train", "evaluate"):
            assert artifacts[f"{stage}-counts"]["type"] == "table", stage
        ingest_rows = json.loads(artifacts["ingest-counts"]["data"])
        assert {r["unit"] for r in ingest_rows} >= {"ingest/target", "ingest/web_images"}
        assert sum(r["failed"] for r in ingest_rows) > 0  # the demo's planted bad files are counted
        for key in ("filter-kept-vs-rejected-web-images", "train-omnisource-training-curve",
                    "evaluate-omnisource-confusion-matrix"):
            assert "](data:image/jpeg;base64," in artifacts[key]["data"], key
        assert "| baseline |" in artifacts["omnisource-report"]["data"]  # a markdown table, not a code block

        # the run form has typed fields, and a value out of bounds is refused before any run starts
        dep = next(d for d in _api(url, "/deployments/filter", {}) if d["name"] == "omnisource-cpu")
        schema = dep["parameter_openapi_schema"]
        fields = schema["definitions"]["RunSettings"]["properties"]
        assert {"workdir", "seed", "student_steps", "teacher_steps", "device", "threads", "keep_fraction",
                "require_top1"} <= set(fields)
        n_runs = len(_flow_runs(url))
        bad_param = _prefect(env, "deployment", "run", "omnisource/omnisource-cpu", "--params",
                             json.dumps({"config_path": str(cfg_path), "settings": {"keep_fraction": 2}}))
        assert bad_param.returncode != 0 and len(_flow_runs(url)) == n_runs, bad_param.stdout[-2000:]

        # one stage deployment ad hoc: a cache hit now
        run = _prefect(env, "deployment", "run", "filter/filter", "--param", f"config_path={cfg_path}", "--watch",
                       "--watch-timeout", "300", timeout=360)
        adhoc = [r for r in _flow_runs(url) if flows.get(r["flow_id"]) == "filter" and r.get("deployment_id")]
        assert adhoc and adhoc[0]["state_type"] == "COMPLETED", run.stdout[-2000:]
        tasks = _api(url, "/task_runs/filter", {"flow_runs": {"id": {"any_": [adhoc[0]["id"]]}}})
        assert [t["state_name"] for t in tasks] == ["Cached"]  # a cache hit shows as such

        # a bad config fails fast, says why in the run's logs, and is not retried
        bad = tmp_path / "bad.yaml"
        bad.write_text(cfg_path.read_text() + "\nfilter: {min_scor: 0.3}\n")
        t0 = time.time()
        _prefect(env, "deployment", "run", "omnisource/omnisource-cpu", "--param", f"config_path={bad}", "--watch",
                 "--watch-timeout", "300", timeout=360)
        failed = next(r for r in _flow_runs(url) if r["parameters"].get("config_path") == str(bad))
        assert failed["state_type"] == "FAILED" and failed["run_count"] == 1
        assert time.time() - t0 < 240
        logs = _logs(url, [failed["id"]])
        assert any("min_scor: unknown key" in entry["message"] for entry in logs)

        # Cancel (the UI's button, here through the CLI) stops training promptly, keeps its checkpoint,
        # and the next run resumes from it (the pipeline: everything before training is a cache hit)
        params = json.dumps({"config_path": str(cfg_path), "settings": {"student_steps": 200000}})
        ckpt = Path(cfg["workdir"]) / "train" / "baseline" / "checkpoint.pth"
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
        started = _prefect(env, "deployment", "run", "omnisource/omnisource-cpu", "--params", params)
        assert started.returncode == 0, started.stdout + started.stderr
        run_id = _run_id(started.stdout)
        _wait(lambda: ckpt.exists() and ckpt.stat().st_mtime_ns > before, 300, "a new training checkpoint")
        cancel = _prefect(env, "flow-run", "cancel", run_id)
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        t0 = time.time()  # the request is in: from here on it is omni's and the worker's time
        _wait(lambda: _api(url, f"/flow_runs/{run_id}")["state_type"] == "CANCELLED", 120, "the run cancelled")
        cancel_s = time.time() - t0
        print(f"cancel requested -> run Cancelled in {cancel_s:.1f} s")
        assert cancel_s < 30
        _wait(lambda: any("checkpoint kept at step" in e["message"] for e in _logs(url, _ids(url))), 30,
              "the stopped run's checkpoint line:\n" + (tmp_path / "worker.log").read_text()[-4000:])
        again = _prefect(env, "deployment", "run", "omnisource/omnisource-cpu", "--params", params)
        rerun_id = _run_id(again.stdout)
        _wait(lambda: any("resuming from step" in e["message"] for e in _logs(url, _ids(url))), 300,
              "the rerun resuming from the checkpoint")
        _prefect(env, "flow-run", "cancel", rerun_id)
        _wait(lambda: _api(url, f"/flow_runs/{rerun_id}")["state_type"] in ("CANCELLED", "CRASHED", "FAILED"), 120,
              "the rerun cancelled")
    finally:
        _stop(worker)  # SIGINT: the worker ignores SIGTERM
        worker_log.close()
