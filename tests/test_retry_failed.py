"""`omni ingest CONFIG --retry-failed [REASON...]` on a crawl list with transient and permanent
failures, served by a local HTTP server on 127.0.0.1 whose flaky paths fail their first hits."""
import socket
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml

from omni import pipeline
from omni.config import load_config
from omni.fetching.retry import parse_classes, reason_class

from omni_testing import write_config

FAIL_FIRST = 2  # = ingest.tries below: a flaky path fails the whole first ingest, then heals


class Flaky(BaseHTTPRequestHandler):
    """``/<behaviour>/<image name>``: ok, 503 (the first hits), reset (mid-body, the first hits),
    always503, 404, text (not an image)."""

    images: Path = Path()
    hits: Counter = Counter()  # per path, ever (a flaky path heals after FAIL_FIRST)
    asked: list = []  # paths asked for, cleared by the test
    healthy = False  # True: the flaky paths never fail (the uninterrupted reference run)

    def log_message(self, *a):
        pass

    def _send(self, status: int, body: bytes, ctype: str = "image/jpeg") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        Flaky.hits[self.path] += 1
        Flaky.asked.append(self.path)
        n = Flaky.hits[self.path]
        behaviour, _, name = self.path.strip("/").partition("/")
        sick = not Flaky.healthy and n <= FAIL_FIRST
        body = (Flaky.images / name).read_bytes()
        if behaviour == "503" and sick or behaviour == "always503":
            self._send(503, b"busy", "text/plain")
        elif behaviour == "reset" and sick:  # headers, half the body, then a TCP reset
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif behaviour == "404":
            self._send(404, b"gone", "text/plain")
        elif behaviour == "text":
            self._send(200, b"<html>not an image</html>" * 40, "text/html")
        else:
            self._send(200, body)


@pytest.fixture()
def flaky_server(tiny_world):
    Flaky.images, Flaky.hits, Flaky.asked, Flaky.healthy = tiny_world / "web" / "images", Counter(), [], False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


ROWS = [("ok", 0), ("ok", 1), ("503", 2), ("503", 3), ("reset", 4), ("always503", 5), ("404", 0),
        ("text", 1), ("copy", 0)]  # the last: an ok URL's image under another URL (a duplicate)


def _config(tmp_path: Path, world: Path, url: str, name: str) -> Path:
    images = sorted(p.name for p in (world / "web" / "images").glob("disc_slide_*.jpg"))
    crawl = tmp_path / f"crawl-{name}"
    crawl.mkdir()
    lines = ["url,query"] + [f"{url}/{b}/{images[i]},disc_slide" for b, i in ROWS]
    lines.append(f"{url}/503/{images[2]},disc_slide")  # a failing URL listed twice: two rows, one fetch
    (crawl / "web.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / name).mkdir()
    cfg = write_config(tmp_path / name, world, ingest={"tries": FAIL_FIRST, "backoff_s": 0.01, "workers": 2})
    data = yaml.safe_load(cfg.read_text())
    data["sources"] = [{"name": "web", "kind": "image", "list": str(crawl / "web.csv")}]
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def _items(cfg) -> pd.DataFrame:
    return pd.read_parquet(cfg.workdir / "ingest" / "web" / "items.parquet")


def _journal(cfg) -> Path:
    return next((cfg.workdir / "ingest" / "web" / "journal").glob("*/journal.jsonl"))


def test_reasons_are_classed_transient_or_permanent():
    transient = {"timeout after 3 tries": "timeout", "timeout: item deadline 120 s exceeded": "timeout",
                 "http 503 after 3 tries": "5xx", "http 429 after 2 tries": "429",
                 "connection reset after 3 tries": "connection", "read error: connection reset after 1 try":
                 "connection", "truncated download: got 5 of 9 bytes after 3 tries": "truncated",
                 "too slow: 12 B/s after 1 try": "slow", "dns error: Temporary failure in name resolution": "dns"}
    for reason, cls in transient.items():
        assert reason_class(reason) == cls, reason
    for reason in ("http 404", "http 403", "not an image or video (text/html)", "too large: over 200 MB",
                   "refused: private address 10.0.0.1", "dns error: bad host name", "decode failed: corrupt",
                   "http 5000", None, ""):
        assert reason_class(reason) is None, reason
    assert parse_classes(None) == parse_classes(["all"]) and "dns" in parse_classes([])
    with pytest.raises(ValueError, match="unknown retry reason 'resets'"):
        parse_classes(["resets"])


@pytest.mark.e2e
def test_retry_failed_fetches_only_transient_failures_and_a_plain_run_picks_them_up(tmp_path, tiny_world,
                                                                                    flaky_server, capsys):
    from flows.cli import main

    cfg_path = _config(tmp_path, tiny_world, flaky_server, "run")
    cfg = load_config(cfg_path)
    for stage in ("ingest", "extract"):
        pipeline.run_stage(cfg, stage)
    before = _items(cfg).set_index("url")
    assert (before["status"] == "failed").sum() == 7  # 2x503 (one listed twice) + reset + always503 + 404 + text
    key_before = pipeline.Keys(cfg)["ingest/web"]
    journal_before = _journal(cfg).read_bytes()
    samples_before = pd.read_parquet(cfg.workdir / "extract" / "web" / "samples.parquet")

    # only the 5xx class: the 503s heal (and always503 does not); the reset row is left alone
    Flaky.asked.clear()
    counts = pipeline.retry_failed(cfg, ["5xx"])
    assert [(c.rows_retried, c.urls_retried, c.rows_now_ok, c.rows_still_failing) for c in counts] == [(4, 3, 3, 1)]
    assert {p.split("/")[1] for p in Flaky.asked} == {"503", "always503"}  # nothing else was asked for again
    assert _journal(cfg).read_bytes().startswith(journal_before)  # earlier records kept byte for byte

    # the CLI: the rest (the reset row heals, always503 is asked again and still fails)
    Flaky.asked.clear()
    assert main(["ingest", str(cfg_path), "--no-prefect", "--retry-failed"]) == 0
    out = capsys.readouterr().out
    assert "ingest/web: retried 2 row(s) (2 URL(s); 5xx 1, truncated 1): 1 now ok, 1 still failing" in out
    assert {p.split("/")[1] for p in Flaky.asked} == {"reset", "always503"}
    assert "ingest/target: cache hit" in out and "ingest/web: done" in out

    after = _items(cfg).set_index("url")
    untouched = [u for u in before.index if u.split("/")[3] in ("ok", "copy", "404", "text", "always503")]
    pd.testing.assert_frame_equal(before.loc[untouched], after.loc[untouched])  # good and permanent rows as they were
    healed = list(dict.fromkeys(u for u in before.index if u.split("/")[3] in ("503", "reset")))
    assert after.loc[healed, "status"].value_counts().to_dict() == {"ok": 3, "duplicate": 1}  # (a URL listed twice)
    assert after.loc[untouched, "status"].value_counts().to_dict() == {"ok": 2, "failed": 3, "duplicate": 1}

    # the repaired source has a new key; a plain run extracts the repaired rows; the target work is kept
    keys = pipeline.Keys(cfg)
    assert keys["ingest/web"] != key_before
    results = {r.stage: r.cached for r in pipeline.run_stage(cfg, "extract", keys)}
    assert results == {"extract/target": True, "extract/web": False}
    samples = pd.read_parquet(cfg.workdir / "extract" / "web" / "samples.parquet")
    assert (samples["extract_status"] == "ok").sum() == (samples_before["extract_status"] == "ok").sum() + 3

    # a round that changes nothing (always503 fails again the same way) changes no key
    Flaky.asked.clear()
    counts = pipeline.retry_failed(cfg, None)
    assert [(c.rows_retried, c.rows_now_ok, c.changed) for c in counts] == [(1, 0, 0)]
    assert pipeline.Keys(cfg)["ingest/web"] == keys["ingest/web"]
    assert all(r.cached for r in pipeline.run_stage(cfg, "ingest"))

    # the same as a run whose server never failed: rows, frames and stored bytes
    Flaky.healthy = True
    ref_path = _config(tmp_path, tiny_world, flaky_server, "ref")
    ref = load_config(ref_path)
    for stage in ("ingest", "extract"):
        pipeline.run_stage(ref, stage)
    cols = ["item_id", "url", "status", "reason", "sha256", "nbytes", "file_type", "width", "height"]
    got, want = _items(cfg), _items(ref)
    pd.testing.assert_frame_equal(got[cols], want[cols])
    ref_samples = pd.read_parquet(ref.workdir / "extract" / "web" / "samples.parquet")
    pd.testing.assert_frame_equal(samples.drop(columns="shard"), ref_samples.drop(columns="shard"))
    shards = sorted((cfg.workdir / "extract" / "web" / "frames").glob("shard-*"))
    assert shards and [p.read_bytes() for p in shards] == \
        [p.read_bytes() for p in sorted((ref.workdir / "extract" / "web" / "frames").glob("shard-*"))]


def test_an_unknown_retry_reason_is_a_clear_error(tmp_path, tiny_world, flaky_server, capsys):
    from flows.cli import main

    cfg_path = _config(tmp_path, tiny_world, flaky_server, "bad")
    assert main(["ingest", str(cfg_path), "--no-prefect", "--retry-failed", "resets"]) == 2
    assert "omni: error: unknown retry reason 'resets': choose from timeout, 5xx" in capsys.readouterr().err
    assert not Flaky.asked  # nothing fetched
