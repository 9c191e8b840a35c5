"""Hostile crawl lists: a clear ListError or a per-row reason, never a traceback, and bounded."""
import gzip
import json
import re

import pandas as pd
import pytest
from hostile_helpers import Timer

from omni.fetching import lists
from omni.fetching.lists import ListError, read_crawl_list

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


# -- rows and cells past the limits (issue 35): a per-row reason, never the whole row in memory

def _small_limits(monkeypatch, row=1000, cell=300, piece=64):
    """Low limits, and the file read a few bytes at a time so rows straddle pieces."""
    monkeypatch.setattr(lists, "MAX_LIST_ROW_BYTES", row)
    monkeypatch.setattr(lists, "MAX_LIST_CELL_BYTES", cell)
    monkeypatch.setattr(lists, "_READ_BYTES", piece)
    monkeypatch.setattr(lists, "_JSON_READ_BYTES", piece)


HUGE = "h" * 5000
GOOD = [{"url": "http://h/1.jpg", "query": "run"}, {"url": "http://h/3.jpg", "query": "jump"}]


def _with_huge_row(fmt: str) -> bytes:
    """A list of three rows, the middle one 5,000 bytes (its caption, or for text its URL)."""
    rows = [GOOD[0], {"url": "http://h/2.jpg", "query": "run", "caption": HUGE}, GOOD[1]]
    if fmt in ("csv", "csv.gz", "tsv"):
        sep = "\t" if fmt == "tsv" else ","
        df = pd.DataFrame(rows)[["url", "query", "caption"]]
        df.loc[1, "caption"] = f'a "quoted"{sep} multi-line\r\n' + HUGE  # quotes, separators, line ends inside
        text = df.to_csv(index=False, sep=sep, lineterminator="\r\n")
        return gzip.compress(text.encode()) if fmt == "csv.gz" else text.encode()
    if fmt == "jsonl":
        return "\n".join(json.dumps(r) for r in rows).encode()
    if fmt == "json":
        return json.dumps(rows).encode()
    if fmt == "items.json":  # the whole document past the limit: read member by member
        return json.dumps({"title": HUGE, "items": rows}).encode()
    return f"http://h/1.jpg\n# {HUGE}\n{HUGE}\nhttp://h/3.jpg\n".encode()  # text: a long comment too


@pytest.mark.parametrize("fmt,where", [("csv", "line 3"), ("csv.gz", "line 3"), ("tsv", "line 3"),
                                       ("jsonl", "line 2"), ("json", "record 2"), ("items.json", "record 2"),
                                       ("txt", "line 3")])
def test_a_row_past_the_limit_is_a_bad_row_with_its_reason(tmp_path, monkeypatch, fmt, where):
    _small_limits(monkeypatch)
    df = _read(tmp_path, f"l.{fmt}", _with_huge_row(fmt), default_query="run" if fmt == "txt" else None)
    assert df["url"].tolist() == ["http://h/1.jpg", "", "http://h/3.jpg"]
    assert df["query_error"][0] == df["query_error"][2] == ""
    assert re.fullmatch(rf"bad list row: {where}: \d,\d{{3}} bytes > 1,000 \(limit per row\)", df["query_error"][1])
    assert df["list_row"].tolist() == [0, 1, 2] and df["query"][2] == ("run" if fmt == "txt" else "jump")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "parquet", "txt"])
def test_a_cell_past_the_limit_is_emptied_and_named(tmp_path, monkeypatch, fmt):
    _small_limits(monkeypatch)
    long = "é" * 200  # 200 characters, 400 bytes
    rows = pd.DataFrame({"url": ["http://h/1.jpg", "http://h/2.jpg"], "query": ["run", "jump"],
                         "caption": ["short", long]})
    path = tmp_path / f"l.{fmt}"
    if fmt == "parquet":
        rows.to_parquet(path)
    elif fmt in ("csv", "tsv"):
        rows.to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")
    elif fmt == "jsonl":
        rows.to_json(path, orient="records", lines=True, force_ascii=False)
    elif fmt == "json":
        path.write_text(json.dumps([{**r, "nested": [long]} if i else r
                                    for i, r in enumerate(rows.to_dict("records"))], ensure_ascii=False))
    else:
        path.write_text(f"http://h/1.jpg\nhttp://h/{long}.jpg\n")
    df = read_crawl_list(path, CLASSES, default_query="run" if fmt == "txt" else None)
    column = "url" if fmt == "txt" else "caption"
    assert df["query_error"].tolist() == ["", f"bad list row: '{column}' cell of {400 + 13 * (fmt == 'txt')} "
                                              "bytes > 300 (limit per cell)"]
    assert df[column][1] == "" and df["url"][0] == "http://h/1.jpg"
    if fmt == "json":
        assert df["nested"][1] == ""  # a nested value is measured as JSON text


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "txt"])
def test_one_enormous_cell_costs_no_more_than_a_piece(tmp_path, fmt):
    """A 32 MB cell was read whole, several times over (a 200 MB CSV cell cost 1.7 GB): now the
    list is read in pieces and the row past the limit is never held."""
    import tracemalloc

    big = "x" * (32 << 20)
    text = {"csv": f'url,query,caption\nhttp://h/1.jpg,run,"{big}"\nhttp://h/3.jpg,jump,ok\n',
            "jsonl": json.dumps(GOOD[0]) + "\n" + json.dumps({"url": big, "query": "run"}) + "\n"
                     + json.dumps(GOOD[1]) + "\n",
            "json": json.dumps([GOOD[0], {"url": "a", "query": "run", "caption": big}, GOOD[1]]),
            "txt": f"http://h/1.jpg\n{big}\nhttp://h/3.jpg\n"}[fmt]
    path = tmp_path / f"l.{fmt}"
    path.write_text(text)
    del text, big
    tracemalloc.start()
    try:
        with Timer() as t:
            df = read_crawl_list(path, CLASSES, default_query="run" if fmt == "txt" else None)
        peak_mb = tracemalloc.get_traced_memory()[1] / (1 << 20)
    finally:
        tracemalloc.stop()
    assert df["query_error"].str.startswith("bad list row:").tolist() == ([True, False] if fmt == "csv"
                                                                          else [False, True, False])
    assert peak_mb < 12 and t.s < 5, (peak_mb, t.s)


def test_a_header_past_the_limit_is_a_list_error(tmp_path, monkeypatch):
    _small_limits(monkeypatch)
    with pytest.raises(ListError, match=r"the header is too long: 5,\d{3} bytes > 1,000 \(limit per row\)"):
        _read(tmp_path, "h.csv", f"url,query,{HUGE}\nhttp://h/1.jpg,run,a\n")


def test_a_list_of_only_rows_past_the_limit_gives_each_its_reason(tmp_path, monkeypatch):
    _small_limits(monkeypatch)
    df = _read(tmp_path, "all.jsonl", "\n".join(json.dumps({"url": HUGE, "query": "run"}) for _ in range(2)))
    assert df["url"].tolist() == ["", ""] and df["query_error"].str.startswith("bad list row: line").all()


def test_target_lists_refuse_a_row_past_the_limit(tmp_path, monkeypatch):
    from omni.fetching.lists import read_target_list

    _small_limits(monkeypatch)
    (tmp_path / "t.csv").write_text(f"path,label\na.mp4,run\n{HUGE}.mp4,jump\n")
    with pytest.raises(ListError, match=r"t.csv row 1: line 3: 5,\d{3} bytes > 1,000 \(limit per row\)"):
        read_target_list(tmp_path / "t.csv", CLASSES)
    (tmp_path / "t.txt").write_text(f"a.mp4 0\n{HUGE}.mp4 1\n")
    with pytest.raises(ListError, match=r"t.txt: line 2: 5,\d{3} bytes > 1,000 \(limit per row\)"):
        read_target_list(tmp_path / "t.txt", CLASSES)
    (tmp_path / "c.csv").write_text(f"path,label,note\na.mp4,run,{'n' * 400}\n")
    with pytest.raises(ListError, match=r"c.csv row 0: 'note' cell of 400 bytes > 300 \(limit per cell\)"):
        read_target_list(tmp_path / "c.csv", CLASSES)


CSV_CELLS = ['plain', '', ' spaced ', 'a,b', 'say "hi"', 'two\nlines', 'cr\rlf\r\n', '""', '"', 'tab\tx', 'é€😀']


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("sep", [",", "\t"])
def test_csv_rows_read_in_pieces_are_the_rows_pandas_reads(tmp_path, monkeypatch, piece, sep):
    """Where a row ends is decided as pandas' own parser decides it (a quote opens a quoted field
    only at a field's start; "" inside one; a line end inside quotes), whatever the pieces."""
    import io
    import random

    rng = random.Random(piece)
    rows = [[f"http://h/{i}.jpg", "run", rng.choice(CSV_CELLS), rng.choice(CSV_CELLS)] for i in range(60)]
    buf = io.StringIO()
    pd.DataFrame(rows, columns=["url", "query", "a", "b"]).to_csv(buf, index=False, sep=sep,
                                                                  lineterminator=rng.choice(["\n", "\r\n"]))
    text = buf.getvalue() + f'http://h/x.jpg{sep}run{sep}lit"eral{sep}"ends"after\n'  # quotes mid-field
    path = tmp_path / ("l.tsv" if sep == "\t" else "l.csv")
    path.write_text(text)
    want = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    monkeypatch.setattr(lists, "_READ_BYTES", piece)
    got = read_crawl_list(path, CLASSES)
    assert got["url"].tolist() == want["url"].tolist()
    assert got["a"].tolist() == want["a"].tolist() and got["b"].tolist() == want["b"].tolist()
    assert (got["query_error"] == "").all()


@pytest.mark.parametrize("piece", [1, 2, 5, 64])
def test_json_records_read_in_pieces_are_the_records_json_reads(tmp_path, monkeypatch, piece):
    """Strings (escaped quotes and backslashes, brackets and commas inside), nesting and
    whitespace straddle the pieces; the records are json.loads' own."""
    values = ['a "quoted" one', "back\\slash\\", "\\\\\"", "[not, {a] list}", "é€😀\u2028", ""]
    records = [{"url": f"http://h/{i}.jpg", "query": "run", "v": v, "n": {"k": [v, {"z": []}]}}
               for i, v in enumerate(values * 3)]
    path = tmp_path / "l.json"
    path.write_text(" \n[" + ",\n ".join(json.dumps(r, ensure_ascii=i % 2 == 0) for i, r in enumerate(records))
                    + "] \n")
    monkeypatch.setattr(lists, "_JSON_READ_BYTES", piece)
    got = read_crawl_list(path, CLASSES)
    assert got["v"].tolist() == [r["v"] for r in records] and got["n"].tolist() == [r["n"] for r in records]
    for bad, message in [("[{}, {}", "never closed"), ('[{"a": 1}}', "closes the"), ("[{}] x", "extra data"),
                         ("[{},,{}]", "cannot read as .json list"), ("[{},]", "value is missing")]:
        path.write_text(bad)
        with pytest.raises(ListError, match=message):
            read_crawl_list(path, CLASSES)


@pytest.mark.parametrize("piece", [1, 2, 3, 64])
def test_lines_read_in_pieces_are_the_lines(tmp_path, monkeypatch, piece):
    monkeypatch.setattr(lists, "_READ_BYTES", piece)
    (tmp_path / "u.txt").write_bytes(b"http://h/1.jpg\r\nhttp://h/2.jpg\rhttp://h/3.jpg\n\r\n# note\r\nhttp://h/4.jpg")
    assert read_crawl_list(tmp_path / "u.txt", CLASSES, default_query="run")["url"].tolist() == [
        f"http://h/{i}.jpg" for i in range(1, 5)]
    (tmp_path / "l.jsonl").write_bytes(b'{"url": "http://h/1.jpg", "query": "run"}\r\n\n'
                                       b'{"url": "http://h/2.jpg", "query": "jump", "title": "a\xe2\x80\xa8b"}')
    df = read_crawl_list(tmp_path / "l.jsonl", CLASSES)
    assert df["url"].tolist() == ["http://h/1.jpg", "http://h/2.jpg"] and df["title"][1] == "a\u2028b"
