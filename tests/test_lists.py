import gzip
import json

import pandas as pd
import pytest

from omni.fetching.lists import ListError, read_crawl_list, read_target_list

CLASSES = ["run", "jump"]


def test_csv_with_extra_columns_and_index_labels(tmp_path):
    (tmp_path / "l.csv").write_text("url,query,caption\nhttp://x/a.jpg,run,hello\nb.jpg,1,world\n")
    df = read_crawl_list(tmp_path / "l.csv", CLASSES)
    assert df["query"].tolist() == ["run", "jump"]
    assert df["caption"].tolist() == ["hello", "world"]
    assert df["url"][0] == "http://x/a.jpg"
    assert df["url"][1] == str(tmp_path / "b.jpg")  # relative paths resolve against the list


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "json", "parquet", "csv.gz", "jsonl.gz"])
def test_every_table_format_reads_the_same_rows(tmp_path, fmt):
    df = pd.DataFrame({"url": ["http://h/1.jpg", "http://h/2.jpg"], "query": ["run", "jump"]})
    p = tmp_path / f"list.{fmt}"
    if fmt == "tsv":
        df.to_csv(p, sep="\t", index=False)
    elif fmt == "jsonl":
        df.to_json(p, orient="records", lines=True)
    elif fmt == "json":
        p.write_text(json.dumps(df.to_dict("records")))
    elif fmt == "parquet":
        df.to_parquet(p)
    elif fmt == "csv.gz":
        p.write_bytes(gzip.compress(df.to_csv(index=False).encode()))
    else:
        p.write_bytes(gzip.compress(df.to_json(orient="records", lines=True).encode()))
    out = read_crawl_list(p, CLASSES)
    assert out["url"].tolist() == df["url"].tolist() and out["query"].tolist() == ["run", "jump"]


def test_folder_of_lists_and_custom_columns(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "a.csv").write_text("link,label\nhttp://h/1.jpg,run\n")
    (tmp_path / "lists" / "b.csv").write_text("link,label\nhttp://h/2.jpg,jump\n")
    df = read_crawl_list(tmp_path / "lists", CLASSES, url_column="link", query_column="label")
    assert df["url"].tolist() == ["http://h/1.jpg", "http://h/2.jpg"]


def test_plain_url_text_needs_the_source_query(tmp_path):
    (tmp_path / "urls.txt").write_text("http://h/1.jpg\n# comment\nhttp://h/2.jpg\n")
    with pytest.raises(ListError, match="no 'query' column"):
        read_crawl_list(tmp_path / "urls.txt", CLASSES)
    df = read_crawl_list(tmp_path / "urls.txt", CLASSES, default_query="jump")
    assert df["query"].tolist() == ["jump", "jump"]


def test_mmaction_text_and_untrimmed_json(tmp_path):
    (tmp_path / "l.txt").write_text("videos/a.mp4 0\nvideos/b.mp4 1\n")
    df = read_crawl_list(tmp_path / "l.txt", CLASSES)
    assert df["query"].tolist() == ["run", "jump"]
    (tmp_path / "u.json").write_text(json.dumps(
        [{"video_dir": "rawvideo_dataset", "label": 1, "num_clips": 2, "positive_clip_inds": [0]}]))
    df = read_crawl_list(tmp_path / "u.json", CLASSES)
    assert df["url"].tolist() == [str(tmp_path / "rawvideo_dataset/part_0.mp4"),
                                  str(tmp_path / "rawvideo_dataset/part_1.mp4")]
    assert df["listed_positive"].tolist() == [True, False]


def test_unknown_query_is_recorded_not_raised(tmp_path):
    (tmp_path / "l.csv").write_text("url,query\nhttp://h/1.jpg,swim\n")
    df = read_crawl_list(tmp_path / "l.csv", CLASSES)
    assert "unknown class 'swim'" in df["query_error"][0]


def test_target_lists_csv_and_mmaction(tmp_path):
    (tmp_path / "t.csv").write_text("path,label\na.mp4,jump\nb.mp4,0\n")
    df = read_target_list(tmp_path / "t.csv", CLASSES)
    assert df["label"].tolist() == [1, 0] and df["path"][0] == str(tmp_path / "a.mp4")
    (tmp_path / "t.txt").write_text("a.mp4 1\n")
    assert read_target_list(tmp_path / "t.txt", CLASSES)["label_name"].tolist() == ["jump"]
    (tmp_path / "bad.csv").write_text("path,label\na.mp4,swim\n")
    with pytest.raises(ListError, match="unknown class"):
        read_target_list(tmp_path / "bad.csv", CLASSES)
