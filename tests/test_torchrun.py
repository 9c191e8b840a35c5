"""Training and scoring under ``torchrun`` (2 processes, gloo on CPU): the ranks together draw
exactly the single process's batches (class resampling kept), rank 0 records, results have the
same form, a killed job resumes from rank 0's checkpoint, and ranked scoring equals one process."""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import BatchSampler, RandomSampler, WeightedRandomSampler

from omni import cache, pipeline
from omni.config import load_config
from omni.learning.data import resampling_weights
from omni.runtime.ranks import Ranks
from omni.learning.train import RankSlices

from omni_testing import write_config

pytestmark = pytest.mark.e2e  # runs stages end to end: the slow tier (`pytest -m "not e2e"` skips it)


def _batches(sampler_factory, batch, drop_last, world):
    single = list(BatchSampler(sampler_factory(), batch, drop_last))
    per_rank = [list(RankSlices(BatchSampler(sampler_factory(), batch, drop_last), Ranks(r, world)))
                for r in range(world)]
    return single, per_rank


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_together_draw_exactly_the_single_process_batches(world):
    n = 23
    single, per_rank = _batches(lambda: RandomSampler(range(n), generator=torch.Generator().manual_seed(4)),
                                8, False, world)
    assert all(len(p) == len(single) for p in per_rank)  # the same number of steps on every rank
    for step, batch in enumerate(single):
        assert sorted(i for p in per_rank for i in p[step]) == sorted(batch)


def test_class_resampling_is_the_same_under_ranks():
    labels = np.array([0] * 40 + [1] * 10 + [2] * 2)
    w = torch.as_tensor(resampling_weights(labels, 0.5, None), dtype=torch.double)

    def sampler():
        return WeightedRandomSampler(w, num_samples=len(labels), replacement=True,
                                     generator=torch.Generator().manual_seed(1))

    single, per_rank = _batches(sampler, 6, False, 2)
    drawn_single = np.bincount(labels[[i for b in single for i in b]], minlength=3)
    drawn_ranks = np.bincount(labels[[i for p in per_rank for b in p for i in b]], minlength=3)
    assert drawn_ranks.tolist() == drawn_single.tolist()  # not merely the same expectation: the same draws


@pytest.fixture(scope="module")
def ready(tmp_path_factory, tiny_world):
    """A workdir with every stage before training done, in one process."""
    tmp = tmp_path_factory.mktemp("ddp")
    # a video teacher recipe unlike the students': the baseline then trains itself (under torchrun
    # too) instead of reusing the teacher's model
    cfg_path = write_config(tmp, tiny_world, train={"checkpoint_every_steps": 5},
                            teacher={"video": {"steps": 5, "width": 8, "input_size": 32, "batch_size": 8}})
    cfg = load_config(cfg_path)
    for stage in ("ingest", "extract", "teacher", "score", "filter", "manifest"):
        pipeline.run_stage(cfg, stage)
    return cfg_path, cfg


def _torchrun(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                             "--master-addr", "127.0.0.1", "--master-port", str(29400 + os.getpid() % 500),
                             "-m", "omni", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, **kw)


def _kill_all(proc):
    import psutil

    family = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)
    proc.wait()
    proc.stdout.close()


def test_torchrun_trains_both_students_with_results_of_the_same_form(ready, tmp_path):
    cfg_path, cfg = ready
    pipeline.run_stage(cfg, "train")  # one process, for comparison
    # the first-round student is kept: the second round's selection is then the same, whereas a
    # first round retrained by two ranks (another order of gradient sums, bf16 on some CPUs) may
    # flip a borderline web sample (the resume test below trains it under torchrun)
    shutil.copytree(cfg.workdir, tmp_path / "work",
                    ignore=shutil.ignore_patterns("baseline", "omnisource", "eval", ".omni-lock"))
    ddp_cfg_path = tmp_path / "config.yaml"
    ddp_cfg_path.write_text(cfg_path.read_text().replace(str(cfg.workdir), str(tmp_path / "work")))
    proc = _torchrun(["train", str(ddp_cfg_path)])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "train/omnisource: done (2 ranks)" in out
    ddp = load_config(ddp_cfg_path)
    for run in ("baseline", "omnisource"):
        one = json.loads((cfg.workdir / "train" / run / "summary.json").read_text())
        two = json.loads((ddp.workdir / "train" / run / "summary.json").read_text())
        assert set(one) == set(two) and one["world_size"] == 1 and two["world_size"] == 2
        assert two["steps"] == one["steps"] and two["clips_seen"] == one["clips_seen"]  # the same samples in all
        assert two["aux_units"] == one["aux_units"]
        assert cache.is_done(ddp.workdir / "train" / run, pipeline.Keys(ddp)[f"train/{run}"])
    r = pipeline.run_stage(ddp, "evaluate")  # the model rank 0 wrote is a normal model
    assert all(not x.cached for x in r)
    m = json.loads((ddp.workdir / "eval" / "omnisource" / "metrics.json").read_text())
    assert m["num_samples"] == 12


def test_a_killed_torchrun_job_resumes_from_rank_0s_checkpoint(ready, tmp_path):
    cfg_path, cfg = ready
    shutil.copytree(cfg.workdir, tmp_path / "work", ignore=shutil.ignore_patterns("train", "eval", ".omni-lock"))
    path = tmp_path / "config.yaml"
    path.write_text(cfg_path.read_text().replace(str(cfg.workdir), str(tmp_path / "work")))
    args = ["train", str(path), "--set", "train.model.steps=3000", "--set", "train.baseline=false"]
    proc = _torchrun(args)
    ckpt = tmp_path / "work" / "train" / "first_round" / "checkpoint.pth"  # the default's first student
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=False)["step"] >= 10:
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    _kill_all(proc)  # every rank and the launcher, no goodbye: as if the machine went away
    step = torch.load(ckpt, weights_only=False)["step"]
    again = _torchrun(args)
    deadline = time.time() + 120
    lines = []
    while time.time() < deadline:
        line = again.stdout.readline()
        lines.append(line)
        if "resuming from step" in line or not line:
            break
    _kill_all(again)
    resumed = [x for x in lines if "resuming from step" in x]
    assert resumed, "".join(lines)[-3000:]
    assert int(resumed[0].split("resuming from step ")[1].split("/")[0]) >= step


def test_scoring_shards_over_ranks_gives_the_single_process_scores(ready, tmp_path):
    cfg_path, cfg = ready
    shutil.copytree(cfg.workdir, tmp_path / "work", ignore=shutil.ignore_patterns("score", "filter", "manifest",
                                                                                  "train", "eval", ".omni-lock"))
    path = tmp_path / "config.yaml"
    path.write_text(cfg_path.read_text().replace(str(cfg.workdir), str(tmp_path / "work")))
    proc = _torchrun(["score", str(path), "--set", "cluster.shard_items=4"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    for src in ("web_images", "web_videos", "untrimmed"):
        a = pd.read_parquet(cfg.workdir / "score" / src / "scores.parquet")
        b = pd.read_parquet(tmp_path / "work" / "score" / src / "scores.parquet")
        assert a["sample_id"].tolist() == b["sample_id"].tolist()
        assert a["teacher_label"].tolist() == b["teacher_label"].tolist()
        np.testing.assert_allclose(a["teacher_score"], b["teacher_score"], atol=1e-5)
        done = json.loads((tmp_path / "work" / "score" / src / "_done.json").read_text())
        assert done["shards"] >= 2


def test_the_pipelines_train_stage_starts_torchrun_itself(ready, tmp_path):
    """train.nproc_per_node: 2 on an ordinary run (a Prefect GPU worker's case): the stage runs its
    ranks as a child torchrun job and records the unit itself."""
    cfg_path, cfg = ready
    shutil.copytree(cfg.workdir, tmp_path / "work", ignore=shutil.ignore_patterns("train", "eval", ".omni-lock"))
    path = tmp_path / "config.yaml"
    path.write_text(cfg_path.read_text().replace(str(cfg.workdir), str(tmp_path / "work")))
    ranked = load_config(path, ["train.nproc_per_node=2"])
    results = pipeline.run_stage(ranked, "train")
    assert [r.stage for r in results] == ["train/baseline", "train/first_round", "train/omnisource"]
    for r in results:
        summary = json.loads((ranked.workdir / r.stage / "summary.json").read_text())
        assert summary["world_size"] == 2 and r.info["world_size"] == 2
        assert (ranked.workdir / r.stage / "model.pt").exists()
    assert all(r.cached for r in pipeline.run_stage(ranked, "train"))
    assert pipeline.Keys(ranked)["train/omnisource"] == pipeline.Keys(load_config(path))["train/omnisource"]
