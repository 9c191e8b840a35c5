"""Kill -9 during ingestion and during training, run again: work continues, nothing is lost."""
import functools
from collections import Counter
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from omni.config import load_config
from omni.demo.world import served_lists

from omni_testing import write_config

pytestmark = pytest.mark.e2e  # runs stages end to end: the slow tier (`pytest -m "not e2e"` skips it)

ROOT = Path(__file__).resolve().parents[1]


class SlowHandler(SimpleHTTPRequestHandler):
    requests: list = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        SlowHandler.requests.append(self.path)
        time.sleep(0.08)
        try:
            super().do_GET()
        except (BrokenPipeError, ConnectionResetError):  # the client was killed mid-transfer
            pass


@pytest.fixture()
def slow_server(tiny_world):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SlowHandler, directory=str(tiny_world)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    SlowHandler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _omni(*args):
    return subprocess.Popen([sys.executable, "-m", "omni", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _wait_for(pred, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _served_config(tmp_path, world, url, name):
    served_lists(world, url, tmp_path / f"crawl-{name}")
    crawl = tmp_path / f"crawl-{name}"
    (tmp_path / name).mkdir()
    cfg = write_config(tmp_path / name, world, ingest={"workers": 2, "allow_private_addresses": True})
    import yaml

    data = yaml.safe_load(cfg.read_text())
    for s in data["sources"]:
        s["list"] = str(crawl / Path(s["list"]).name)
    cfg.write_text(yaml.safe_dump(data))
    return cfg


COMPARE = ["item_id", "url", "status", "reason", "sha256", "nbytes", "file_type", "leak_of"]


def test_kill_during_ingest_then_rerun_matches_an_uninterrupted_run(tmp_path, tiny_world, slow_server):
    ref_cfg = _served_config(tmp_path, tiny_world, slow_server, "ref")
    p = _omni("ingest", str(ref_cfg), "--no-prefect")
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    reference = pd.concat([pd.read_parquet(p) for p in sorted((load_config(ref_cfg).workdir / "ingest").glob("*/items.parquet"))])
    assert reference["url"].duplicated().any()  # the world lists some URLs twice...
    assert max(Counter(SlowHandler.requests).values()) == 1  # ...and each URL is fetched once

    cfg_path = _served_config(tmp_path, tiny_world, slow_server, "killed")
    cfg = load_config(cfg_path)
    p = _omni("ingest", str(cfg_path), "--no-prefect")
    jfile = lambda: next(iter((cfg.workdir / "ingest" / "web_images").glob("journal/*/journal.jsonl")), None)  # noqa: E731
    assert _wait_for(lambda: jfile() is not None and len(jfile().read_text().splitlines()) >= 10)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done_before = {json.loads(ln)["url"] for ln in jfile().read_text().splitlines() if ln.strip().endswith("}")}
    SlowHandler.requests = []
    p = _omni("ingest", str(cfg_path), "--no-prefect")
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    fetched = Counter(slow_server + r for r in SlowHandler.requests)
    # a URL finished before the kill is never fetched again; an unfinished one once
    assert not set(fetched) & done_before, f"fetched again after the kill: {sorted(set(fetched) & done_before)[:5]}"
    assert max(fetched.values()) == 1
    assert sum(fetched.values()) > 0
    assert not list((cfg.workdir / "ingest").glob("*/tmp/.part-*"))
    out = pd.concat([pd.read_parquet(p) for p in sorted((cfg.workdir / "ingest").glob("*/items.parquet"))])
    pd.testing.assert_frame_equal(out[COMPARE].reset_index(drop=True), reference[COMPARE].reset_index(drop=True))


@pytest.fixture(scope="module")
def ready_to_train(tmp_path_factory, tiny_world):
    """A config whose stages up to the manifest are done (in this process: fast)."""
    from omni import pipeline

    tmp = tmp_path_factory.mktemp("train-resume")
    cfg_path = write_config(tmp, tiny_world, train={"baseline": False, "amp": False})
    cfg = load_config(cfg_path)
    for stage in ("ingest", "extract", "teacher", "score", "filter", "manifest"):
        pipeline.run_stage(cfg, stage)
    return cfg_path, cfg.workdir / "train" / "omnisource"


def test_kill_during_training_resumes_from_the_checkpoint(ready_to_train):
    cfg_path, run_dir = ready_to_train
    sets = ["--set", "train.model.steps=120", "--set", "train.checkpoint_every_steps=5"]
    p = _omni("train", str(cfg_path), "--no-prefect", *sets)
    assert _wait_for(lambda: (run_dir / "checkpoint.pth").exists(), timeout=300)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (run_dir / "_done.json").exists()
    p = _omni("train", str(cfg_path), "--no-prefect", *sets)
    assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-2000:]
    info = json.loads((run_dir / "_done.json").read_text())
    assert 0 < info["resumed_from_step"] < info["steps"]


def test_sigterm_during_training_stops_within_seconds_keeps_the_checkpoint_and_resumes(ready_to_train):
    cfg_path, run_dir = ready_to_train
    sets = ["--set", "train.model.steps=300", "--set", "train.checkpoint_every_steps=100000"]
    p = subprocess.Popen([sys.executable, "-m", "omni", "train", str(cfg_path), "--no-prefect", *sets], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:  # wait until training has made some steps (steps, not seconds)
        if "omnisource step" in line and int(line.split("step ")[1].split("/")[0]) >= 60:
            break
    p.send_signal(signal.SIGTERM)
    t0 = time.time()
    rc = p.wait(timeout=60)
    assert time.time() - t0 < 10 and rc == 143
    assert "run the same command again to resume" in p.stderr.read()
    assert (run_dir / "checkpoint.pth").exists() and not (run_dir / "_done.json").exists()
    p = _omni("train", str(cfg_path), "--no-prefect", *sets)
    assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-2000:]
    info = json.loads((run_dir / "_done.json").read_text())
    assert info["resumed_from_step"] >= 60
