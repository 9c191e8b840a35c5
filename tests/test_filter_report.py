"""The filter says when its teacher is weak: the query AUC, the teacher's health, the warning in
``filter/summary.json`` and in ``omni report``; no training (hand-made summaries and tables)."""
import json
import logging

import numpy as np
import pandas as pd
import pytest

from omni import cache, pipeline
from omni.config import FilterConfig, config_from_dict
from omni.selection.filter import TEACHERS_KEY, teacher_note
from omni.learning.metrics import query_auc, teacher_health
from omni.pipeline.filter import inspect_filter
from omni.reporting.report import pipeline_report, report_markdown, report_table
from omni.reporting.stage_tables import stage_table


def test_query_auc_perfect_reversed_random_and_classes_without_positives():
    labels = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[labels] * 0.8 + 0.1
    assert query_auc(perfect, labels) == pytest.approx(1.0)
    assert query_auc(1 - perfect, labels) == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    many = rng.integers(0, 5, 4000)
    assert query_auc(rng.random((4000, 5)), many) == pytest.approx(0.5, abs=0.03)
    # class 2 has no positive among the labels: skipped, not counted as 0 or 0.5
    two = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.2, 0.8, 0.0], [0.1, 0.9, 0.0]])
    assert query_auc(probs, two) == pytest.approx(1.0)
    # ties count half; nothing to separate -> None
    assert query_auc(np.full((4, 2), 0.5), np.array([0, 0, 1, 1])) == pytest.approx(0.5)
    assert query_auc(np.ones((3, 2)), np.array([1, 1, 1])) is None
    assert query_auc(np.zeros((0, 2)), np.zeros(0, int)) is None


def test_teacher_health_flags_near_chance_top1_and_a_low_query_auc():
    assert teacher_health(0.31, 0.58, 10) == {"chance": pytest.approx(0.1), "query_auc": 0.58, "weak": True}
    assert teacher_health(0.20, 0.90, 10)["weak"]  # top-1 under 0.25 (chance + 0.15)
    assert not teacher_health(0.49, 0.85, 10)["weak"]
    assert not teacher_health(0.80, 0.90, 2)["weak"]  # two classes: the bar is 75%, not 100%
    assert teacher_health(0.60, 0.90, 2)["weak"]
    assert teacher_health(None, None, 5)["weak"] is None
    assert teacher_health(1.0, None, 1)["weak"] is False


def test_teacher_note_of_an_older_summary_is_none_and_a_weak_one_warns():
    assert teacher_note("video", None, 10) is None
    assert teacher_note("video", {"top1": 0.3, "top5": 0.6}, 10) is None  # before the weak field
    assert teacher_note("video", "junk", 10) is None
    note = teacher_note("video", {"top1": 0.31, "chance": 0.1, "query_auc": 0.58, "weak": True}, 10, FilterConfig())
    assert note["weak"] and "video teacher is near chance" in note["warning"]
    assert "val top-1 31% for 10 classes, query AUC 0.58" in note["warning"]
    assert "teacher.video.pretrained" in note["warning"] and "filter.keep_fraction: null" in note["warning"]
    fine = teacher_note("image", {"top1": 0.9, "chance": 0.1, "query_auc": 0.95, "weak": False}, 10)
    assert fine == {"top1": 0.9, "chance": 0.1, "query_auc": 0.95, "weak": False}


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "train.csv").write_text("path,label\na.mp4,a\n")
    (tmp_path / "val.csv").write_text("path,label\nb.mp4,b\n")
    sources = {"img": "image", "vid": "video"}
    for name in sources:
        (tmp_path / f"{name}.csv").write_text(f"url,query\nhttp://example.com/{name}.x,a\n")
    return config_from_dict({"workdir": str(tmp_path / "w"), "classes": ["a", "b", "c", "d"],
                             "target": {"train": str(tmp_path / "train.csv"), "val": str(tmp_path / "val.csv")},
                             "sources": [{"name": n, "kind": k, "list": str(tmp_path / f"{n}.csv")}
                                         for n, k in sources.items()]}, base=tmp_path)


def _done(cfg, keys, unit, files: dict) -> None:
    d = pipeline.stage_dir(cfg, unit)
    d.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, pd.DataFrame):
            content.to_parquet(d / name)
        else:
            (d / name).write_text(content)
    cache.mark_done(d, keys[unit])


def test_a_weak_teacher_warns_in_the_filter_summary_the_log_and_the_report(cfg, caplog):
    keys = pipeline.Keys(cfg)
    before = keys["filter"]
    assert "teacher/video" not in pipeline.upstream(cfg, "filter")  # read through score: same key
    assert pipeline.Keys(cfg)["filter"] == before
    _done(cfg, keys, "teacher/video", {"summary.json": json.dumps(
        {"val": {"top1": 0.3, "top5": 0.9, "chance": 0.25, "query_auc": 0.55, "weak": True}})})
    _done(cfg, keys, "teacher/image", {"summary.json": json.dumps({"val": {"top1": 0.6}})})  # an older run
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                          (("sample_id", object), ("shard", object), ("offset", int), ("t", int), ("h", int),
                           ("w", int))})
    for src in ("img", "vid"):
        _done(cfg, keys, f"extract/{src}", {"samples.parquet": empty})
    u = pipeline.Unit("filter", "", pipeline.unit_settings(cfg, "filter"), {}, pipeline.stage_dir(cfg, "filter"),
                      cfg.workdir, keys, cfg)
    u.dir.mkdir(parents=True, exist_ok=True)
    judged = pd.DataFrame({"sample_id": ["i1", "v1", "v2"], "source": ["img", "vid", "vid"], "label": [0, 1, 1],
                           "teacher_score": [0.9, 0.2, 0.7], "filter_status": ["kept", "filtered", "kept"]})
    with caplog.at_level(logging.WARNING, logger="omni"):
        inspect_filter(u, judged)
    summary = json.loads((u.dir / "summary.json").read_text())
    assert summary["vid"]["b"] == {"scored": 2, "kept": 1}
    assert set(summary[TEACHERS_KEY]) == {"video"}  # the image teacher's summary predates the fields
    video = summary[TEACHERS_KEY]["video"]
    assert video["weak"] and video["top1"] == 0.3 and video["query_auc"] == 0.55 and video["chance"] == 0.25
    assert "the video teacher is near chance (val top-1 30% for 4 classes, query AUC 0.55)" in video["warning"]
    assert video["warning"] in caplog.text
    assert pipeline.Keys(cfg)["filter"] == before  # reporting only: the filter's key is unchanged

    rep = pipeline_report(cfg)
    text = report_table(rep)
    assert "filter warnings:" in text and video["warning"] in text
    assert video["warning"] in report_markdown(rep)
    assert {r["source"] for r in stage_table(cfg, "filter")} == {"img", "vid"}  # the entry is no source


def test_the_report_survives_a_filter_summary_without_or_with_a_broken_teachers_entry(cfg):
    d = pipeline.stage_dir(cfg, "filter")
    d.mkdir(parents=True)
    for content in ({"img": {"a": {"scored": 1, "kept": 1}}}, {TEACHERS_KEY: "junk"},
                    {TEACHERS_KEY: {"video": {"top1": 0.2}}}, []):
        (d / "summary.json").write_text(json.dumps(content))
        rep = pipeline_report(cfg)
        assert "filter" not in rep and "filter warnings" not in report_table(rep)
    (d / "summary.json").write_text("{not json")
    assert "filter" not in pipeline_report(cfg)
