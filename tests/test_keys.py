"""Every setting changes the key of exactly the units that read it, and of what follows them.

The expectations below are written out by hand (the spec), not derived from omni.pipeline: a
setting a unit reads but does not hash would reuse stale results; a setting hashed by a unit
that does not read it would redo work for nothing.
"""
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from omni import pipeline
from omni.config import Config, config_from_dict

SOURCES = {"img": "image", "vid": "video", "un": "untrimmed"}

# which units read each key directly; "*" = every unit of that stage (the spec)
ALL_INGEST = ["ingest/target", "ingest/img", "ingest/vid", "ingest/un"]
WEB_INGEST = ["ingest/img", "ingest/vid", "ingest/un"]
ALL_EXTRACT = ["extract/target", "extract/img", "extract/vid", "extract/un"]
CLIP_EXTRACT = ["extract/target", "extract/vid", "extract/un"]
TEACHERS = ["teacher/image", "teacher/video"]
SCORES = ["score/img", "score/vid", "score/un"]
TRAINS = ["train/baseline", "train/first_round", "train/omnisource"]
EVALS = ["evaluate/baseline", "evaluate/first_round", "evaluate/omnisource"]
RUNTIME = []

READERS = {
    "ingest.workers": RUNTIME, "ingest.per_host": RUNTIME, "extract.workers": RUNTIME,
    "train.device": RUNTIME, "train.threads": RUNTIME, "train.loader_workers": RUNTIME,
    "train.checkpoint_every_steps": RUNTIME, "train.baseline": RUNTIME, "evaluate.batch_size": RUNTIME,
    "train.nproc_per_node": RUNTIME, "cluster.*": RUNTIME,  # where work runs, never what it computes
    "ingest.leak_threshold": WEB_INGEST, "ingest.leak_check": WEB_INGEST, "ingest.image_short_side": WEB_INGEST,
    "ingest.max_image_pixels": WEB_INGEST,
    "ingest.*": ALL_INGEST,
    "extract.short_side": ALL_EXTRACT, "extract.shard_items": ALL_EXTRACT,
    "extract.frames_per_clip": CLIP_EXTRACT, "extract.backend": CLIP_EXTRACT,
    "extract.fps": CLIP_EXTRACT, "extract.max_frames_per_clip": CLIP_EXTRACT,
    "extract.window_s": ["extract/un"], "extract.stride_s": ["extract/un"], "extract.shot_split": ["extract/un"],
    "extract.shot_threshold": ["extract/un"], "extract.max_duration_s": CLIP_EXTRACT,
    "extract.max_windows_per_video": ["extract/un"], "extract.frame_codec": ALL_EXTRACT,
    "extract.jpeg_quality": ALL_EXTRACT,
    # a model's input size and resize rule set the stored short side (extract.short_side: auto)
    **{f"{m}.{k}": ALL_EXTRACT + units for m, units in (("teacher.image", ["teacher/image"]),
                                                         ("teacher.video", ["teacher/video"]),
                                                         ("train.model", TRAINS))
       for k in ("input_size", "resize")},
    "teacher.image.*": ["teacher/image"], "teacher.video.*": ["teacher/video"],
    "filter.refine": ["train/omnisource"],  # off: no first-round student; omnisource learns from round 1
    "filter.refine_rule": ["train/omnisource"],  # the second round's rule
    "filter.refine_kind_rules": ["train/omnisource"],  # its rule for one kind of source
    "filter.refine_min_score": ["train/omnisource"],  # the second round's threshold
    "filter.refine_min_relative": ["train/omnisource"],  # its threshold relative to the median
    "filter.refine_crossfit": ["train/first_round", "train/omnisource"],  # two first-round students
    # each cross-fitted student's share of the steps: read only with refine_crossfit (off by default; see below)
    "filter.refine_crossfit_steps": [],
    "filter.refine_relabel": ["train/omnisource"],  # contradicted samples kept with the student's class
    # the bar of a contradiction, read by refine_rule contradict and refine_relabel (both default; see below)
    "filter.refine_min_contradiction": ["train/omnisource"],
    "filter.*": ["filter"],
    "train.model.*": TRAINS, "train.seed": TEACHERS + TRAINS,
    "train.augment.*": TEACHERS + TRAINS,  # teachers and students alike
    "train.amp": TEACHERS + SCORES + TRAINS + EVALS,
    "train.soft_target_weight": ["train/omnisource"],  # the second round's student's soft targets
    "train.soft_target_kinds": ["train/omnisource"],  # and the kinds of source that learn them
    "train.*": ["train/first_round", "train/omnisource"],  # the joint-training knobs
    "evaluate.*": EVALS,
}

# what each unit reads from other units (the spec's copy of the DAG)
DAG = {
    "ingest/target": [], "ingest/img": ["ingest/target"], "ingest/vid": ["ingest/target"],
    "ingest/un": ["ingest/target"],
    "extract/target": ["ingest/target"], "extract/img": ["ingest/img"], "extract/vid": ["ingest/vid"],
    "extract/un": ["ingest/un", "ingest/target"],
    "teacher/image": ["extract/target"], "teacher/video": ["extract/target"],
    "score/img": ["extract/img", "teacher/image"], "score/vid": ["extract/vid", "teacher/video"],
    "score/un": ["extract/un", "teacher/video"],
    "filter": SCORES, "manifest": ["filter", "extract/target"] + WEB_INGEST + ["extract/img", "extract/vid", "extract/un"],
    "train/baseline": ["extract/target"], "train/first_round": ["manifest"],
    "train/omnisource": ["train/first_round", "manifest", "extract/target"] + WEB_INGEST
    + ["extract/img", "extract/vid", "extract/un"],  # the second round re-scores every web sample
    "evaluate/baseline": ["train/baseline", "extract/target"],
    "evaluate/first_round": ["train/first_round", "extract/target"],
    "evaluate/omnisource": ["train/omnisource", "extract/target"],
}


def readers(path: str) -> list[str]:
    if path in READERS:
        return READERS[path]
    parts = path.split(".")
    for n in range(len(parts) - 1, 0, -1):
        wild = ".".join(parts[:n]) + ".*"
        if wild in READERS:
            return READERS[wild]
    raise AssertionError(f"the spec does not say which units read {path}: add it to READERS")


def affected(direct: list[str]) -> set[str]:
    out = set(direct)
    changed = True
    while changed:
        changed = False
        for unit, ups in DAG.items():
            if unit not in out and out & set(ups):
                out.add(unit)
                changed = True
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("keys")
    (d / "train.csv").write_text("path,label\na.mp4,a\n")
    (d / "val.csv").write_text("path,label\nb.mp4,b\n")
    for name in SOURCES:
        (d / f"{name}.csv").write_text(f"url,query\nhttp://example.com/{name}.x,a\n")
    return {"workdir": str(d / "w"), "classes": ["a", "b"],
            "target": {"train": str(d / "train.csv"), "val": str(d / "val.csv")},
            "sources": [{"name": n, "kind": k, "list": str(d / f"{n}.csv")} for n, k in SOURCES.items()],
            "extract": {}, "_dir": d}


def _cfg(data: dict) -> Config:
    data = {k: v for k, v in data.items() if k != "_dir"}
    return config_from_dict(data, base=Path("/"))


def _keys(cfg: Config) -> dict[str, str]:
    keys = pipeline.Keys(cfg)
    return {u: keys[u] for u in pipeline.all_units(cfg)}


def _candidates(value, annotation):
    """Other valid values to try for a setting."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    literals = [a for a in args if isinstance(a, str)] if origin is typing.Literal else []
    for a in args:
        if typing.get_origin(a) is typing.Literal:
            literals += list(typing.get_args(a))
    out = [v for v in literals if v != value] + ([True, False] if bool in args else [])
    if value == "auto":
        out.append(320)
    if isinstance(value, bool):
        out.append(not value)
    elif isinstance(value, int):
        out += [value + 1, value - 1, value * 2]
    elif isinstance(value, float):
        out += [value * 0.5, value + 0.1, 0.5]
    elif isinstance(value, str):
        out.append(value + "x")
    elif isinstance(value, list):
        out += [["/tmp"], value + ["x"], [], [("a", "b")]]
    elif isinstance(value, dict):
        out += [{**value, "GPU": 1.0}, {}, {"video": "top1"}]
    elif value is None:
        out += [True, 3, 0.5, 7, 64, 2.5, "/tmp/w.pt", ["/tmp"], "x"]
    return [v for v in out if v != value or type(v) is not type(value)]


def _leaves(model: BaseModel, prefix: str):
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        path = f"{prefix}.{name}"
        if isinstance(value, BaseModel):
            yield from _leaves(value, path)
        else:
            yield path, value, field.annotation


def _set(data: dict, path: str, value) -> dict:
    import copy

    data = copy.deepcopy(data)
    node = data
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return data


SECTIONS = ["ingest", "extract", "teacher", "filter", "train", "evaluate", "cluster"]


def test_every_setting_changes_exactly_the_units_that_read_it(base):
    cfg0 = _cfg(base)
    before = _keys(cfg0)
    assert set(before) == set(DAG)
    checked = 0
    for section in SECTIONS:
        for path, value, annotation in _leaves(getattr(cfg0, section), section):
            for other in _candidates(value, annotation):
                try:
                    cfg = _cfg(_set(base, path, other))
                except Exception:
                    continue
                break
            else:
                raise AssertionError(f"no other valid value found for {path}")
            after = _keys(cfg)
            changed = {u for u in before if u in after and after[u] != before[u]}
            assert changed == affected(readers(path)), path
            checked += 1
    assert checked >= 60


def test_auto_short_side_follows_the_models_input_sizes(base):
    """extract.short_side: auto stores frames at what the models can use: a model input past the
    next 32-px step re-extracts every source; an explicit short side ignores the models."""
    from omni.config import needed_short_side

    from omni.config import ModelConfig

    assert [needed_short_side([ModelConfig(input_size=s, resize="crop")]) for s in (32, 48, 64, 112, 224)] == \
        [64, 96, 96, 160, 320]
    # a squashing model (the default) needs only its input size
    assert [needed_short_side([ModelConfig(input_size=s)]) for s in (32, 48, 64, 112, 224)] == \
        [32, 64, 64, 128, 224]
    cfg0 = _cfg(base)
    assert cfg0.frame_short_side() == 64
    before = _keys(cfg0)
    big = _cfg(_set(base, "train.model.input_size", 112))
    assert big.frame_short_side() == 128
    after = _keys(big)
    assert {u for u in before if after[u] != before[u]} == affected(ALL_EXTRACT + TRAINS)
    fixed = _set(base, "extract.short_side", 320)
    before, after = _keys(_cfg(fixed)), _keys(_cfg(_set(fixed, "train.model.input_size", 112)))
    assert {u for u in before if after[u] != before[u]} == affected(TRAINS)


@pytest.mark.parametrize("field,value", [("query", "a"), ("url_column", "link"), ("query_column", "label")])
def test_a_source_setting_changes_only_that_source(base, field, value):
    before = _keys(_cfg(base))
    data = _set(base, "extract", {})
    data["sources"] = [dict(s) for s in base["sources"]]
    data["sources"][1][field] = value
    after = _keys(_cfg(data))
    assert {u for u in before if after[u] != before[u]} == affected(["ingest/vid"])


def test_editing_a_list_or_the_targets_changes_what_reads_them(base):
    before = _keys(_cfg(base))
    d = base["_dir"]
    original = (d / "img.csv").read_text()
    (d / "img.csv").write_text(original + "http://example.com/more.x,b\n")
    try:
        after = _keys(_cfg(base))
    finally:
        (d / "img.csv").write_text(original)
    assert {u for u in before if after[u] != before[u]} == affected(["ingest/img"])
    (d / "val.csv").write_text("path,label\nc.mp4,b\n")
    after = _keys(_cfg(base))
    assert {u for u in before if after[u] != before[u]} == set(DAG)  # everything builds on the target


def test_setting_window_s_cuts_untrimmed_windows_loose_from_the_targets(base):
    data = _set(base, "extract.window_s", 2.0)
    cfg = _cfg(data)
    assert pipeline.upstream(cfg, "extract/un") == ["ingest/un"]


def test_removing_a_source_keeps_every_other_units_key(base):
    before = _keys(_cfg(base))
    data = dict(base)
    data["sources"] = [s for s in base["sources"] if s["name"] != "vid"]
    after = _keys(_cfg(data))
    same = {u for u in after if after[u] == before.get(u)}
    assert same == set(after) - {"filter", "manifest", "train/first_round", "evaluate/first_round",
                                 "train/omnisource", "evaluate/omnisource"}


def test_the_second_rounds_rule_changes_only_the_second_round(base):
    """refine_rule (filter.refine is on by default) re-selects and retrains only the student omni
    hands over: the filter, the first-round student and everything before them keep their keys."""
    on = base
    before = _keys(_cfg(on))
    after = _keys(_cfg(_set(on, "filter.refine_rule", "same")))
    assert {u for u in before if after[u] != before[u]} == {"train/omnisource", "evaluate/omnisource"}
    assert "train/first_round" in before


def test_target_media_are_keyed_by_content_not_by_their_timestamps(tmp_path):
    """A target set copied elsewhere with new mtimes (cp -r, tar, a restore) keeps every key;
    changed bytes change them; a FIFO in the list is never opened."""
    import os

    d = tmp_path
    for name in ("a.mp4", "b.mp4"):
        (d / name).write_bytes(b"clip " + name.encode())
    (d / "train.csv").write_text(f"path,label\n{d / 'a.mp4'},a\n")
    (d / "val.csv").write_text(f"path,label\n{d / 'b.mp4'},b\n")
    (d / "w").mkdir()
    data = {"workdir": str(d / "w"), "classes": ["a", "b"],
            "target": {"train": str(d / "train.csv"), "val": str(d / "val.csv")}}
    before = _keys(_cfg(data))
    assert (d / "w" / ".omni-hashes.json").exists()  # the hashes are remembered in the workdir
    for name in ("a.mp4", "b.mp4"):
        os.utime(d / name, ns=(1_000_000_123, 1_000_000_123))  # same bytes, new times
    assert _keys(_cfg(data)) == before
    (d / "w" / ".omni-hashes.json").write_text("{not json")  # a corrupt memo costs a re-hash only
    assert _keys(_cfg(data)) == before
    (d / "b.mp4").write_bytes(b"clip B.mp4")  # an edit: same size, other bytes (and a new mtime)
    after = _keys(_cfg(data))
    assert all(after[u] != before[u] for u in ("ingest/target", "extract/target", "train/baseline",
                                               "evaluate/baseline"))
    os.unlink(d / "b.mp4")
    os.mkfifo(d / "b.mp4")  # would block a reader forever
    assert _keys(_cfg(data))["ingest/target"] not in (before["ingest/target"], after["ingest/target"])


def test_the_hash_memo_forgets_files_that_are_gone(tmp_path):
    """A workdir outlives many target sets: the memo keeps entries only for files that exist."""
    import json

    from omni.cache import HashMemo

    memo_path = tmp_path / "memo.json"
    old, new = tmp_path / "old.mp4", tmp_path / "new.mp4"
    old.write_bytes(b"old clip")
    memo = HashMemo(memo_path)
    memo.fingerprint(old)
    memo.save()
    assert str(old) in json.loads(memo_path.read_text())
    old.unlink()
    new.write_bytes(b"new clip")
    memo = HashMemo(memo_path)
    memo.fingerprint(new)
    memo.save()
    assert list(json.loads(memo_path.read_text())) == [str(new)]


def test_the_contradiction_bar_rekeys_the_second_round_only_where_a_rule_reads_it(base):
    """refine_min_contradiction is read by refine_rule contradict (the default) and by
    refine_relabel (on by default): then changing it redoes the second round only; under the
    top-1 rule alone it changes no key."""
    top1 = _set(_set(base, "filter.refine_rule", "top1"), "filter.refine_relabel", False)
    for on in (base, _set(top1, "filter.refine_rule", "contradict"), _set(top1, "filter.refine_relabel", True)):
        before = _keys(_cfg(on))
        after = _keys(_cfg(_set(on, "filter.refine_min_contradiction", 0.9)))
        assert {u for u in before if after[u] != before[u]} == {"train/omnisource", "evaluate/omnisource"}
    before = _keys(_cfg(top1))
    assert _keys(_cfg(_set(top1, "filter.refine_min_contradiction", 0.9))) == before


def test_soft_targets_rekey_only_the_second_rounds_student_and_only_with_a_second_round(base):
    """train.soft_target_weight and soft_target_kinds are read by the second round's student alone:
    with filter.refine on they redo that student only; with it off (no first-round student to
    take probabilities from) they change no key."""
    before = _keys(_cfg(base))
    for path, value in (("train.soft_target_weight", 0.3), ("train.soft_target_weight", 0.0),
                        ("train.soft_target_kinds", ["video"])):
        after = _keys(_cfg(_set(base, path, value)))
        assert {u for u in before if after[u] != before[u]} == {"train/omnisource", "evaluate/omnisource"}, path
    off = _set(base, "filter.refine", False)
    assert _keys(_cfg(_set(off, "train.soft_target_weight", 0.3))) == _keys(_cfg(off))
    # no source of those kinds, or a weight of 0: the same training, the same key
    none = _keys(_cfg(_set(base, "train.soft_target_weight", 0.0)))
    assert _keys(_cfg(_set(base, "train.soft_target_kinds", []))) == none


def test_local_files_of_a_crawl_list_are_keyed_by_content(tmp_path):
    """A web video list of local files: a file replaced in place (or touched: only its stat is
    read, never an untrusted list's files) re-keys its source, and only it."""
    import os

    d = tmp_path
    for name in ("t.mp4", "v.mp4", "w1.mp4", "w2.jpg"):
        (d / name).write_bytes(b"bytes of " + name.encode())
    (d / "train.csv").write_text(f"path,label\n{d / 't.mp4'},a\n")
    (d / "val.csv").write_text(f"path,label\n{d / 'v.mp4'},b\n")
    (d / "vid.csv").write_text("url,query\nw1.mp4,a\nhttp://example.com/x.mp4,b\n")
    (d / "img.csv").write_text("url,query\nw2.jpg,a\n")
    (d / "w").mkdir()
    data = {"workdir": str(d / "w"), "classes": ["a", "b"],
            "target": {"train": str(d / "train.csv"), "val": str(d / "val.csv")},
            "sources": [{"name": "vid", "kind": "video", "list": str(d / "vid.csv")},
                        {"name": "img", "kind": "image", "list": str(d / "img.csv")}]}
    before = _keys(_cfg(data))
    assert _keys(_cfg(data)) == before
    os.utime(d / "w1.mp4", ns=(1_000_000_123, 1_000_000_123))
    (d / "w1.mp4").write_bytes(b"a val clip now")
    after = _keys(_cfg(data))
    assert after["ingest/vid"] != before["ingest/vid"] and after["extract/vid"] != before["extract/vid"]
    assert after["ingest/img"] == before["ingest/img"] and after["ingest/target"] == before["ingest/target"]


def test_the_cross_fitted_students_steps_rekey_the_first_round_only_with_crossfit(base):
    """refine_crossfit_steps changes no key while refine_crossfit is off; with it on, it redoes the
    first round and everything after it, nothing before."""
    assert _keys(_cfg(_set(base, "filter.refine_crossfit_steps", 0.5))) == _keys(_cfg(base))
    on = _set(base, "filter.refine_crossfit", True)
    before = _keys(_cfg(on))
    after = _keys(_cfg(_set(on, "filter.refine_crossfit_steps", 0.5)))
    assert {u for u in before if after[u] != before[u]} == {"train/first_round", "evaluate/first_round",
                                                           "train/omnisource", "evaluate/omnisource"}


def test_the_video_pixel_cap_reaches_the_units_that_decode_video(base):
    """Extract decodes no video frame past ingest.max_video_pixels: the clip extract units read it
    (absent at its default, so the keys of runs before it stay valid); an image source's does not."""
    capped = _cfg(_set(base, "ingest.max_video_pixels", 1_000_000))
    assert [pipeline.unit_settings(capped, u).get("max_video_pixels") for u in ALL_EXTRACT] == [
        1_000_000, None, 1_000_000, 1_000_000]  # target, img, vid, un
    assert not any("max_video_pixels" in pipeline.unit_settings(_cfg(base), u) for u in ALL_EXTRACT)
