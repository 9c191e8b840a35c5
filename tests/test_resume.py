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


def _copy_of_the_run(cfg_path: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The same config over a copy of its workdir (the keys do not depend on where it is)."""
    import shutil

    import yaml

    cfg = yaml.safe_load(cfg_path.read_text())
    shutil.copytree(cfg["workdir"], tmp_path / "work")
    cfg["workdir"] = str(tmp_path / "work")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "config.yaml", tmp_path / "work"


def _same_weights(a: Path, b: Path) -> bool:
    import torch

    x, y = torch.load(a, weights_only=False), torch.load(b, weights_only=False)
    return x["model"].keys() == y["model"].keys() and all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"])


def test_kill_during_training_resumes_from_the_checkpoint_to_the_uninterrupted_model(ready_to_train, tmp_path):
    """SIGKILL mid-training, then the same command: it resumes from the last checkpoint and ends
    with the model, tensor for tensor, of a run that was never interrupted (the checkpoint keeps
    the data streams' positions, the augmentations' visit counters and the random states)."""
    cfg_path, run_dir = ready_to_train
    sets = ["--set", "train.model.steps=120", "--set", "train.checkpoint_every_steps=5"]
    ref_cfg, ref_work = _copy_of_the_run(cfg_path, tmp_path)
    p = _omni("train", str(ref_cfg), "--no-prefect", *sets)
    assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-2000:]
    p = _omni("train", str(cfg_path), "--no-prefect", *sets)
    assert _wait_for(lambda: (run_dir / "checkpoint.pth").exists(), timeout=300)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (run_dir / "_done.json").exists()
    p = _omni("train", str(cfg_path), "--no-prefect", *sets)
    assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-2000:]
    info = json.loads((run_dir / "_done.json").read_text())
    assert 0 < info["resumed_from_step"] < info["steps"]
    for run in ("first_round", "omnisource"):
        assert _same_weights(ref_work / "train" / run / "model.pt", run_dir.parent / run / "model.pt"), run


def test_a_run_stopped_mid_epoch_resumes_to_exactly_the_uninterrupted_model(ready_to_train, tmp_path):
    """In process, with two web sources and mixup: stopped at step 13 of 30 (mid-epoch), then
    resumed with fresh datasets (as a new process would), the model equals the uninterrupted one."""
    from omni.config import ModelConfig
    from omni.learning.data import ClipDataset
    from omni.learning.train import JointOptions, fit
    from omni.runtime.cancel import Cancelled

    work = load_config(ready_to_train[0]).workdir
    rows = pd.read_parquet(work / "manifest" / "train.parquet")
    m = ModelConfig(arch="c3d_small", width=4, input_size=24, num_frames=4, steps=30, batch_size=16)
    joint = JointOptions(aux_batch_size=4, mixup_alpha=0.2)

    def train(out, should_stop=None):
        target = ClipDataset.for_model(rows[rows["source"] == "target"], work, m, train=True)
        web = {s: ClipDataset.for_model(g, work, m, train=True)
               for s, g in rows[rows["source"] != "target"].groupby("source")}
        assert len(web) >= 2
        return fit(m, list("abcd"), target, out, "k", aux=web, joint=joint, amp=False, should_stop=should_stop)

    train(tmp_path / "uninterrupted")
    steps = iter(range(1, 100))
    with pytest.raises(Cancelled, match="stopped at step 13/30"):
        train(tmp_path / "stopped", should_stop=lambda: next(steps) >= 13)
    assert train(tmp_path / "stopped")["resumed_from_step"] == 13
    assert _same_weights(tmp_path / "uninterrupted" / "model.pt", tmp_path / "stopped" / "model.pt")


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
