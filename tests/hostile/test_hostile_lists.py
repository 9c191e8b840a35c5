"""Hostile crawl lists: a clear ListError or a per-row reason, never a traceback, and bounded."""
import gzip
import json

import pandas as pd
import pytest
from hostile_helpers import Timer

from omni import lists
from omni.lists import ListError, read_crawl_list

CLASSES = ["run", "jump"]


def _read(tmp_path, name, text, **kw):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return read_crawl_list(path, CLASSES, **kw)


@pytest.mark.parametrize("name,text,message", [
    ("h.csv", "url,query\n", "the list has no rows"),
    ("h.tsv", "url\tquery\n", "the list has no rows"),
    ("e.csv", "", "the list is empty"),
    ("e.jsonl", "\n\n", "the list is empty"),
    ("e.txt", "# only a comment\n", "the list has no rows"),
    ("e.json", "[]", "the list has no rows"),
    ("u.json", '{"items": []}', "the list has no rows"),
    ("n.json", "42", "must hold a list of records"),
    ("s.json", '"just a string"', "must hold a list of records"),
    ("m.json", '[{"url": "a"}, 3]', "must hold a list of records"),
    ("bad.json", "{not json", "cannot read as .json list"),
    ("bad.jsonl", '{"url": "a", "query": "run"}\n{broken\n', "cannot read as .jsonl list"),
    ("ragged.csv", "url,query\na,run\nb,run,extra,more\n", "cannot read as .csv list"),
    ("latin1.csv", b"url,query\n\xff\xfe\xfa,run\n", "not UTF-8 text"),
    ("garbage.parquet", b"PAR1 not really", "cannot read as .parquet list"),
    ("nourl.csv", "link,query\nhttp://h/1.jpg,run\n", "no 'url' column"),
    ("noquery.csv", "url\nhttp://h/1.jpg\n", "no 'query' column"),
])
def test_unusable_lists_are_a_clear_list_error(tmp_path, name, text, message):
    with pytest.raises(ListError, match=message):
        _read(tmp_path, name, text)


def test_every_row_invalid_gives_a_reason_per_row(tmp_path):
    df = _read(tmp_path, "bad.csv", "url,query\nhttp://h/1.jpg,swim\n,run\nhttp://h/2.jpg,7\nhttp://h/3.jpg,-1\n")
    assert len(df) == 4
    assert df["query_error"][0].startswith("unknown query class") and df["query_error"][1] == ""
    assert df["url"][1] == ""  # an empty URL stays empty (ingest: "empty URL"), not the list's folder
    assert "out of range" in df["query_error"][2] and "out of range" in df["query_error"][3]


def test_jsonl_nulls_bools_and_numbers(tmp_path):
    rows = [{"url": None, "query": "run"}, {"url": "http://h/a.jpg", "query": True},
            {"url": 12345, "query": 1.0}, {"url": "http://h/b.jpg", "query": None}, {"url": float("nan"), "query": 0}]
    df = _read(tmp_path, "l.jsonl", "\n".join(json.dumps(r) for r in rows))
    assert df["url"].tolist()[0] == "" and df["url"].tolist()[4] == ""
    assert df["url"][2] == str(tmp_path / "12345")
    assert df["query_error"][1].startswith("unknown query class") and df["query"][2] == "jump"
    assert df["query_error"][3].startswith("unknown query class")


def test_scheme_urls_are_not_turned_into_paths(tmp_path):
    urls = ["data:image/png;base64,AAAA", "javascript:alert(1)", "ftp://h/x.mp4", "mailto:a@b.c", "file:///etc/passwd",
            "HTTP://H/X.JPG", "videos/a.mp4", "/abs/b.mp4", "../up/c.mp4", "~/home.mp4", "C:/windows/path.mp4"]
    df = _read(tmp_path, "u.txt", "\n".join(urls), default_query="run")
    assert df["url"].tolist()[:6] == urls[:6]
    assert df["url"][6] == str(tmp_path / "videos/a.mp4") and df["url"][7] == "/abs/b.mp4"
    assert df["url"][8] == str(tmp_path / "../up/c.mp4")  # the fetcher resolves .. and checks local_roots
    assert df["url"][10] == str(tmp_path / "C:/windows/path.mp4")


@pytest.mark.parametrize("column", sorted(lists.RESERVED_COLUMNS - {"row_error"}) + ["list_source"])
def test_a_column_named_like_omnis_own_is_carried_under_a_prefix(tmp_path, column):
    df = _read(tmp_path, "c.csv", f"url,query,{column}\nhttp://h/1.jpg,run,users value\n")
    carried = f"list_{column}" if column in lists.RESERVED_COLUMNS else column
    assert df[carried].tolist() == ["users value"]
    # what ingest does next must not collide
    df.insert(0, "item_id", ["s:0000000"])
    df.insert(1, "source", "s")
    df.insert(2, "kind", "image")
    if column not in ("list_file", "list_row", "query_error", "list_source"):
        assert df[column if column in ("item_id", "source", "kind") else "url"].notna().all()


def test_columns_named_url_or_query_next_to_custom_ones(tmp_path):
    df = _read(tmp_path, "c.csv", "link,label,url,query,list_url\nhttp://h/1.jpg,run,other,jump,x\n",
               url_column="link", query_column="label")
    assert df["url"].tolist() == ["http://h/1.jpg"] and df["query"].tolist() == ["run"]
    assert df["list_list_url"].tolist() == ["other"] and df["list_query"].tolist() == ["jump"]
    assert df["list_url"].tolist() == ["x"]  # the list's own column keeps its name


@pytest.mark.parametrize("record,reason", [
    ({"video_dir": "v", "label": 0, "num_clips": 300000}, "bad list row: num_clips 300000 > 10000 (limit per record)"),
    ({"video_dir": "v", "label": 0, "num_clips": 1e300}, "bad list row: num_clips 1e+300 > 10000 (limit per record)"),
    ({"video_dir": "v", "label": 0, "num_clips": -3}, "bad list row: num_clips '-3' is not a count"),
    ({"video_dir": "v", "label": 0, "num_clips": 2.5}, "bad list row: num_clips '2.5' is not a count"),
    ({"video_dir": "v", "label": 0, "num_clips": "9"}, "bad list row: num_clips '9' is not a count"),
    ({"video_dir": "v", "label": 0, "num_clips": True}, "bad list row: num_clips 'True' is not a count"),
    ({"video_dir": "v", "label": 0, "num_clips": float("inf")}, "bad list row: num_clips 'inf' is not a count"),
    ({"video_dir": "", "label": 0, "num_clips": 2}, "bad list row: no video_dir"),
    ({"video_dir": ["x"], "label": 0, "num_clips": 2}, "bad list row: no video_dir"),
    ({"video_dir": "v", "num_clips": 2}, "bad list row: no label"),
])
def test_untrimmed_records_that_cannot_be_expanded_get_a_reason(tmp_path, record, reason):
    good = {"video_dir": "ok_dir", "label": 1, "num_clips": 2, "positive_clip_inds": [1]}
    with Timer() as t:
        df = _read(tmp_path, "u.json", json.dumps([good, record]))
    assert t.s < 1
    assert len(df) == 3 and df["query_error"].tolist()[:2] == ["", ""]
    assert df["query_error"][2] == reason
    assert df["listed_positive"].tolist()[:2] == [False, True]


def test_untrimmed_expansion_is_bounded_for_the_whole_list(tmp_path, monkeypatch):
    monkeypatch.setattr(lists, "MAX_EXPANDED_ROWS", 100)
    records = [{"video_dir": f"d{i}", "label": 0, "num_clips": 30} for i in range(4)]
    with pytest.raises(ListError, match="expand to more than 100 rows"):
        _read(tmp_path, "u.json", json.dumps(records))
    ok = _read(tmp_path, "v.json", json.dumps(records[:3]))
    assert len(ok) == 90


def test_untrimmed_odd_positive_indices(tmp_path):
    df = _read(tmp_path, "u.json", json.dumps([{"video_dir": "d", "label": "run", "num_clips": 2,
                                                 "positive_clip_inds": "all"}]))
    assert df["listed_positive"].tolist() == [False, False]


def test_compressed_list_bombs_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(lists, "MAX_LIST_TEXT_BYTES", 1 << 20)
    text = b"url,query\n" + b"http://h/x.jpg,run\n" * 200_000  # 3.8 MB of text, a few KB compressed
    (tmp_path / "bomb.csv.gz").write_bytes(gzip.compress(text))
    with pytest.raises(ListError, match="decompresses to more than 1 MB"):
        read_crawl_list(tmp_path / "bomb.csv.gz", CLASSES)
    (tmp_path / "fine.csv.gz").write_bytes(gzip.compress(text[:50_000]))
    assert len(read_crawl_list(tmp_path / "fine.csv.gz", CLASSES)) > 2000


def test_a_folder_with_an_empty_list_among_good_ones(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("url,query\nhttp://h/1.jpg,run\n")
    (tmp_path / "d" / "b.csv").write_text("url,query\n")
    df = read_crawl_list(tmp_path / "d", CLASSES)
    assert df["url"].tolist() == ["http://h/1.jpg"]


def test_parquet_with_odd_types(tmp_path):
    pd.DataFrame({"url": ["http://h/1.jpg", None, "http://h/3.jpg"], "query": [0, 1, 5],
                  "source": ["a", "b", "c"]}).to_parquet(tmp_path / "p.parquet")
    df = read_crawl_list(tmp_path / "p.parquet", CLASSES)
    assert df["url"][1] == "" and df["list_source"].tolist() == ["a", "b", "c"]
    assert df["query"].tolist()[:2] == ["run", "jump"] and "out of range" in df["query_error"][2]
    pd.DataFrame({"url": [1, 2], "query": [0.0, 1.0]}).to_parquet(tmp_path / "n.parquet")
    assert read_crawl_list(tmp_path / "n.parquet", CLASSES)["url"].tolist() == [str(tmp_path / "1"),
                                                                                 str(tmp_path / "2")]
