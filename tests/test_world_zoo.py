"""The world zoo's knobs on the demo-world generator (no training here)."""
from __future__ import annotations

import sys
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


def test_learning_quality_worlds_hold_families_out():
    """The tuning grid never holds a world of a held-out family; the final one holds every family."""
    from pathlib import Path

    from omni.demo.world import FAMILIES, HELD_OUT_FAMILIES, family_of

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import learning_quality as lq

    tuning, final = lq.family_worlds(False), lq.family_worlds(True)
    assert tuning and not {family_of(w) for w in tuning} & set(HELD_OUT_FAMILIES)
    assert {family_of(w) for w in final} == set(FAMILIES)
    assert lq.GRID_WORLDS and set(lq.GRID_WORLDS) <= set(ZOO) and len(lq.GRID_WORLDS) == 6


# ---------------------------------------------------------------- world families

NEW_FAMILIES = ("directions", "transforms", "scenes")


@pytest.mark.parametrize("family", ("shapes",) + NEW_FAMILIES)
@pytest.mark.parametrize("n", range(6, 13))
def test_family_classes_siblings_and_confuser(family, n):
    from omni.demo.world import confuser

    names = class_names(WorldSpec(family=None if family == "shapes" else family, num_classes=n))
    assert len(names) == len(set(names)) == n
    assert all(len(c.split("_")) == 2 for c in names)  # <appearance>_<motion>
    for name in names:
        app, motion = name.split("_")
        sib = siblings(name, names)
        assert sib and name not in sib
        assert all(s.split("_")[0] == app or s.split("_")[1] == motion for s in sib)
        assert confuser(name, names) in sib
        if family != "shapes":  # only the motion tells it from another class of its appearance
            assert any(s.split("_")[0] == app for s in sib)


def test_family_class_names_hold_mirror_and_time_reversal_pairs():
    for n in range(6, 13):
        assert {"disc_left", "disc_right"} <= set(class_names(WorldSpec(family="directions", num_classes=n)))
        assert {"arrow_cw", "arrow_ccw"} <= set(class_names(WorldSpec(family="transforms", num_classes=n)))
        assert {"disc_left", "disc_right"} <= set(class_names(WorldSpec(family="scenes", num_classes=n)))
    assert class_names(WorldSpec(family="directions", num_classes=6)) == [
        "disc_left", "disc_right", "disc_up", "square_up", "square_down", "square_left"]
    with pytest.raises(ValueError):
        class_names(WorldSpec(family="directions", num_classes=17))
    with pytest.raises(ValueError):
        class_names(WorldSpec(family="no_such_family"))


def test_families_cover_the_zoo_once_and_hold_some_out():
    from omni.demo.world import FAMILIES, FAMILY_NAMES, HELD_OUT_FAMILIES, family_of

    assert set(FAMILIES) == set(FAMILY_NAMES) == {"shapes", *NEW_FAMILIES}
    listed = [w for ws in FAMILIES.values() for w in ws]
    assert sorted(listed) == sorted(ZOO)  # every zoo world in exactly one family
    assert all(len(ws) >= 2 for ws in FAMILIES.values())
    assert len(HELD_OUT_FAMILIES) >= 2 and set(HELD_OUT_FAMILIES) <= set(FAMILIES) - {"shapes"}
    assert "shapes" not in HELD_OUT_FAMILIES and set(FAMILIES) - set(HELD_OUT_FAMILIES)  # something to tune on
    assert {"c6_t5_n20", "c10_t5_n50", "c8_t5_n50_conf"} <= set(FAMILIES["shapes"])
    for fam, worlds in FAMILIES.items():
        for w in worlds:
            assert family_of(w) == fam
            assert (zoo_spec(w).family or "shapes") == fam
    assert family_of("demo") == "shapes"
    with pytest.raises(KeyError):
        family_of("no_such_world")


def _plain(monkeypatch):
    """Render class objects on black: no background, texture or distractors."""
    import numpy as np

    import omni.demo.world as world

    monkeypatch.setattr(world, "_background", lambda rng, h, w, web, shift=None: np.zeros((h, w, 3)))
    monkeypatch.setattr(world, "_texture", lambda rng, h, w, web, shift: np.zeros((h, w, 3)))
    monkeypatch.setattr(world, "_distractors", lambda rng, frames, r, k: None)
    return world


def _moments(clip):
    """Per frame: the object's centroid (x, y), area and orientation (unwrapped; increasing is
    clockwise on screen, y pointing down)."""
    import numpy as np

    m = (clip.max(-1) > 20).astype(float)
    yy, xx = np.mgrid[0: m.shape[1], 0: m.shape[2]]
    a = m.sum((1, 2))
    x, y = (m * xx).sum((1, 2)) / a, (m * yy).sum((1, 2)) / a
    dx, dy = xx - x[:, None, None], yy - y[:, None, None]
    mu20, mu02, mu11 = (m * dx * dx).sum((1, 2)), (m * dy * dy).sum((1, 2)), (m * dx * dy).sum((1, 2))
    return x, y, a, np.unwrap(np.arctan2(2 * mu11, mu20 - mu02)) / 2


@pytest.mark.parametrize("family", ["directions", "scenes"])
def test_left_and_right_are_mirror_images_and_time_reversals(monkeypatch, family):
    import numpy as np

    world = _plain(monkeypatch)
    for seed in range(6):
        def clip(name):
            return world.render_class(np.random.default_rng(seed), family, name, 20, 48, 60, web=seed % 2 == 1,
                                      shift=0.5, fps=10)

        right, left = clip("disc_right"), clip("disc_left")
        assert right.shape == (20, 48, 60, 3) and right.dtype == np.uint8
        moved = lambda c: _moments(c)[0][-1] - _moments(c)[0][0]  # noqa: E731
        assert moved(right) > 5 and moved(left) < -5
        assert moved(right[:, :, ::-1]) < -5  # mirrored, right moves left
        assert moved(right[::-1]) < -5  # played backwards too
        if family == "directions":  # the same draws: left is exactly right played backwards
            assert np.array_equal(left, right[::-1])
            up, down = clip("disc_up"), clip("disc_down")
            assert np.array_equal(up, down[::-1])
            ys = _moments(down)[1]
            assert ys[-1] - ys[0] > 5
        # a single frame cannot tell them apart: the start is random
    starts = [_moments(world.render_class(np.random.default_rng(s), family, "disc_right", 2, 48, 60, web=False))[0][0]
              for s in range(8)]
    assert np.ptp(starts) > 5


def test_cw_and_ccw_are_mirror_images_and_time_reversals_grow_and_shrink_too(monkeypatch):
    import numpy as np

    world = _plain(monkeypatch)
    for seed in range(4):
        for app in ("arrow", "ell", "flag", "key"):
            def clip(name):
                return world.render_class(np.random.default_rng(seed), "transforms", f"{app}_{name}", 20, 48, 60,
                                          web=False, fps=10)

            cw, ccw = clip("cw"), clip("ccw")
            assert np.array_equal(ccw, cw[::-1])
            turn = lambda c: _moments(c)[3][-1] - _moments(c)[3][0]  # noqa: E731
            assert turn(cw) > 1.0 and turn(ccw) < -1.0  # radians, over the clip
            assert turn(cw[:, :, ::-1]) < -1.0  # mirrored, clockwise turns anticlockwise
            grow, shrink = clip("grow"), clip("shrink")
            assert np.array_equal(shrink, grow[::-1])
            area = _moments(grow)[2]
            assert area[-1] > 1.5 * area[0]
            approach = clip("approach")
            x, y, area, _ = _moments(approach)
            assert area[-1] > 2 * area[0] and y[-1] > y[0]  # nearer: larger and lower
            assert approach[-1].max() > approach[0].max()  # and brighter
            assert np.array_equal(clip("recede"), approach[::-1])


@pytest.mark.parametrize("world_name", ["dir_c8_t5_n50", "tr_c10_t5_n50", "sc_c8_t5_n40"])
def test_family_worlds_generate_with_ground_truth(tmp_path, world_name):
    import json

    import av

    from omni.demo.world import family_of

    spec = replace(zoo_spec(world_name, seed=4), train_per_class=1, val_per_class=1, web_per_query=6,
                   untrimmed_per_class=1, untrimmed_s=4.0, size=32, val_leaks=2)
    world = generate_world(tmp_path / "world", spec)
    names = (world / "classes.txt").read_text().split()
    assert names == class_names(spec) and len(names) == spec.num_classes
    assert json.loads((world / "world.json").read_text())["family"] == family_of(world_name)
    train = pd.read_csv(world / "target" / "train.csv")
    assert sorted(train["label"]) == sorted(names)
    truth = pd.read_parquet(world / "ground_truth.parquet")
    assert set(truth["true_class"]) <= set(names) | {"junk"}
    assert (truth["planted"] == "leak").sum() == 2
    assert {"zero-byte", "html", "404", "duplicate", "truncated"} <= set(truth["planted"])
    crawl = pd.concat([pd.read_csv(world / "crawl" / "web_images.csv"),
                       pd.read_json(world / "crawl" / "web_videos.jsonl", lines=True),
                       pd.read_parquet(world / "crawl" / "untrimmed.parquet")])
    assert set(crawl["url"]) == set("../" + truth["url"])
    clean = truth[truth["planted"] == ""].merge(crawl.drop_duplicates("url").assign(url=lambda d: d["url"].str[3:]),
                                                on="url")
    wrong = clean[(clean["true_class"] != clean["query"]) & (clean["true_class"] != "junk")]
    assert all(c in siblings(q, names) for q, c in zip(wrong["query"], wrong["true_class"]))
    rates = set()
    for rel in (world / "target" / "train").glob("*.mp4"):
        with av.open(str(rel)) as c:
            s = c.streams.video[0]
            rates.add(int(s.average_rate))
            assert sum(1 for _ in c.decode(video=0)) >= 4
    if family_of(world_name) == "scenes":  # variable frame rate in the target clips too
        assert len(rates) > 1 and rates <= set(range(6, 16))
    else:
        assert rates == {spec.fps}
    # an oracle filter scores 1.0 through the unchanged report
    vids = pd.read_json(world / "crawl" / "web_videos.jsonl", lines=True)
    vids = vids[~vids["url"].str.contains("bad_|copy_of_|leak_")]
    true = dict(zip("../" + truth["url"], truth["true_class"]))
    web = vids.assign(source="web_videos", status=["kept" if true[u] == q else "filtered"
                                                   for u, q in zip(vids["url"], vids["query"])])
    rep = ground_truth_report(world, web)["sources"]["web_videos"]
    assert rep["precision_kept"] == 1.0 and rep["recall_kept"] == 1.0
