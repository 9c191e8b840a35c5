"""The pure rules, on small hand-made tables: filter, metrics, the manifest join, joint loss."""
import numpy as np
import pandas as pd
import pytest
import torch

from omni.config import FilterConfig
from omni.selection.filter import filter_scores
from omni.selection.manifest import build_manifest
from omni.learning.metrics import classification_metrics, clip_top1

NAMES = ["run", "jump", "swim"]


def _scores(rows, source="web"):
    """Scored samples from (id, label, teacher's probabilities)."""
    probs = [np.asarray(p, float) for _, _, p in rows]
    return pd.DataFrame({"sample_id": [r[0] for r in rows], "source": source, "label": [r[1] for r in rows],
                         "teacher_label": [int(p.argmax()) for p in probs],
                         "teacher_score": [float(p[r[1]]) for r, p in zip(rows, probs)], "teacher_probs": probs})


def test_filter_keeps_only_samples_whose_teacher_top_class_is_the_query():
    s = _scores([("a", 0, [0.9, 0.05, 0.05]), ("b", 0, [0.3, 0.6, 0.1]), ("c", 2, [0.3, 0.3, 0.4])])
    out = filter_scores(s, FilterConfig(require_top1=True, keep_fraction=None), NAMES)
    assert out["filter_status"].tolist() == ["kept", "filtered", "kept"]
    assert out["filter_reason"][1] == "teacher predicts jump (query class p=0.30, rank 2)"


def test_filter_min_score_top_k_and_top1_off_are_knobs():
    s = _scores([("a", 0, [0.9, 0.05, 0.05]), ("b", 0, [0.3, 0.6, 0.1]), ("c", 2, [0.3, 0.3, 0.4]),
                 ("d", 1, [0.5, 0.1, 0.4])])
    assert filter_scores(s, FilterConfig(require_top1=True, keep_fraction=None, min_score=0.5), NAMES)["filter_status"].tolist() == \
        ["kept", "filtered", "filtered", "filtered"]
    assert filter_scores(s, FilterConfig(require_top1=True, keep_fraction=None, top_k=2), NAMES)["filter_status"].tolist() == \
        ["kept", "kept", "kept", "filtered"]  # d's query class ranks third
    assert filter_scores(s, FilterConfig(require_top1=False, keep_fraction=None), NAMES)["filter_status"].tolist() == ["kept"] * 4


def test_filter_relative_threshold_follows_each_sources_median_among_the_top1():
    # source a: top-1 query probs 0.9, 0.8, 0.31 (median 0.8); source b: 0.4, 0.35, 0.1 (median 0.35)
    a = _scores([("a1", 0, [0.9, 0.05, 0.05]), ("a2", 1, [0.1, 0.8, 0.1]), ("a3", 2, [0.3, 0.3, 0.31]),
                 ("a4", 0, [0.2, 0.7, 0.1])], source="a")
    b = _scores([("b1", 0, [0.4, 0.3, 0.3]), ("b2", 1, [0.3, 0.35, 0.35]), ("b3", 2, [0.0, 0.0, 0.1])], source="b")
    s = pd.concat([a, b], ignore_index=True)
    rule = FilterConfig(require_top1=True, keep_fraction=None)
    out = filter_scores(s, rule, NAMES, min_relative=0.5).set_index("sample_id")
    # kept: top-1 and at least half the median of its own source (0.4 for a, 0.175 for b)
    assert out["filter_status"].to_dict() == {"a1": "kept", "a2": "kept", "a3": "filtered", "a4": "filtered",
                                              "b1": "kept", "b2": "kept", "b3": "filtered"}
    assert out.loc["a3", "filter_reason"] == "teacher score 0.31 < 0.5 x this source's median 0.80"
    assert out.loc["a4", "filter_reason"].startswith("teacher predicts jump")  # not top-1: the first rule says why
    assert (filter_scores(s, rule, NAMES)["filter_status"] == "kept").sum() == 6  # 0: off


def test_the_filter_stage_reads_scores_in_batches_without_probability_vectors(tmp_path):
    from omni.selection.filter import read_scores

    s = _scores([("a", 0, [0.9, 0.05, 0.05]), ("b", 0, [0.3, 0.6, 0.1]), ("c", 2, [0.3, 0.3, 0.4]),
                 ("d", 1, [0.5, 0.1, 0.4]), ("e", 1, [0.2, 0.7, 0.1])])
    s.to_parquet(tmp_path / "scores.parquet")
    light = read_scores(tmp_path / "scores.parquet", batch_rows=2)
    assert "teacher_probs" not in light.columns and light["query_rank"].tolist() == [0, 1, 0, 2, 0]
    for rule in (FilterConfig(require_top1=True, keep_fraction=None, top_k=2), FilterConfig()):
        pd.testing.assert_frame_equal(filter_scores(light, rule, NAMES), filter_scores(s, rule, NAMES))


def test_second_round_contradict_drops_only_confident_contradictions_and_relabel_keeps_them(tmp_path):
    from omni.selection.filter import read_scores, second_round

    s = _scores([("agree", 0, [0.5, 0.3, 0.2]),      # the query on top
                 ("unsure", 0, [0.2, 0.45, 0.35]),   # another class on top, but at 0.45
                 ("other", 0, [0.1, 0.8, 0.1]),      # jump, at 0.8: a confident contradiction
                 ("edge", 2, [0.7, 0.0, 0.3])])      # run at exactly the bar
    keep = {"agree": "kept", "unsure": "kept", "other": "filtered", "edge": "filtered"}
    for scores in (s, _light(s, tmp_path, read_scores)):
        out = second_round(scores, FilterConfig(refine_rule="contradict", refine_relabel=False), NAMES).set_index("sample_id")
        assert out["filter_status"].to_dict() == keep
        assert out["filter_label"].to_dict() == {"agree": 0, "unsure": 0, "other": 0, "edge": 2}
        assert out.loc["other", "filter_reason"] == "the first-round student predicts jump (p=0.80; query class p=0.10)"
        # relabel (the default): a confident contradiction trains as the student's class; nothing else moves
        fc = FilterConfig()
        out = second_round(scores, fc, NAMES).set_index("sample_id")
        assert (out["filter_status"] == "kept").all()
        assert out["filter_label"].to_dict() == {"agree": 0, "unsure": 0, "other": 1, "edge": 0}
        assert out.loc["other", "filter_reason"].startswith("relabeled jump: the first-round student's top class")
        # with the top-1 rule, a sample the student is unsure of stays dropped, not relabeled
        fc = FilterConfig(refine_rule="top1", refine_relabel=True, refine_min_contradiction=0.75)
        out = second_round(scores, fc, NAMES).set_index("sample_id")
        assert out["filter_status"].to_dict() == {"agree": "kept", "unsure": "filtered", "other": "kept",
                                                  "edge": "filtered"}
        assert out["filter_label"].to_dict() == {"agree": 0, "unsure": 0, "other": 1, "edge": 2}


def test_second_round_rule_per_kind_of_source_applies_only_to_that_kind(tmp_path):
    """refine_kind_rules: the web videos under the top-1 rule (and its relative bar), the images
    under the default (every sample but the confident contradictions), rows in the input's order."""
    from omni.selection.filter import read_scores, second_round

    rows = [("agree", 0, [0.5, 0.3, 0.2]), ("unsure", 0, [0.2, 0.45, 0.35]), ("other", 0, [0.1, 0.8, 0.1]),
            ("weak", 0, [0.34, 0.33, 0.33])]
    s = pd.concat([_scores([(f"v_{i}", q, p) for i, q, p in rows], source="clips"),
                   _scores([(f"i_{i}", q, p) for i, q, p in rows], source="stills")], ignore_index=True)
    s = s.iloc[[0, 4, 1, 5, 2, 6, 3, 7]].reset_index(drop=True)  # the two sources interleaved
    kinds = {"clips": "video", "stills": "image"}
    fc = FilterConfig(refine_kind_rules={"video": "top1"})
    for scores in (s, _light(s, tmp_path, read_scores)):
        out = second_round(scores, fc, NAMES, kinds=kinds)
        assert out["sample_id"].tolist() == s["sample_id"].tolist()
        got = out.set_index("sample_id")
        assert got["filter_status"].to_dict() == {
            "v_agree": "kept", "v_unsure": "filtered", "v_other": "kept", "v_weak": "kept",
            "i_agree": "kept", "i_unsure": "kept", "i_other": "kept", "i_weak": "kept"}
        assert got.loc["v_other", "filter_label"] == 1 and got.loc["i_other", "filter_label"] == 1
        # the relative bar (its median over the web videos' top-1 samples: 0.42) drops the weak video only
        got = second_round(scores, fc, NAMES, kinds=kinds, min_relative=0.9).set_index("sample_id")
        assert got.loc["v_weak", "filter_status"] == "filtered" and got.loc["v_agree", "filter_status"] == "kept"
        assert got.loc["i_weak", "filter_status"] == "kept"
        # without the kinds map a source's name is its kind: no source is named "video", so one rule for all
        assert (second_round(scores, fc, NAMES)["filter_status"] == "kept").all()
        # the relative bar is the top-1 rule's: the filter's own rule (``same``) ignores it
        same = FilterConfig(refine_rule="same", refine_kind_rules={}, refine_relabel=False, keep_fraction=0.8)
        pd.testing.assert_frame_equal(second_round(scores, same, NAMES, min_relative=0.9).drop(columns="filter_label"),
                                      filter_scores(scores, same, NAMES))


def _light(s, tmp_path, read_scores):
    s.to_parquet(tmp_path / "s.parquet")
    return read_scores(tmp_path / "s.parquet")


def test_a_relabeled_sample_trains_as_its_new_class_and_says_so_in_the_manifest():
    items = pd.DataFrame({"item_id": ["w:0", "w:1"], "source": "web", "kind": "video", "url": ["u0", "u1"],
                          "query": ["run", "run"], "label": [0, 0], "status": "ok", "reason": "", "sha256": ["a", "b"]})
    web = pd.DataFrame({"item_id": ["w:0", "w:1"], "sample_id": ["w:0#0", "w:1#0"], "split": "web", "source": "web",
                        "kind": "video", "label": [0, 0], "clip_index": 0, "start_s": np.nan, "end_s": np.nan,
                        "extract_status": "ok", "extract_reason": "", "shard": "s", "offset": [0, 1], "t": 8,
                        "h": 8, "w": 8})
    target = web.assign(item_id=["t:0", "t:1"], sample_id=["t:0#0", "t:1#0"], split="train", source="target")
    scores = pd.DataFrame({"sample_id": ["w:0#0", "w:1#0"], "teacher": "student", "teacher_label": [0, 1],
                           "teacher_score": [0.9, 0.1]})
    filtered = pd.DataFrame({"sample_id": ["w:0#0", "w:1#0"], "filter_status": "kept", "filter_reason": ["", "relabeled jump"],
                             "filter_label": [0, 1]})
    rows, train = build_manifest(items, web, scores, filtered, target, NAMES, ["web"])
    assert rows.set_index("url")["train_label"].to_dict() == {"u0": "run", "u1": "jump"}
    assert rows.set_index("url")["query"].to_dict() == {"u0": "run", "u1": "run"}  # the crawl's label stays
    assert train.set_index("sample_id")["label"].to_dict() == {"t:0#0": 0, "t:1#0": 0, "w:0#0": 0, "w:1#0": 1}
    assert "filter_label" not in rows.columns


def test_the_default_filter_keeps_the_best_scored_80_percent_per_source_and_query():
    assert FilterConfig().keep_fraction == 0.8 and not FilterConfig().require_top1


def test_filter_keep_fraction_keeps_the_best_scored_share_per_source_and_query():
    rows = [(f"q0-{i}", 0, [p, 1 - p, 0.0]) for i, p in enumerate([0.9, 0.2, 0.6, 0.4])]
    rows += [(f"q1-{i}", 1, [0.5, 0.5, 0.0]) for i in range(2)]
    out = filter_scores(_scores(rows), FilterConfig(require_top1=False, keep_fraction=0.5), NAMES)
    kept = out.loc[out["filter_status"] == "kept", "sample_id"].tolist()
    assert kept == ["q0-0", "q0-2", "q1-0"]  # the best half of each query's items
    assert "below the best 50%" in out.set_index("sample_id").loc["q0-1", "filter_reason"]


def test_metrics_top1_top5_mean_class_accuracy_and_confusion():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([0, 1, 1, 1])
    m = classification_metrics(probs, labels, 3)
    assert m["top1"] == pytest.approx(0.5)
    assert m["top5"] == pytest.approx(1.0)  # top-min(5, K)
    assert m["per_class_accuracy"] == {0: 1.0, 1: pytest.approx(1 / 3)}
    assert m["mean_class_accuracy"] == pytest.approx((1 + 1 / 3) / 2)  # absent classes do not count
    assert m["confusion"][1] == [1, 1, 1]
    views = np.stack([probs, probs[:, ::-1]], axis=1)
    assert clip_top1(views, labels) == pytest.approx(3 / 8)


def _tables():
    items = pd.DataFrame({
        "item_id": ["img:0", "img:1", "img:2", "vid:0", "vid:1"],
        "source": ["img", "img", "img", "vid", "vid"], "kind": ["image"] * 3 + ["video"] * 2,
        "url": list("abcde"), "query": ["run"] * 5, "status": ["ok", "failed", "ok", "ok", "ok"],
        "reason": ["", "http 404", "", "", ""], "sha256": ["s1", "", "s2", "s1", "s3"], "label": [0] * 5})
    ref = {"shard": "x", "offset": 0, "t": 1, "h": 2, "w": 2}
    web = pd.DataFrame([
        {"item_id": "img:0", "sample_id": "img:0#0", "split": "web", "source": "img", "kind": "image", "label": 0,
         "clip_index": 0, "start_s": np.nan, "end_s": np.nan, "extract_status": "ok", "extract_reason": "", **ref},
        {"item_id": "img:2", "sample_id": "img:2#0", "split": "web", "source": "img", "kind": "image", "label": 0,
         "clip_index": 0, "start_s": np.nan, "end_s": np.nan, "extract_status": "failed",
         "extract_reason": "decode failed: x", **ref},
        {"item_id": "vid:0", "sample_id": "vid:0#0", "split": "web", "source": "vid", "kind": "video", "label": 0,
         "clip_index": 0, "start_s": np.nan, "end_s": np.nan, "extract_status": "ok", "extract_reason": "", **ref},
        {"item_id": "vid:1", "sample_id": "vid:1#0", "split": "web", "source": "vid", "kind": "video", "label": 0,
         "clip_index": 0, "start_s": np.nan, "end_s": np.nan, "extract_status": "ok", "extract_reason": "", **ref},
    ])
    scores = pd.DataFrame({"sample_id": ["img:0#0", "vid:0#0", "vid:1#0"], "teacher": ["image", "video", "video"],
                           "teacher_label": [0, 0, 1], "teacher_score": [0.9, 0.8, 0.2]})
    filtered = pd.DataFrame({"sample_id": ["img:0#0", "vid:0#0", "vid:1#0"],
                             "filter_status": ["kept", "kept", "filtered"],
                             "filter_reason": ["", "", "teacher predicts jump (query class p=0.20)"]})
    target = pd.DataFrame([{"item_id": "target-train:0", "sample_id": "t#0", "split": "train", "source": "target",
                            "kind": "video", "label": 1, "clip_index": 0, "start_s": np.nan, "end_s": np.nan,
                            "extract_status": "ok", "extract_reason": "", **ref}])
    return items, web, scores, filtered, target


def test_the_manifest_is_a_join_where_the_first_stage_that_said_no_decides():
    web_items, train = build_manifest(*_tables(), NAMES, ["img", "vid"])
    by_id = web_items.set_index("item_id")
    assert by_id.loc["img:0", "status"] == "kept"
    assert (by_id.loc["img:1", "status"], by_id.loc["img:1", "reason"]) == ("failed", "http 404")
    assert (by_id.loc["img:2", "status"], by_id.loc["img:2", "reason"]) == ("failed", "decode failed: x")
    # the same bytes in a later source are a duplicate of the first source's item
    assert (by_id.loc["vid:0", "status"], by_id.loc["vid:0", "reason"]) == ("duplicate", "same bytes as img:0")
    assert by_id.loc["vid:1", "status"] == "filtered" and by_id.loc["vid:1", "teacher_label"] == "jump"
    assert by_id.loc["vid:1", "extract_status"] == "ok"  # each stage's own column stays
    assert sorted(train["sample_id"]) == ["img:0#0", "t#0"]


def test_joint_loss_sums_target_and_web_cross_entropy_and_mixup_mixes_only_target_clips():
    from omni.learning.train import JointOptions, joint_loss

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x = torch.randn(6, 12)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    dev = torch.device("cpu")
    logits = model(x)
    ce = torch.nn.functional.cross_entropy
    want = ce(logits[:4], y[:4]) + 0.5 * ce(logits[4:], y[4:])
    got = joint_loss(model, x, y, [4, 2], JointOptions(aux_loss_weight=0.5), 0.0, False, dev)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    x0 = x.clone()
    joint_loss(model, x, y, [4, 2], JointOptions(mixup_alpha=0.2), 0.0, False, dev)
    assert torch.equal(x, x0)  # the caller's batch is not changed in place
    target_only = joint_loss(model, x, y, [6], JointOptions(mixup_alpha=0.2), 0.0, False, dev)
    assert target_only.item() == pytest.approx(ce(model(x), y).item(), rel=1e-5)  # no web batch: no mixup


def test_aux_drop_leaves_the_worst_fitted_web_samples_of_each_source_out_of_the_loss_after_its_ramp():
    from omni.learning.train import JointOptions, joint_loss, kept_count

    dev = torch.device("cpu")
    # logits are the input (identity model): 2 target clips, then 4 clips of source A, 2 of source B
    x = torch.tensor([[4., 0.], [0., 4.],                       # target: well fitted
                      [4., 0.], [3., 0.], [0., 5.], [2., 0.],   # A: the third contradicts its label 0
                      [0., 4.], [4., 0.]], requires_grad=True)  # B: the second contradicts its label 1
    y = torch.tensor([0, 1, 0, 0, 0, 0, 1, 1])
    joint = JointOptions(aux_drop=0.5, aux_drop_ramp=0.5)
    loss = joint_loss(torch.nn.Identity(), x, y, [2, 4, 2], joint, 0.0, False, dev, drop=0.5)
    loss.backward()
    ce = torch.nn.functional.cross_entropy
    kept = torch.stack([x[2], x[3], x[6]])  # A keeps its 2 best-fitted clips, B its 1
    want = ce(x[:2], y[:2]) + ce(kept, y[[2, 3, 6]])
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert x.grad[4].abs().sum() == 0 and x.grad[5].abs().sum() == 0 and x.grad[7].abs().sum() == 0
    assert x.grad[2].abs().sum() > 0 and x.grad[0].abs().sum() > 0  # target clips always count
    # the dropped share grows from 0 over the first half of the steps, then stays
    assert [joint.drop_at(s, 100) for s in (0, 25, 50, 90)] == [0.0, 0.25, 0.5, 0.5]
    assert JointOptions().drop_at(50, 100) == 0.0
    assert kept_count(6, 0.3) == 4 and kept_count(1, 0.9) == 1 and kept_count(0, 0.5) == 0
    # under torchrun (ranks choose within their slices) the ranks' losses average to the mean over
    # all kept samples: rank 0 holds the target and half of A, rank 1 the rest of A and B
    halves = [([0, 1, 2, 3], [2, 2]), ([4, 5, 6, 7], [0, 2, 2])]
    k_total = sum(kept_count(n, 0.5) for _, parts in halves for n in parts[1:])
    both = sum(joint_loss(torch.nn.Identity(), x.detach()[i], y[i], parts, joint, 0.0, False, dev,
                          totals=(2, 6, k_total), world_size=2, drop=0.5) / 2 for i, parts in halves)
    want = ce(x[:2], y[:2]) + ce(x[[2, 5, 6]], y[[2, 5, 6]])  # each slice's best-fitted half
    assert k_total == 3 and both.item() == pytest.approx(want.item(), rel=1e-5)


def test_a_step_budget_overrides_epochs_and_the_schedule_warms_up_then_decays():
    from omni.config import ModelConfig
    from omni.learning.train import lr_schedule, total_steps

    assert total_steps(ModelConfig(epochs=3, steps=None), 5) == 15
    assert total_steps(ModelConfig(epochs=3, steps=200), 5) == 200
    f = lr_schedule("cosine", 100, 10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5, abs=0.01) and f(99) < 0.01
    assert lr_schedule("constant", 100, 10)(80) == 1.0
