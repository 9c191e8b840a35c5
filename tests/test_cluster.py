"""Ingest, extract and score on a Dask cluster (a LocalCluster of 2 worker processes on
127.0.0.1) give the same outputs as one process, and a rerun does only unfinished shards."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from omni import pipeline
from omni.config import load_config
from omni.video.framestore import FrameStore

from omni_testing import write_config

pytestmark = pytest.mark.e2e  # runs stages end to end: the slow tier (`pytest -m "not e2e"` skips it)

distributed = pytest.importorskip("distributed")

WEB = ("web_images", "web_videos", "untrimmed")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, worker_dashboard_address=None) as c:
        yield c.scheduler_address


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_world, cluster):
    """The same config run up to scoring in one process and on the cluster (the teachers,
    which train in one process either way, are copied so that only the fan-out differs)."""
    small_shards = {"shard_items": 5}
    one = load_config(write_config(tmp_path_factory.mktemp("one"), tiny_world, cluster=small_shards))
    many = load_config(write_config(tmp_path_factory.mktemp("many"), tiny_world,
                                    cluster={**small_shards, "scheduler_address": cluster}))
    for stage in ("ingest", "extract", "teacher", "score"):
        pipeline.run_stage(one, stage)
    for stage in ("ingest", "extract"):
        pipeline.run_stage(many, stage)
    for kind in pipeline.teacher_kinds(one):
        shutil.copytree(one.workdir / "teacher" / kind, many.workdir / "teacher" / kind)
    pipeline.run_stage(many, "score")
    return one, many


def _table(cfg, unit, name, drop=()):
    df = pd.read_parquet(cfg.workdir / unit / name)
    return df.drop(columns=[c for c in drop if c in df.columns]).reset_index(drop=True)


def test_the_cluster_ran_the_shards_and_keys_ignore_where_work_ran(two_runs):
    one, many = two_runs
    assert pipeline.Keys(one)["score/web_videos"] == pipeline.Keys(many)["score/web_videos"]
    done = json.loads((many.workdir / "score" / "web_images" / "_done.json").read_text())
    assert done["shards"] >= 2 and done["shards_this_run"] == done["shards"]


def test_ingest_on_the_cluster_gives_the_same_items(two_runs):
    one, many = two_runs
    for src in WEB:
        a, b = (_table(c, f"ingest/{src}", "items.parquet", drop=("path",)) for c in two_runs)
        pd.testing.assert_frame_equal(a, b)
        # stored downloads are named by content: the same file names under each workdir
        pa, pb = (_table(c, f"ingest/{src}", "items.parquet")["path"] for c in two_runs)
        assert [str(x).rsplit("/", 1)[-1] for x in pa] == [str(x).rsplit("/", 1)[-1] for x in pb]


def test_extract_on_the_cluster_gives_the_same_samples_and_frames(two_runs):
    one, many = two_runs
    for unit in ("extract/target",) + tuple(f"extract/{s}" for s in WEB):
        a, b = (_table(c, unit, "samples.parquet") for c in two_runs)
        pd.testing.assert_frame_equal(a.drop(columns=["shard"]), b.drop(columns=["shard"]))
        sa, sb = FrameStore(one.workdir), FrameStore(many.workdir)
        ok = a["extract_status"] == "ok"
        for ra, rb in zip(a[ok].to_dict("records"), b[ok].to_dict("records")):
            assert np.array_equal(np.asarray(sa.read_row(ra)), np.asarray(sb.read_row(rb))), ra["sample_id"]


def test_score_on_the_cluster_gives_the_same_scores(two_runs):
    for src in WEB:
        a, b = (_table(c, f"score/{src}", "scores.parquet") for c in two_runs)
        assert len(a) > 5 and a["sample_id"].tolist() == b["sample_id"].tolist()
        assert a["teacher_label"].tolist() == b["teacher_label"].tolist()
        np.testing.assert_allclose(a["teacher_score"], b["teacher_score"], atol=1e-5)
        np.testing.assert_allclose(np.stack(a["teacher_probs"]), np.stack(b["teacher_probs"]), atol=1e-5)


def test_a_rerun_on_the_cluster_redoes_only_unfinished_shards(two_runs, cluster):
    _, many = two_runs
    d = many.workdir / "score" / "web_images"
    parts = sorted((d / "parts").glob("score-*.parquet"))
    before = {p.name: p.stat().st_mtime_ns for p in parts}
    lost = parts[1]
    lost.unlink()  # as if the worker scoring it died with the cluster
    (d / "_done.json").unlink()
    r = pipeline.run_unit(many, "score/web_images")
    assert not r.cached and r.info["shards_this_run"] == 1
    after = {p.name: p.stat().st_mtime_ns for p in (d / "parts").glob("score-*.parquet")}
    assert set(after) == set(before)
    assert all(after[n] == t for n, t in before.items() if n != lost.name)


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path, tiny_world):
    from omni.runtime.fanout import FanoutError

    cfg = load_config(write_config(tmp_path, tiny_world, cluster={"scheduler_address": "tcp://127.0.0.1:9"}))
    pipeline.run_unit(cfg, "ingest/target")
    with pytest.raises(FanoutError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        pipeline.run_unit(cfg, "ingest/web_images")


def test_parts_cut_with_another_shard_size_are_not_reused(two_runs):
    from omni.config import ClusterConfig

    one, _ = two_runs
    d = one.workdir / "score" / "web_videos"
    before = pd.read_parquet(d / "scores.parquet")
    (d / "_done.json").unlink()
    recut = one.model_copy(update={"cluster": ClusterConfig(shard_items=3)})
    r = pipeline.run_unit(recut, "score/web_videos")
    assert r.info["shards_this_run"] == r.info["shards"] > 2  # every shard scored again, none mixed in
    after = pd.read_parquet(d / "scores.parquet")
    assert after["sample_id"].tolist() == before["sample_id"].tolist()
    np.testing.assert_allclose(after["teacher_score"], before["teacher_score"], atol=1e-5)
