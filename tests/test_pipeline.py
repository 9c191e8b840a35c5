"""The stages end to end on the tiny demo world, called directly (no Prefect)."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from omni import pipeline
from omni.config import load_config
from omni.demo.world import ground_truth_report

from omni_testing import write_config

pytestmark = pytest.mark.e2e  # runs stages end to end: the slow tier (`pytest -m "not e2e"` skips it)


def _run_all(cfg):
    return {r.stage: r for r in pipeline.run_pipeline(cfg)}


def _tree_hash(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def done_run(tmp_path_factory, tiny_world):
    tmp = tmp_path_factory.mktemp("pipe")
    before = _tree_hash(tiny_world)
    cfg_path = write_config(tmp, tiny_world)
    cfg = load_config(cfg_path)
    first = _run_all(cfg)
    return cfg_path, cfg, first, before


def test_every_stage_ran_and_outputs_follow_the_contract(done_run, tiny_world):
    cfg_path, cfg, first, _ = done_run
    assert not any(r.cached for r in first.values())
    web = pd.read_parquet(cfg.workdir / "manifest" / "web_items.parquet")
    for col in ("url", "source", "query", "status", "reason", "teacher_label", "teacher_score", "start_s", "end_s"):
        assert col in web.columns
    assert set(web["status"]) <= {"kept", "filtered", "duplicate", "leak", "failed"}
    assert (web.loc[web["status"] != "kept", "reason"] != "").all()  # every rejection says why
    # one row per crawl-list row, one per window for untrimmed videos
    crawled = sum(len(pd.read_csv(tiny_world / "crawl" / "web_images.csv")) for _ in [0])
    assert (web["source"] == "web_images").sum() == crawled
    un = web[web["source"] == "untrimmed"]
    assert un["start_s"].notna().all() and (un["end_s"] > un["start_s"]).all()
    assert un.groupby("item_id").size().min() >= 2
    for run in ("baseline", "omnisource"):
        m = json.loads((cfg.workdir / "eval" / run / "metrics.json").read_text())
        assert m["num_samples"] == 12 and len(m["confusion"]) == 4  # every val clip, every class
        assert m["class_names"] == cfg.class_names()


def test_each_stage_reports_its_counts_and_draws_its_pictures(done_run):
    from PIL import Image

    from omni.reporting.stage_tables import stage_pictures, stage_table

    cfg = done_run[1]
    ingest = {r["unit"]: r for r in stage_table(cfg, "ingest")}
    web = pd.read_parquet(cfg.workdir / "manifest" / "web_items.parquet")
    for src in ("web_images", "web_videos"):
        items = web[web["source"] == src].drop_duplicates("item_id")
        assert ingest[f"ingest/{src}"]["rows"] == len(items)
        assert ingest[f"ingest/{src}"]["failed"] == (items["status"] == "failed").sum()
        assert ingest[f"ingest/{src}"]["leak"] == (items["status"] == "leak").sum()
    assert "file not found: 1" in ingest["ingest/web_images"]["failed by reason"]
    kept = {r["source"]: r["kept"] for r in stage_table(cfg, "filter")}
    assert kept == web[web["status"] == "kept"].groupby("source").size().to_dict()
    top1 = {r["unit"]: r["top-1"] for r in stage_table(cfg, "evaluate")}
    m = json.loads((cfg.workdir / "eval" / "omnisource" / "metrics.json").read_text())
    assert top1["evaluate/omnisource"] == f"{100 * m['top1']:.1f}%"
    pictures = {title: p for stage in pipeline.STAGES for title, p in stage_pictures(cfg, stage)}
    assert {"train/baseline: training curve", "train/omnisource: training curve", "teacher/video: training curve",
            "evaluate/omnisource: confusion matrix", "filter: kept vs rejected, web_videos"} <= set(pictures)
    for p in pictures.values():
        with Image.open(p) as im:
            assert im.format == "PNG" and min(im.size) >= 100
            assert len(np.unique(np.asarray(im.convert("L")))) > 10  # something drawn, not a blank canvas


def test_bad_inputs_get_precise_reasons(done_run):
    cfg = done_run[1]
    web = pd.read_parquet(cfg.workdir / "manifest" / "web_items.parquet")
    reason = dict(zip(web["url"].str.rsplit("/", n=1).str[-1], web["reason"]))
    assert reason["bad_zero_bytes.jpg"] == "empty file"
    assert reason["bad_html.jpg"] == "not an image: html"
    assert reason["missing_404.jpg"] == "file not found"
    assert reason["bad_truncated.mp4"].startswith("truncated video")
    assert reason["bad_html.mp4"] == "not a video: html"
    dups = web[web["status"] == "duplicate"]
    assert len(dups) == 3 and dups["reason"].str.startswith("same bytes as").all()


def test_all_planted_leaks_are_found_and_no_clean_item_is_flagged(done_run, tiny_world):
    web = pd.read_parquet(done_run[1].workdir / "manifest" / "web_items.parquet")
    rep = ground_truth_report(tiny_world, web)
    assert rep["leaks_planted"] == 2 and rep["leaks_found"] == 2 and rep["false_leaks"] == 0


def test_source_data_is_never_changed(done_run, tiny_world):
    assert _tree_hash(tiny_world) == done_run[3]


def test_rerun_is_all_cache_hits(done_run):
    cfg = load_config(done_run[0])
    again = _run_all(cfg)
    assert all(r.cached for r in again.values()), {k: r.cached for k, r in again.items()}


def test_changing_one_setting_recomputes_from_that_stage_on(done_run):
    cfg = load_config(done_run[0], ["filter.min_score=0.05"])
    again = _run_all(cfg)
    redone = sorted(k for k, r in again.items() if not r.cached)
    assert redone == ["evaluate/first_round", "evaluate/omnisource", "filter", "manifest", "train/first_round",
                      "train/omnisource"]


def test_editing_one_crawl_list_redoes_only_that_source_and_the_student(done_run, tmp_path):
    import yaml

    data = yaml.safe_load(done_run[0].read_text())
    src = next(s for s in data["sources"] if s["name"] == "web_videos")
    rows = pd.read_json(src["list"], lines=True)
    rows["url"] = [str(Path(src["list"]).parent / u) for u in rows["url"]]  # the same URLs, from elsewhere
    edited = tmp_path / "web_videos.jsonl"
    rows.iloc[:-1].to_json(edited, orient="records", lines=True)  # one row dropped
    src["list"] = str(edited)
    cfg_path = tmp_path / "edited.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    again = _run_all(load_config(cfg_path))
    redone = sorted(k for k, r in again.items() if not r.cached)
    assert redone == ["evaluate/first_round", "evaluate/omnisource", "extract/web_videos", "filter",
                      "ingest/web_videos", "manifest", "score/web_videos", "train/first_round", "train/omnisource"]
    assert again["ingest/web_videos"].info["fetched_this_run"] == 0  # the downloads were reused


def test_the_baseline_reuses_the_video_teacher_when_it_is_the_same_training(done_run, tmp_path):
    """One recipe for teachers and students: the target-only baseline is then exactly the video
    teacher's training, done once; a different recipe trains it."""
    import torch

    cfg = done_run[1]
    summary = json.loads((cfg.workdir / "train" / "baseline" / "summary.json").read_text())
    assert summary["same_as"] == "teacher/video"
    a = torch.load(cfg.workdir / "train" / "baseline" / "model.pt", weights_only=False)["model"]
    b = torch.load(cfg.workdir / "teacher" / "video" / "model.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    m = json.loads((cfg.workdir / "eval" / "baseline" / "metrics.json").read_text())
    assert m["num_samples"] == 12
    other = load_config(done_run[0], ["train.model.steps=7"])
    assert not pipeline.run_unit(other, "train/baseline").cached
    summary = json.loads((other.workdir / "train" / "baseline" / "summary.json").read_text())
    assert "same_as" not in summary and summary["steps"] == 7
    assert pipeline.run_unit(cfg, "train/baseline").info["same_as"] == "teacher/video"  # put the module's run back


def _on_top(p, lab) -> bool:
    """omni's top-1 rule: no class scores above the query class (a tie at the top counts; a
    bf16 student's probabilities tie often enough to matter, argmax would pick the first)."""
    return not (np.asarray(p) > p[lab]).any()


def test_refine_rescores_with_the_first_round_student_and_trains_omnisource_on_that(done_run):
    """filter.refine (the default): a second round. A first-round student learns from the
    teacher's selection and scores every web sample; by default (``refine_rule: contradict``,
    ``refine_relabel``) the OmniSource student (the model omni hands over) trains on every sample,
    those the student confidently gives to another class as that class. Both students are
    evaluated, and a rerun is all cache hits. ``refine_rule: top1`` keeps the samples whose top
    class is their query, ``same`` applies the filter's own rule (the best share per query); each
    redoes only the second round; with ``refine: false`` the OmniSource student learns from the
    teacher's selection."""
    cfg = load_config(done_run[0])
    first = done_run[2]
    assert pipeline.runs(cfg) == ["baseline", "first_round", "omnisource"]
    for u in ("train/first_round", "train/omnisource", "evaluate/first_round", "evaluate/omnisource"):
        assert not first[u].cached, u
    _run_all(cfg)  # (an earlier test may have left another list edit's rounds in this workdir)
    d = cfg.workdir / "train" / "omnisource"
    scores = pd.read_parquet(d / "scores.parquet")
    web = pd.read_parquet(d / "web_items.parquet")
    round1 = pd.read_parquet(cfg.workdir / "manifest" / "web_items.parquet")
    assert (scores["teacher"] == "student").all()
    assert len(web) == len(round1)  # the same rows; ingest, duplicate and leak verdicts unchanged
    same = web.set_index("url")["status"].isin(["kept", "filtered"])
    assert (same == round1.set_index("url")["status"].isin(["kept", "filtered"])).all()
    names = cfg.class_names()
    judged = web[web["status"].isin(["kept", "filtered"])]
    probs = scores.set_index("sample_id").loc[judged["sample_id"], "teacher_probs"]
    # the default: every sample kept, and one whose top class by the student is another class,
    # with at least refine_min_contradiction of probability, trains as that class; a kind of
    # source under the top-1 rule (refine_kind_rules) keeps the samples whose top class is their
    # query with at least refine_min_relative x its source's median query probability among those
    bar, fc = cfg.filter.refine_min_contradiction, cfg.filter
    kind = judged["source"].map({s.name: s.kind for s in cfg.sources})
    strict = (kind.map(lambda k: fc.refine_kind_rules.get(k, fc.refine_rule)) == "top1").to_numpy()
    on_top = np.array([_on_top(p, lab) for p, lab in zip(probs, judged["label"])])
    qp = pd.Series([p[lab] for p, lab in zip(probs, judged["label"])], index=judged.index)
    median = qp[on_top].groupby(judged.loc[on_top, "source"]).median()
    passes = on_top & (qp >= fc.refine_min_relative * judged["source"].map(median)).to_numpy()
    confident = np.array([not t and max(p) >= bar for p, t in zip(probs, on_top)])
    assert (judged["status"] == "kept").tolist() == list(~strict | passes | confident)
    kept = (judged["status"] == "kept").to_numpy()
    expect = [q if not c else names[int(np.argmax(p))] for p, q, c in zip(probs, judged["query"], confident)]
    assert judged.loc[kept, "train_label"].tolist() == [e for e, k in zip(expect, kept) if k]
    if fc.refine_kind_rules:
        assert 0 < (strict & ~kept).sum() and (~strict & kept).sum() == (~strict).sum()
    train = pd.read_parquet(d / "train.parquet")
    by_id = train.set_index("sample_id")
    assert [names[i] for i in by_id.loc[judged.loc[kept, "sample_id"], "label"]] == \
        judged.loc[kept, "train_label"].tolist()
    assert set(by_id.index[by_id["source"] != "target"]) == set(judged.loc[kept, "sample_id"])
    summary = json.loads((d / "summary.json").read_text())
    assert summary["selection"]["train_samples"] == len(train)
    for run in ("first_round", "omnisource"):
        assert json.loads((cfg.workdir / "eval" / run / "metrics.json").read_text())["num_samples"] == 12
    assert all(r.cached for r in _run_all(cfg).values())

    # the authors' top-1 rule: kept = exactly the samples whose query class is the student's top
    # class, with at least refine_min_score of its probability and refine_min_relative x its
    # source's median among those
    top1_rule = ["filter.refine_rule=top1", "filter.refine_relabel=false"]
    t1 = load_config(done_run[0], top1_rule)
    redone = {u for u, r in _run_all(t1).items() if not r.cached}
    assert redone == {"train/omnisource", "evaluate/omnisource"}
    web = pd.read_parquet(d / "web_items.parquet")
    judged = web[web["status"].isin(["kept", "filtered"])]
    least = t1.filter.refine_min_score
    top1 = [_on_top(p, lab) and p[lab] >= least for p, lab in zip(probs, judged["label"])]
    qp = pd.Series([p[lab] for p, lab in zip(probs, judged["label"])], index=judged.index)
    median = qp[top1].groupby(judged.loc[top1, "source"]).median()
    top1 = [k and q >= t1.filter.refine_min_relative * median[src]
            for k, q, src in zip(top1, qp, judged["source"])]
    assert (judged["status"] == "kept").tolist() == top1
    assert 0 < sum(top1) < len(top1)
    assert (judged.loc[judged["status"] == "kept", "train_label"] == judged.loc[judged["status"] == "kept", "query"]).all()
    train = pd.read_parquet(d / "train.parquet")
    assert set(train.loc[train["source"] != "target", "sample_id"]) == set(web.loc[web["status"] == "kept", "sample_id"])

    # a stricter threshold (the median query probability among the kept) keeps exactly those
    # above it and redoes only the second round
    strict_at = float(np.median([p[lab] for p, lab, k in zip(probs, judged["label"], top1) if k]))
    strict = load_config(done_run[0], top1_rule + [f"filter.refine_min_score={strict_at}"])
    redone = {u for u, r in _run_all(strict).items() if not r.cached}
    assert redone == {"train/omnisource", "evaluate/omnisource"}
    web = pd.read_parquet(d / "web_items.parquet")
    judged = web[web["status"].isin(["kept", "filtered"])]
    probs = pd.read_parquet(d / "scores.parquet").set_index("sample_id").loc[judged["sample_id"], "teacher_probs"]
    kept = [_on_top(p, lab) and p[lab] >= strict_at for p, lab in zip(probs, judged["label"])]
    assert (judged["status"] == "kept").tolist() == kept
    assert 0 < sum(kept) < sum(top1)

    # a threshold relative to each source's median among the student's top-1 samples (1.0: the
    # median itself, so about the upper half of them)
    rel = load_config(done_run[0], top1_rule + ["filter.refine_min_relative=1.0"])
    redone = {u for u, r in _run_all(rel).items() if not r.cached}
    assert redone == {"train/omnisource", "evaluate/omnisource"}
    web = pd.read_parquet(d / "web_items.parquet")
    judged = web[web["status"].isin(["kept", "filtered"])]
    probs = pd.read_parquet(d / "scores.parquet").set_index("sample_id").loc[judged["sample_id"], "teacher_probs"]
    qp = pd.Series([p[lab] for p, lab in zip(probs, judged["label"])], index=judged.index)
    is_top1 = pd.Series([_on_top(p, lab) for p, lab in zip(probs, judged["label"])], index=judged.index)
    median = qp[is_top1].groupby(judged.loc[is_top1, "source"]).median()
    kept = is_top1 & (qp >= 1.0 * judged["source"].map(median))
    assert (judged["status"] == "kept").tolist() == kept.tolist()
    assert 0 < kept.sum() < is_top1.sum()
    assert judged.loc[is_top1 & ~kept, "reason"].str.contains("x this source's median").all()

    same = load_config(done_run[0], ["filter.refine=true", "filter.refine_rule=same", "filter.refine_relabel=false",
                                     "filter.refine_kind_rules={}"])  # the same rule for every source
    redone = {u for u, r in _run_all(same).items() if not r.cached}
    assert redone == {"train/omnisource", "evaluate/omnisource"}
    web = pd.read_parquet(d / "web_items.parquet")
    judged = web[web["status"].isin(["kept", "filtered"])]
    for _, g in judged.groupby(["source", "query"]):  # the filter's rule: the best share per query
        kept, other = g[g["status"] == "kept"], g[g["status"] == "filtered"]
        assert len(kept) and (other.empty or kept["teacher_score"].min() >= other["teacher_score"].max())

    # the same with a lower bar (the median among those it does not put on top), so that some move
    bar = float(np.median([max(p) for p, lab in zip(probs, judged["label"]) if not _on_top(p, lab)]))
    moved = load_config(done_run[0], ["filter.refine_rule=contradict", "filter.refine_relabel=true",
                                      f"filter.refine_min_contradiction={bar}", "filter.refine_kind_rules={}"])
    redone = {u for u, r in _run_all(moved).items() if not r.cached}
    assert redone == {"train/omnisource", "evaluate/omnisource"}
    web = pd.read_parquet(d / "web_items.parquet")
    judged = web[web["status"].isin(["kept", "filtered"])]
    probs = pd.read_parquet(d / "scores.parquet").set_index("sample_id").loc[judged["sample_id"], "teacher_probs"]
    assert (judged["status"] == "kept").all()
    expect = [q if _on_top(p, lab) or max(p) < bar else names[int(np.argmax(p))]
              for p, lab, q in zip(probs, judged["label"], judged["query"])]
    assert judged["train_label"].tolist() == expect
    assert 0 < sum(e != q for e, q in zip(expect, judged["query"]))
    train = pd.read_parquet(d / "train.parquet").set_index("sample_id")
    assert [names[i] for i in train.loc[judged["sample_id"], "label"]] == expect

    off = load_config(done_run[0], ["filter.refine=false"])
    assert pipeline.runs(off) == ["baseline", "omnisource"]
    redone = {u for u, r in _run_all(off).items() if not r.cached}
    assert redone == {"train/omnisource", "evaluate/omnisource"}
    round1 = pd.read_parquet(off.workdir / "manifest" / "train.parquet")
    summary = json.loads((d / "summary.json").read_text())
    assert "selection" not in summary
    assert summary["aux_units"] == round1[round1["source"] != "target"].groupby("source")["item_id"].nunique().to_dict()
    # cross-fitted: two first-round students on disjoint halves of the selected web items, each
    # web sample re-scored by the student that did not learn from it
    from omni.selection.filter import crossfit_fold

    cross = load_config(done_run[0], top1_rule + ["filter.refine_crossfit=true"])
    redone = {u for u, r in _run_all(cross).items() if not r.cached}
    assert redone == {"train/first_round", "evaluate/first_round", "train/omnisource", "evaluate/omnisource"}
    fr = cfg.workdir / "train" / "first_round"
    summary = json.loads((fr / "summary.json").read_text())
    round1 = pd.read_parquet(cfg.workdir / "manifest" / "train.parquet")
    round1 = round1[round1["source"] != "target"]
    from omni.runtime.cores import usable_cores

    assert summary["crossfit_side_by_side"] == (usable_cores() >= 2)  # on a CPU: the two at once
    assert [summary["crossfit"][f"fold{k}"]["steps"] for k in (0, 1)] == [cross.train.model.steps] * 2
    halves = [summary["crossfit"][f"fold{k}"]["aux_units"] for k in (0, 1)]
    for src, n in round1.groupby("source")["item_id"].nunique().items():
        assert halves[0].get(src, 0) + halves[1].get(src, 0) == n  # disjoint halves of the selected items
    assert sum(halves[0].values()) and sum(halves[1].values())
    web = pd.read_parquet(d / "web_items.parquet")
    judged = web[web["status"].isin(["kept", "filtered"])]
    by = {k: set(pd.read_parquet(d / f"scored_by_fold{k}" / "scores.parquet")["sample_id"]) for k in (0, 1)}
    fold = dict(zip(judged["sample_id"], crossfit_fold(judged["item_id"])))
    assert by[0] | by[1] == set(judged["sample_id"]) and not by[0] & by[1]
    assert all(fold[s] == 1 for s in by[0]) and all(fold[s] == 0 for s in by[1])
    probs = pd.read_parquet(d / "scores.parquet").set_index("sample_id").loc[judged["sample_id"], "teacher_probs"]
    kept = [_on_top(p, lab) for p, lab in zip(probs, judged["label"])]
    assert (judged["status"] == "kept").tolist() == kept
    assert all(r.cached for r in _run_all(cross).values())

    _run_all(cfg)  # put the default's rounds back for the tests that follow


def test_cross_fitted_students_with_half_the_steps_and_a_failing_child(done_run, monkeypatch):
    """refine_crossfit_steps 0.5: each cross-fitted student trains half the steps; when the one in
    the child process fails, the run stops with its reason, and the next run, with the cause
    gone, finishes."""
    from omni.runtime import cores

    monkeypatch.setattr(cores, "usable_cores", lambda: 2)  # side by side even on a 1-core runner
    cfg_path, cfg = done_run[0], done_run[1]
    half = load_config(cfg_path, ["filter.refine_crossfit=true", "filter.refine_crossfit_steps=0.5"])
    fr = half.workdir / "train" / "first_round"
    shutil.rmtree(fr, ignore_errors=True)
    (fr / "fold1").mkdir(parents=True)
    (fr / pipeline.STARTED).write_text(json.dumps({"key": pipeline.Keys(half)["train/first_round"]}))  # a run that stopped
    (fr / "fold1" / "checkpoint.pth").unlink(missing_ok=True)
    (fr / "fold1" / "checkpoint.pth").mkdir()  # the child cannot read its checkpoint
    with pytest.raises(pipeline.StageError, match="cross-fitted student of fold1 failed: IsADirectoryError"):
        _run_all(half)
    (fr / "fold1" / "checkpoint.pth").rmdir()
    _run_all(half)
    summary = json.loads((fr / "summary.json").read_text())
    assert summary["crossfit_side_by_side"] is True
    assert [summary["crossfit"][f"fold{k}"]["steps"] for k in (0, 1)] == [round(half.train.model.steps / 2)] * 2
    _run_all(cfg)  # put the default's rounds back for the tests that follow


def test_a_stage_alone_without_its_inputs_says_what_to_run(tmp_path, tiny_world):
    cfg = load_config(write_config(tmp_path, tiny_world))
    with pytest.raises(pipeline.StageError, match="run `omni ingest CONFIG`"):
        pipeline.run_stage(cfg, "extract")


def test_untrimmed_windows_default_to_the_median_target_duration(done_run):
    cfg = done_run[1]
    un = pd.read_parquet(cfg.workdir / "extract" / "untrimmed" / "samples.parquet")
    lengths = (un["end_s"] - un["start_s"]).round(2)
    info = json.loads((cfg.workdir / "extract" / "untrimmed" / "_done.json").read_text())
    assert 1.5 <= info["window_s"] <= 2.5
    assert (lengths.max() - info["window_s"]) < 1e-6


def test_training_with_loader_worker_processes(done_run, tmp_path):
    from omni.config import ModelConfig
    from omni.learning.data import ClipDataset
    from omni.learning.train import fit

    cfg = done_run[1]
    from omni.learning.train import JointOptions, RunOptions

    samples = pd.read_parquet(cfg.workdir / "manifest" / "train.parquet")
    m = ModelConfig(arch="c3d_small", width=4, input_size=24, num_frames=4, epochs=1, batch_size=4)
    ds = ClipDataset.for_model(samples[samples["source"] == "target"], cfg.workdir, m, train=True)
    aux = {"web": ClipDataset.for_model(samples[samples["source"] != "target"], cfg.workdir, m, train=True)}
    ds.load(0, np.random.default_rng(0))  # maps a shard in this process before workers start
    res = fit(m, list("abcd"), ds, tmp_path / "run", "k", aux=aux, joint=JointOptions(aux_batch_size=2),
              run=RunOptions(loader_workers=1), amp=False)
    assert res["steps"] >= 1 and (tmp_path / "run" / "model.pt").exists()


def test_soft_targets_blend_each_web_samples_label_with_the_first_round_students_probabilities(done_run):
    """train.soft_target_weight w (default 0.5): the OmniSource student learns each sample of the
    soft_target_kinds (default images and untrimmed windows, the samples the second round keeps
    without the student's top-1 agreement) as (1 - w) x its label + w x the first-round
    student's probability vector for it (the second round's scores); web videos and target clips
    keep their label. Changing w redoes only that student and its evaluation."""
    from omni.learning.data import ClipDataset
    from omni.selection.manifest import with_judge_probs

    _run_all(load_config(done_run[0]))  # (an earlier test may have left another setting's units here)
    cfg = load_config(done_run[0], ["train.soft_target_weight=0.4"])
    redone = {u for u, r in _run_all(cfg).items() if not r.cached}
    assert redone == {"train/omnisource", "evaluate/omnisource"}
    d = cfg.workdir / "train" / "omnisource"
    soft = pipeline.soft_target_sources(cfg)
    assert soft == [s.name for s in cfg.sources if s.kind in ("image", "untrimmed")] and soft
    rows = with_judge_probs(pd.read_parquet(d / "train.parquet"), d / "scores.parquet", soft)
    on = rows["source"].isin(soft).to_numpy()
    assert on.any() and rows.loc[on, "judge_probs"].notna().all() and rows.loc[~on, "judge_probs"].isna().all()
    scores = pd.read_parquet(d / "scores.parquet").set_index("sample_id")["teacher_probs"]
    ds = ClipDataset.for_model(rows[on], cfg.workdir, cfg.train.model, train=True, soft_weight=0.4)
    for i, unit in enumerate(ds.units):
        row = int(unit[0])
        want = 0.4 * np.asarray(scores[ds.rows.at[row, "sample_id"]], np.float32)
        want[ds.labels[i]] += 0.6
        assert np.allclose(ds.soft_target(i, row).numpy(), want, atol=1e-5)
    x, y = ds[0]
    assert y.dtype == torch.float32 and abs(float(y.sum()) - 1) < 1e-5
    hard = ClipDataset.for_model(rows[~on], cfg.workdir, cfg.train.model, train=True, soft_weight=0.4)
    assert isinstance(hard[0][1], int)  # no judge's probabilities: the plain label
    assert json.loads((cfg.workdir / "eval" / "omnisource" / "metrics.json").read_text())["num_samples"] == 12
    _run_all(load_config(done_run[0]))  # put the module's run back


def test_a_fresh_run_of_the_same_config_reproduces_the_metrics(tmp_path, tiny_world):
    # a fixed thread count: a run's automatic share of the cores (omni/runtime/cores.py) depends on what
    # else runs on the machine, and another thread count sums floats in another order
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        cfg = load_config(write_config(tmp_path / name, tiny_world, train={"threads": 2}))
        _run_all(cfg)
        runs.append(cfg.workdir)
    assert runs[0] != runs[1]
    for run in ("baseline", "omnisource"):
        a = json.loads((runs[0] / "eval" / run / "metrics.json").read_text())
        b = json.loads((runs[1] / "eval" / run / "metrics.json").read_text())
        assert a == b


def test_extra_crawl_list_columns_reach_the_manifest(tmp_path, tiny_world):
    import yaml

    lst = pd.read_csv(tiny_world / "crawl" / "web_images.csv")
    lst["url"] = [str((tiny_world / "crawl" / u).resolve()) for u in lst["url"]]
    lst["caption"] = [f"caption {i}" for i in range(len(lst))]
    lst = lst.rename(columns={"url": "link", "query": "label"})
    lst.to_csv(tmp_path / "images.csv", index=False)
    cfg_path = write_config(tmp_path, tiny_world)
    data = yaml.safe_load(cfg_path.read_text())
    data["sources"] = [{"name": "imgs", "kind": "image", "list": str(tmp_path / "images.csv"),
                        "url_column": "link", "query_column": "label"}]
    cfg_path.write_text(yaml.safe_dump(data))
    cfg = load_config(cfg_path)
    _run_all(cfg)
    web = pd.read_parquet(cfg.workdir / "manifest" / "web_items.parquet")
    assert len(web) == len(lst)
    assert sorted(web["caption"]) == sorted(lst["caption"])


def test_a_jpeg_frame_store_feeds_the_same_clips_at_a_fraction_of_the_bytes(done_run, tmp_path, tiny_world):
    from omni.learning.data import ClipDataset

    raw_cfg = done_run[1]
    cfg = load_config(write_config(tmp_path, tiny_world, extract={"frame_codec": "jpeg", "jpeg_quality": 90}))
    for stage in ("ingest", "extract"):
        pipeline.run_stage(cfg, stage)
    for unit in ("extract/target", "extract/web_videos", "extract/web_images"):
        raw, jpg = (json.loads((c.workdir / unit / "_done.json").read_text()) for c in (raw_cfg, cfg))
        assert jpg["samples"] == raw["samples"] and jpg["bytes"] < 0.5 * raw["bytes"], unit
    assert list((cfg.workdir / "extract" / "target" / "frames").glob("*.jpgs"))
    for unit in ("extract/target", "extract/web_images"):
        a, b = (pd.read_parquet(c.workdir / unit / "samples.parquet") for c in (raw_cfg, cfg))
        a, b = (x[x["extract_status"] == "ok"].sort_values("sample_id").reset_index(drop=True) for x in (a, b))
        assert a["sample_id"].tolist() == b["sample_id"].tolist()
        da, db = (ClipDataset.for_model(x, c.workdir, raw_cfg.train.model, train=False, group_by_item=False)
                  for x, c in ((a, raw_cfg), (b, cfg)))
        for i in range(min(6, len(da))):
            xa, ya = da[i]
            xb, yb = db[i]
            assert xa.shape == xb.shape and ya == yb
            assert (xa - xb).abs().mean() < 0.15  # normalised units: a few grey levels of JPEG error
