"""``omni ablate``: the ablation table from one set of cached stages, cached itself."""
import json

import pandas as pd
import pytest

from omni import pipeline
from omni.pipeline.ablate import run_ablation, variants
from omni.config import load_config

from omni_testing import write_config

pytestmark = pytest.mark.e2e  # runs stages end to end: the slow tier (`pytest -m "not e2e"` skips it)


@pytest.fixture(scope="module")
def ablated(tmp_path_factory, tiny_world):
    cfg = load_config(write_config(tmp_path_factory.mktemp("ablate"), tiny_world))
    for stage in ("ingest", "extract", "teacher", "score", "filter", "manifest"):
        pipeline.run_stage(cfg, stage)
    return cfg, run_ablation(cfg, pipeline.Keys(cfg), seeds=2)


def test_every_variant_is_trained_per_seed_and_reported(ablated):
    cfg, table = ablated
    names = [v.name for v in variants(cfg)]
    assert names[:5] == ["target-only", "plus-web_images", "plus-web_videos", "plus-untrimmed", "all"]
    assert {"unfiltered", "no-resampling", "pseudo-clip-replicate", "mixup", "small-loss", "web-batch-x2"} <= set(names)
    assert len(table) == 2 * len(names) and table["top1"].between(0, 1).all()
    rows = table.groupby("variant")["train_rows"].first()
    train = pd.read_parquet(cfg.workdir / "manifest" / "train.parquet")
    assert rows["target-only"] == (train["source"] == "target").sum()
    assert rows["all"] == len(train)
    assert rows["unfiltered"] > rows["all"]  # the samples the teacher rejected are back
    assert rows["plus-web_images"] < rows["all"]
    out = cfg.workdir / "ablation"
    md = (out / "ablation.md").read_text()
    assert "| target-only | target only | 2 |" in md and "±" in md
    assert len(pd.read_csv(out / "ablation.csv")) == len(table)
    assert (out / "ablation.png").stat().st_size > 1000


def test_a_second_ablation_recomputes_nothing(ablated):
    cfg, table = ablated
    markers = sorted((cfg.workdir / "ablation").glob("*/seed-*/_done.json"))
    before = {p: p.stat().st_mtime_ns for p in markers}
    again = run_ablation(cfg, pipeline.Keys(cfg), seeds=2)
    assert {p: p.stat().st_mtime_ns for p in markers} == before
    pd.testing.assert_frame_equal(again, table)


def test_the_cli_prints_the_table(ablated, capsys):
    import logging

    from flows.cli import main

    cfg, _ = ablated
    path = cfg.workdir.parent / "config.yaml"
    handlers = logging.root.handlers[:]
    try:
        assert main(["ablate", str(path), "--seeds", "2", "--no-prefect"]) == 0
    finally:  # the CLI's log handler writes to this test's captured stream: not past the test
        logging.root.handlers[:] = handlers
    out = capsys.readouterr().out
    assert "| all | target + all sources, the teacher's selection (omni's first round) | 2 |" in out
    summary = json.loads((cfg.workdir / "ablation" / "summary.json").read_text())
    assert [r["variant"] for r in summary][0] == "target-only"


def test_a_web_only_setting_keeps_the_target_only_unit_and_changes_the_others(ablated):
    from omni.pipeline.ablate import _unit_key

    cfg, _ = ablated
    keys = pipeline.Keys(cfg)
    by_name = {v.name: v for v in variants(cfg)}
    changed = cfg.train.model_copy(update={"aux_drop": 0.3})
    for name, same in (("target-only", True), ("all", False)):
        v = by_name[name]
        assert (_unit_key(cfg, keys, v, cfg.train) == _unit_key(cfg, keys, v, changed)) is same
