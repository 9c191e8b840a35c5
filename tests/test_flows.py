"""The tiny demo through the real Prefect flows, on a temporary local Prefect server."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.e2e  # runs stages end to end: the slow tier (`pytest -m "not e2e"` skips it)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    results = tmp_path_factory.mktemp("prefect-results")
    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(results)}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


def test_tiny_demo_through_prefect_flows(prefect_server, tmp_path, capsys):
    from flows.cli import main

    assert main(["demo", "--tiny", "--workdir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "omnisource" in out and "web data worth" in out
    run = tmp_path / "demo" / "run"
    web = pd.read_parquet(run / "manifest" / "web_items.parquet")
    assert {"kept", "filtered", "failed", "duplicate", "leak"} <= set(web["status"])
    for name in ("baseline", "omnisource"):
        metrics = json.loads((run / "eval" / name / "metrics.json").read_text())
        # every val clip judged once, and the figure printed is the one the confusion matrix implies
        confusion = [[int(c) for c in row] for row in metrics["confusion"]]
        judged = sum(map(sum, confusion))
        assert judged == metrics["num_samples"] > 0 and len(confusion) == len(metrics["class_names"])
        assert metrics["top1"] == pytest.approx(sum(confusion[i][i] for i in range(len(confusion))) / judged)
        assert any(line.split()[:2] == [name, f"{100 * metrics['top1']:.1f}%"] for line in out.splitlines())
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["ground_truth"]["leaks_found"] == report["ground_truth"]["leaks_planted"]

    # one stage alone, as its own flow: a cache hit this time
    from flows.stages import filter_flow

    res = filter_flow(str(tmp_path / "demo" / "config.yaml"))
    assert [r.stage for r in res] == ["filter"] and res[0].cached


def test_bad_config_is_a_clear_message_not_a_traceback(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("workdir: w\nclasses: [a]\ntarget: {train: t.csv, val: v.csv}\ntrain: {epochz: 3}\n")
    p = subprocess.run([sys.executable, "-m", "omni", "run", str(cfg)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2
    assert "train.epochz: unknown key" in p.stderr and "Traceback" not in p.stderr


def test_the_library_never_imports_prefect():
    code = "import sys, omni.pipeline, omni.fetching.ingest, omni.video.extract, omni.learning.teacher, omni.learning.score, omni.selection.filter, " \
           "omni.selection.manifest, omni.learning.train, omni.learning.evaluate, omni.reporting.report; " \
           "print('prefect' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.stdout.strip() == "False", p.stderr


def test_every_deployment_in_prefect_yaml_points_at_a_flow():
    import importlib

    import yaml
    from prefect import Flow

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert spec["deployments"]
    for dep in spec["deployments"]:
        module, func = dep["entrypoint"].split(":")
        obj = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), func)
        assert isinstance(obj, Flow), dep["name"]
        assert set(dep["parameters"]) <= set(obj.parameters.properties), dep["name"]
        assert dep["work_pool"]["name"] in ("omni-cpu", "omni-gpu")


def test_user_errors_are_not_retried_but_transient_ones_are():
    from flows.stages import _retry_unless_user_error
    from omni.fetching.lists import ListError

    class State:
        def __init__(self, exc):
            self.exc = exc

        def result(self, raise_on_failure=True):
            return self.exc

    assert not _retry_unless_user_error(None, None, State(ListError("list not found: x")))
    assert _retry_unless_user_error(None, None, State(OSError("disk hiccup")))


def test_run_form_fields_become_overrides_and_bad_values_are_refused():
    import pydantic

    from flows.params import RunSettings, all_overrides
    from omni.config import load_config

    s = RunSettings(student_steps=40, teacher_steps=30, require_top1=True, keep_fraction=0.3, threads=1)
    assert all_overrides(["train.model.lr=0.01"], s) == [
        "train.model.steps=40", "teacher.image.steps=30", "teacher.video.steps=30", "train.threads=1",
        "filter.keep_fraction=0.3", "filter.require_top1=true", "train.model.lr=0.01"]
    assert all_overrides(None, None) == [] and RunSettings().overrides() == []
    for bad in ({"keep_fraction": 2}, {"student_steps": 0}, {"device": "tpu"}, {"epochs": 3}):
        with pytest.raises(pydantic.ValidationError):
            RunSettings(**bad)
    cfg = load_config(ROOT / "configs" / "example.yaml", all_overrides([], s))
    assert cfg.train.model.steps == 40 and cfg.teacher.video.steps == 30 and cfg.filter.require_top1 is True
