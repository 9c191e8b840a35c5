"""The world zoo's knobs on the demo-world generator (no training here)."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from omni.demo.world import (ZOO, WorldSpec, class_names, generate_world, ground_truth_report, siblings,
                             tiny_spec, zoo_spec)


def test_default_classes_unchanged():
    assert class_names(WorldSpec()) == ["disc_slide", "disc_bounce", "square_slide", "square_bounce",
                                        "triangle_slide", "triangle_bounce"]
    assert class_names(tiny_spec()) == ["disc_slide", "disc_bounce", "square_slide", "square_bounce"]


@pytest.mark.parametrize("n", [6, 7, 10, 12])
def test_num_classes(n):
    names = class_names(WorldSpec(num_classes=n))
    assert len(names) == len(set(names)) == n
    assert names[:6] == class_names(WorldSpec())


def test_num_classes_out_of_range():
    with pytest.raises(ValueError):
        class_names(WorldSpec(num_classes=13))


def test_siblings_share_shape_or_motion():
    names = class_names(WorldSpec(num_classes=10))
    for name in names:
        sib = siblings(name, names)
        assert sib and name not in sib
        for s in sib:
            assert s.split("_")[0] == name.split("_")[0] or s.split("_")[1] == name.split("_")[1]


def test_zoo_specs_valid():
    assert len(ZOO) >= 6
    for name in ZOO:
        spec = zoo_spec(name, seed=1)
        assert 6 <= len(class_names(spec)) <= 12
        assert 0.2 <= spec.noise_rate <= 0.6 and 3 <= spec.train_per_class <= 10


@pytest.fixture(scope="module")
def zoo_world(tmp_path_factory):
    spec = replace(zoo_spec("c10_t5_n50", seed=3), train_per_class=1, val_per_class=1, web_per_query=12,
                   untrimmed_per_class=1, untrimmed_s=4.0, size=32, val_leaks=2, noise_rate=0.5,
                   sibling_share=0.5)
    return generate_world(tmp_path_factory.mktemp("zoo") / "world", spec), spec


def test_zoo_world_noise_matches_knobs(zoo_world):
    world, spec = zoo_world
    names = (world / "classes.txt").read_text().split()
    assert len(names) == 10
    crawl = pd.concat([pd.read_csv(world / "crawl" / "web_images.csv"),
                       pd.read_json(world / "crawl" / "web_videos.jsonl", lines=True)])
    truth = pd.read_parquet(world / "ground_truth.parquet")
    t = truth[truth["planted"] == ""].assign(key=lambda d: "../" + d["url"])
    m = crawl.drop_duplicates("url").merge(t, left_on="url", right_on="key")
    assert len(m) == 2 * 12 * 10
    noise = (m["true_class"] != m["query"]).mean()
    assert 0.4 < noise < 0.6
    wrong = m[(m["true_class"] != m["query"]) & (m["true_class"] != "junk")]
    assert len(wrong) > 0.3 * (m["true_class"] != m["query"]).sum()
    for q, c in zip(wrong["query"], wrong["true_class"]):
        assert c in siblings(q, names)


def test_a_confuser_world_sends_all_sibling_noise_of_a_query_to_one_class_around_a_cycle(tmp_path):
    from omni.demo.world import confuser

    spec = replace(zoo_spec("c8_t5_n50_conf", seed=2), train_per_class=1, val_per_class=1, web_per_query=10,
                   untrimmed_per_class=1, untrimmed_s=4.0, size=32, val_leaks=0)
    world = generate_world(tmp_path / "world", spec)
    names = (world / "classes.txt").read_text().split()
    ring = [confuser(n, names) for n in names]
    assert sorted(ring) == sorted(names) and all(c != n for c, n in zip(ring, names))  # a permutation
    crawl = pd.concat([pd.read_csv(world / "crawl" / "web_images.csv"),
                       pd.read_json(world / "crawl" / "web_videos.jsonl", lines=True)])
    truth = pd.read_parquet(world / "ground_truth.parquet")
    t = truth[truth["planted"] == ""].assign(key=lambda d: "../" + d["url"])
    m = crawl.drop_duplicates("url").merge(t, left_on="url", right_on="key")
    wrong = m[(m["true_class"] != m["query"]) & (m["true_class"] != "junk")]
    assert len(wrong) > 0.25 * len(m)  # 40% expected
    assert all(c == confuser(q, names) for q, c in zip(wrong["query"], wrong["true_class"]))


def test_zoo_world_regenerates_only_on_change(zoo_world):
    world, spec = zoo_world
    before = (world / "world.json").stat().st_mtime_ns
    generate_world(world, spec)
    assert (world / "world.json").stat().st_mtime_ns == before


def test_ground_truth_report_precision_recall(zoo_world):
    world, _ = zoo_world
    truth = pd.read_parquet(world / "ground_truth.parquet")
    vids = pd.read_json(world / "crawl" / "web_videos.jsonl", lines=True)
    vids = vids[~vids["url"].str.contains("bad_|copy_of_|leak_")]
    true = dict(zip("../" + truth["url"], truth["true_class"]))
    correct = [true[u] == q for u, q in zip(vids["url"], vids["query"])]
    # an oracle filter: keep exactly the items that show their query class
    web = vids.assign(source="web_videos", status=["kept" if c else "filtered" for c in correct])
    rep = ground_truth_report(world, web)["sources"]["web_videos"]
    assert rep["precision_kept"] == 1.0 and rep["recall_kept"] == 1.0
    assert rep["precision_unfiltered"] == pytest.approx(sum(correct) / len(correct))
    # keep everything: recall 1, precision as crawled
    rep = ground_truth_report(world, web.assign(status="kept"))["sources"]["web_videos"]
    assert rep["recall_kept"] == 1.0 and rep["precision_kept"] == pytest.approx(sum(correct) / len(correct))


def test_learning_quality_table_reports_means_spreads_and_the_refined_round():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import learning_quality as lq

    rows = [{"world": "w1", "seed": s, "baseline": b, "omnisource": o, "refined": r, "reference": 0.5,
             "omnisource_unfiltered": 0.6, "web_videos_precision": 0.7, "web_videos_recall": 0.6,
             "web_videos_precision_refined": 0.9, "web_videos_recall_refined": 0.8,
             "train_s": {"baseline": 10, "omnisource": 20}, "wall_s": 100}
            for s, b, o, r in ((0, 0.4, 0.7, 0.8), (1, 0.6, 0.9, 0.9))]
    t = lq.table(rows)
    w1 = t[t["world"] == "w1"].iloc[0]
    assert abs(w1["baseline_mean"] - 50.0) < 1e-9 and abs(w1["baseline_std"] - 14.142) < 1e-3
    # the gain and filtered - unfiltered are the handed-over model's: the second round's student
    assert abs(w1["gain"] - 35.0) < 1e-9 and abs(w1["filtered_minus_unfiltered"] - 25.0) < 1e-9
    md = lq.markdown(t)
    assert "| first round | OmniSource |" in md and "| 80.0 ± 14.1 | 85.0 ± 7.1 | 35.0 |" in md
    assert "0.90 / 0.80" in md
    assert t.iloc[-1]["world"] == "MEAN"


def test_true_classes_name_what_each_web_item_shows(zoo_world):
    from omni.demo.world import true_classes

    world, _ = zoo_world
    truth = pd.read_parquet(world / "ground_truth.parquet")
    vids = pd.read_json(world / "crawl" / "web_videos.jsonl", lines=True)
    vids = vids[~vids["url"].str.contains("bad_|copy_of_|leak_")].head(30)
    expect = dict(zip("../" + truth["url"], truth["true_class"]))
    assert true_classes(world, vids) == [expect[u] for u in vids["url"]]
    assert true_classes(world, pd.DataFrame({"url": ["../web/not_in_the_world.mp4"]})) == ["junk"]


def test_filter_ideas_measures_ranking_and_an_adaptive_rule():
    import sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import filter_ideas as fi

    assert fi.auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 1, 0, 0])) == 1.0
    assert fi.auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([1, 1, 0, 0])) == 0.0
    rng = np.random.default_rng(0)
    # two queries with different clean shares (80% and 30%): the mixture keeps the clean ones in both
    clean = np.r_[np.ones(40), np.zeros(10), np.ones(15), np.zeros(35)].astype(bool)
    x = np.where(clean, rng.normal(3, 0.5, 100), rng.normal(-3, 0.5, 100))
    keep = fi.mixture_keep(x, np.r_[np.zeros(50), np.ones(50)])
    assert (keep == clean).all()


def test_learning_quality_pools_runs_that_differ_only_in_threads_or_the_second_round():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import learning_quality as lq

    assert lq.comparable("train.threads=1") == lq.comparable("filter.refine=true") == lq.comparable("") == ""
    assert lq.comparable("train.threads=1 filter.keep_fraction=0.8") == "filter.keep_fraction=0.8"


def test_learning_quality_hour_profile_is_the_default_recipe_on_small_models(zoo_world, tmp_path):
    import inspect
    import sys
    from pathlib import Path

    from omni.config import ModelConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import learning_quality as lq
    import reference_model

    world, _ = zoo_world
    hour = lq.PROFILES["hour"]
    cfg = lq._config(lq.world_config(world, tmp_path / "work", hour["set"] + ["train.threads=1"]))
    default = ModelConfig()
    for m in (cfg.train.model, cfg.teacher.video):
        assert (m.width, m.input_size, m.num_frames) == (12, 32, 4)
        # the schedule and recipe stay the defaults': only the models shrink
        assert (m.steps, m.optimizer, m.lr, m.weight_decay) == (default.steps, default.optimizer, default.lr,
                                                               default.weight_decay)
    assert cfg.teacher.image.input_size == 32 and cfg.teacher.image.arch == default_image_arch()
    assert set(hour["reference"]) <= set(inspect.signature(reference_model.train_reference).parameters)
    assert lq.GRID_WORLDS and set(lq.GRID_WORLDS) <= set(ZOO) and len(lq.GRID_WORLDS) == 6


def default_image_arch() -> str:
    from omni.config import TeacherConfig

    return TeacherConfig().image.arch
