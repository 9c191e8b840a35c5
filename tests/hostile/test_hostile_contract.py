"""Hostile input through the documented contract (config, target lists, crawl lists, media):
a clear message before any expensive work, or a per-item reason; never a traceback."""
import gzip
import io

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from flows.cli import main
from omni.runtime.atomic import write_parquet_atomic
from omni.config import ConfigError, load_config
from omni.fetching.dedup import mark_duplicates_and_leaks
from omni.fetching.lists import ListError, read_crawl_list, read_target_list
from omni.video.media import MediaError, check_image, check_video, sniff_file
from omni_testing import write_config

CLASSES = ["run", "jump"]


def _file(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


@pytest.mark.parametrize("name,data,message", [
    ("empty.csv", b"", "the list is empty"),
    ("blank.csv", b"  \n\n", "the list is empty"),
    ("blank.txt", b"\n", "the list is empty"),
    ("latin1.csv", "path,label\ncaf\xe9.mp4,run\n".encode("latin-1"), "not UTF-8 text"),
    ("utf16.csv", "path,label\na.mp4,run\n".encode("utf-16"), "not UTF-8 text"),
    ("ragged.csv", b"path,label\na.mp4,run\nb.mp4,run,extra\n", "cannot read as a target list"),
    ("nolabel.csv", b"path,class\na.mp4,run\n", r"missing column\(s\) \['label'\]"),
    ("bad.csv.gz", b"not gzip at all", "not a readable gzip file"),
    ("garbage.parquet", b"PAR1 not really", "cannot read as a target list"),
    ("sup.csv", "path,label\na.mp4,\u00b2\n".encode(), "unknown class '\u00b2'"),
    ("sup.txt", "a.mp4 \u00b2\n".encode(), "expected 'path label_index'"),
])
def test_a_broken_target_list_is_a_list_error(tmp_path, name, data, message):
    with pytest.raises(ListError, match=message):
        read_target_list(_file(tmp_path, name, data), CLASSES)


def test_a_parquet_target_list_is_read(tmp_path):
    pd.DataFrame({"path": ["a.mp4", "b.mp4"], "label": ["run", "1"]}).to_parquet(tmp_path / "t.parquet")
    df = read_target_list(tmp_path / "t.parquet", CLASSES)
    assert df["label_name"].tolist() == ["run", "jump"] and df["path"][0] == str(tmp_path / "a.mp4")
    _file(tmp_path, "t.parquet.gz", gzip.compress((tmp_path / "t.parquet").read_bytes()))
    assert read_target_list(tmp_path / "t.parquet.gz", CLASSES)["label_name"].tolist() == ["run", "jump"]


def test_a_superscript_digit_query_is_a_row_reason_not_a_crash(tmp_path):
    df = read_crawl_list(_file(tmp_path, "l.csv", "url,query\nhttp://h/1.jpg,\u00b2\nhttp://h/2.jpg,1\n"), CLASSES)
    assert df["query_error"][0].startswith("unknown query class") and df["query"][1] == "jump"


def test_a_fifo_list_is_refused_not_read(tmp_path):
    import os

    os.mkfifo(tmp_path / "l.csv")
    with pytest.raises(ListError, match="not a regular file"):
        read_crawl_list(tmp_path / "l.csv", CLASSES)
    with pytest.raises(ListError, match="not found|not a regular file"):
        read_target_list(tmp_path / "l.csv", CLASSES)


def _items(statuses, shas):
    n = len(statuses)
    return pd.DataFrame({"item_id": [f"s:{i:07d}" for i in range(n)], "status": statuses, "reason": [""] * n,
                         "sha256": shas, "thumbs": [""] * n})


NO_TARGETS = pd.DataFrame({"status": [], "split": [], "sha256": [], "path": [], "thumbs": []})


def test_a_failed_row_sharing_an_items_bytes_does_not_make_it_a_duplicate():
    # row 0 failed (say, an unknown query) over the same file as row 1, the list's only usable row
    out = mark_duplicates_and_leaks(_items(["failed", "ok", "ok"], ["h", "h", "h"]), NO_TARGETS, 0.9,
                                    check_near=False)
    assert out["status"].tolist() == ["failed", "ok", "duplicate"]
    assert out["reason"][2] == "same bytes as s:0000001"


def test_a_list_with_no_usable_row_is_marked_without_error():
    out = mark_duplicates_and_leaks(_items(["failed", "failed"], ["", ""]), NO_TARGETS, 0.9, check_near=False)
    assert out["status"].tolist() == ["failed", "failed"]


def test_odd_extra_columns_of_a_list_are_stored_as_json_text(tmp_path):
    df = pd.DataFrame({"url": ["a", "b"], "tags": [["x", 1], ["y"]], "meta": [{"a": 1}, {"a": "z"}],
                       "empty": [{}, {}], "probs": [np.zeros(2, np.float32), np.ones(2, np.float32)]})
    write_parquet_atomic(df, tmp_path / "x.parquet")
    back = pd.read_parquet(tmp_path / "x.parquet")
    assert back["tags"].tolist() == ['["x", 1]', '["y"]'] and back["meta"][1] == '{"a": "z"}'
    assert back["empty"].tolist() == ["{}", "{}"]
    assert back["probs"][1].tolist() == [1.0, 1.0]  # omni's own vectors stay vectors


@pytest.mark.parametrize("size", [(1, 1), (64, 1), (3000, 8)])
def test_a_sliver_image_is_refused_as_too_small(tmp_path, size):
    p = tmp_path / "i.png"
    Image.new("RGB", size, "white").save(p)
    with pytest.raises(MediaError, match="too small"):
        check_image(p, sniff_file(p), 50_000_000, decode_short_side=48)


def test_a_tiny_video_is_refused_as_too_small(tmp_path):
    import av

    p = tmp_path / "v.mp4"
    with av.open(str(p), "w") as out:
        s = out.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 8, 8, "yuv420p"
        for _ in range(10):
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    with pytest.raises(MediaError, match="too small: 8x8"):
        check_video(p, sniff_file(p))


BASE = {"workdir": "w", "classes": ["a", "b"], "target": {"train": "t.csv", "val": "v.csv"}}


@pytest.mark.parametrize("raw,message", [
    ("caf\xe9: 1\n".encode("latin-1"), "config: .* is not UTF-8 text"),
    (yaml.safe_dump({**BASE, "workdir": "a\0b"}).encode(), "workdir: .* contains a NUL byte"),
    (yaml.safe_dump({**BASE, "workdir": "~no_such_user_here/x"}).encode(), "workdir: "),
    (yaml.safe_dump({**BASE, "sources": [{"name": "..", "kind": "image", "list": "l.csv"}]}).encode(),
     r"sources\.0\.name: .*not a usable source name"),
    (yaml.safe_dump({**BASE, "classes": 5}).encode(), r"\n  classes: Input should be"),
])
def test_a_bad_config_file_is_a_config_error(tmp_path, raw, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_file(tmp_path, "c.yaml", raw))


@pytest.mark.parametrize("override", ["train.model.lr=[", "train.model.lr=@x", "train.model.lr=!!python/name:os.system"])
def test_a_set_value_that_is_not_yaml_is_a_config_error(tmp_path, override):
    with pytest.raises(ConfigError, match=r"--set train\.model\.lr: .* is not a YAML value"):
        load_config(_file(tmp_path, "c.yaml", yaml.safe_dump(BASE)), [override])


def test_a_classes_file_with_a_bom_or_in_latin1(tmp_path):
    cfg = load_config(_file(tmp_path, "c.yaml", yaml.safe_dump({**BASE, "classes": "k.txt"})))
    _file(tmp_path, "k.txt", "\ufeffrun\njump\n")
    assert cfg.class_names() == ["run", "jump"]
    _file(tmp_path, "k.txt", "caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="classes: .* is not UTF-8 text"):
        cfg.class_names()


@pytest.mark.parametrize("change,message", [
    ({"train": {"model": {"arch": "resnet_nope"}}}, r"train\.model\.arch: unknown arch 'resnet_nope'"),
    ({"teacher": {"image": {"arch": "tsn_nope_net"}}}, r"teacher\.image\.arch: unknown timm model 'nope_net'"),
    ({"train": {"model": {"pretrained": "missing.pt"}}}, r"train\.model\.pretrained: no such file"),
    ({"target": "EMPTY_TRAIN"}, "the list is empty"),
    ({"sources": "NO_URL_COLUMN"}, "no 'url' column"),
    ({"sources": "WORKDIR_INSIDE"}, "is inside the folder of source 'web_videos'"),
    ({"train": {"augment": {"flip": True, "flip_label_map": [["disc_slide", "swim"]]}}},
     r"train\.augment\.flip_label_map: 'swim' is not a class"),
    ({"train": {"augment": {"flip_label_map": [["disc_slide", "disc_bounce"], ["disc_bounce", "square_slide"]]}}},
     r"each class may be in one pair"),
])
def test_contract_mistakes_stop_the_run_before_any_work(tmp_path, tiny_world, capsys, change, message):
    cfg = yaml.safe_load(write_config(tmp_path, tiny_world).read_text())
    if change.get("target") == "EMPTY_TRAIN":
        cfg["target"]["train"] = str(_file(tmp_path, "train.csv", ""))
    elif change.get("sources") == "NO_URL_COLUMN":
        cfg["sources"][1]["list"] = str(_file(tmp_path, "v.csv", "link,query\nhttp://h/a.mp4,0\n"))
    elif change.get("sources") == "WORKDIR_INSIDE":  # a folder of lists with the workdir in it
        cfg["sources"][1]["list"] = str(tmp_path)
    else:
        for section, value in change.items():
            cfg[section] = {**cfg.get(section, {}), **{k: {**cfg[section].get(k, {}), **v} for k, v in value.items()}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", "--no-prefect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "omni: error:" in err and __import__("re").search(message, err), err
    assert not (tmp_path / "work").exists()  # refused before any stage wrote anything


def test_no_usable_target_train_clip_is_a_stage_error_not_a_traceback(tmp_path, tiny_world, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(2):
        _file(bad, f"c{i}.mp4", b"\x00\x00\x00\x18ftypmp42 not a video")
    cfg = yaml.safe_load(write_config(tmp_path, tiny_world).read_text())
    cfg["target"]["train"] = str(_file(tmp_path, "train.csv", "path,label\nbad/c0.mp4,0\nbad/c1.mp4,1\n"))
    cfg["sources"] = cfg["sources"][:1]
    cfg["ingest"]["local_roots"].append(str(tmp_path))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", "--no-prefect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "omni: error: no usable target training clips" in err and "Traceback" not in err
    reasons = pd.read_parquet(tmp_path / "work" / "ingest" / "target" / "targets.parquet")
    assert (reasons.loc[reasons["split"] == "train", "status"] == "failed").all()


def test_files_replaced_in_place_are_checked_again_and_target_lists_may_name_omnis_columns(tmp_path, tiny_world):
    """A user's target CSV with its own split/item_id/url columns ingests; a web video replaced in
    place by a copy of a val clip is found as a leak on the next run (not trusted from the first
    run's record); a target clip that was broken and is now fixed is checked again."""
    import shutil

    world = tmp_path / "world"
    shutil.copytree(tiny_world, world)
    train = world / "target" / "train.csv"
    rows = train.read_text().splitlines()
    train.write_text("\n".join([rows[0] + ",split,item_id,url"] +
                               [f"{r},train,{i},https://example.com/{i}" for i, r in enumerate(rows[1:])]) + "\n")
    broken = world / "target" / "train" / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    with open(train, "a") as fh:
        fh.write("train/broken.mp4,0,train,99,https://example.com/99\n")
    cfg = write_config(tmp_path, world)
    assert main(["ingest", "--no-prefect", str(cfg)]) == 0
    work = tmp_path / "work" / "ingest"
    targets = pd.read_parquet(work / "target" / "targets.parquet")
    assert {"list_split", "list_item_id", "list_url"} <= set(targets.columns)
    assert targets.loc[targets["path"] == str(broken), "status"].tolist() == ["failed"]
    web = pd.read_parquet(work / "web_videos" / "items.parquet")
    victim = web[web["status"] == "ok"].iloc[0]
    val_clip = targets[(targets["split"] == "val") & (targets["status"] == "ok")]["path"].iloc[0]

    shutil.copyfile(val_clip, victim["path"])  # the crawl's file replaced by a val clip
    shutil.copyfile(web[web["status"] == "ok"].iloc[1]["path"], broken)  # a good clip now
    assert main(["ingest", "--no-prefect", str(cfg)]) == 0
    web = pd.read_parquet(work / "web_videos" / "items.parquet").set_index("item_id")
    assert web.at[victim["item_id"], "status"] == "leak" and web.at[victim["item_id"], "leak_of"] == val_clip
    targets = pd.read_parquet(work / "target" / "targets.parquet")
    assert targets.loc[targets["path"] == str(broken), "status"].tolist() == ["ok"]


def test_list_formats_the_readme_names_and_odd_values_in_extra_columns(tmp_path):
    rows = pd.DataFrame({"url": ["http://h/1.jpg", "http://h/2.jpg"], "query": ["run", "jump"]})
    buf = io.BytesIO()
    rows.to_parquet(buf)
    _file(tmp_path, "l.parquet.gz", gzip.compress(buf.getvalue()))
    assert read_crawl_list(tmp_path / "l.parquet.gz", CLASSES)["query"].tolist() == ["run", "jump"]
    big = 10 ** 30
    jsonl = _file(tmp_path, "l.jsonl", f'{{"url": "http://h/1.jpg", "query": "run", "views": {big}}}\n'
                                       f'{{"url": "http://h/2.jpg", "query": {big}, "views": 3}}\n'
                                       '{"url": "http://h/3.jpg", "query": "jump", "meta": {"k": 1}, "views": null}\n')
    df = read_crawl_list(jsonl, CLASSES)
    assert df["query_error"][0] == "" and "out of range" in df["query_error"][1] and df["query"][2] == "jump"
    write_parquet_atomic(df, tmp_path / "items.parquet")  # what ingest writes: extra columns carried as text
    back = pd.read_parquet(tmp_path / "items.parquet")
    assert back["views"].tolist()[:2] == [str(big), "3"] and pd.isna(back["views"][2])  # missing stays missing
    assert back["meta"].isna().tolist() == [True, True, False] and back["meta"][2] == '{"k": 1}'


def test_a_target_set_with_a_train_val_overlap_and_repeats():
    from omni.fetching.ingest import mark_target_copies

    t = pd.DataFrame({"split": ["train", "train", "train", "val", "val", "train"],
                      "path": ["a", "b", "c", "v", "w", "d"], "status": ["ok", "ok", "ok", "ok", "ok", "failed"],
                      "reason": [""] * 5 + ["not found"], "sha256": ["h1", "h2", "h1", "h2", "h2", None]})
    out = mark_target_copies(t)
    assert out["status"].tolist() == ["ok", "leak", "duplicate", "ok", "duplicate", "failed"]
    assert out["reason"][1].startswith("same bytes as val clip v") and out["reason"][2] == "same bytes as train clip a"


def test_jsonl_titles_with_unicode_line_separators_are_read(tmp_path):
    import json

    rows = [{"url": "http://h/1.jpg", "query": "run", "title": "a\u2028b\u0085c"}, {"url": "http://h/2.jpg", "query": 1}]
    p = _file(tmp_path, "l.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n")
    df = read_crawl_list(p, CLASSES)
    assert df["title"][0] == "a\u2028b\u0085c" and df["query"].tolist() == ["run", "jump"]
