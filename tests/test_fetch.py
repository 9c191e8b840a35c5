"""Fetching against a local HTTP server on 127.0.0.1: retries, caps, redirects, refusals."""
import hashlib
import socket
import struct
import threading
import time
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from omni.fetching.fetch import Fetcher, FetchOptions

REAL_TIME = time.time


class Handler(BaseHTTPRequestHandler):
    hits: dict = {}

    def log_message(self, *a):
        pass

    def date_time_string(self, timestamp=None):  # the server's own clock (a test may move this process's)
        return super().date_time_string(REAL_TIME() if timestamp is None else timestamp)

    def do_GET(self):
        Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        n = Handler.hits[self.path]
        if self.path == "/ok":
            body = b"x" * 1000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/404":
            self.send_response(404)
            self.end_headers()
        elif self.path == "/flaky":  # 503 with Retry-After, then fine
            if n == 1:
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.end_headers()
            else:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"fine")
        elif self.path == "/429":
            self.send_response(429)
            self.end_headers()
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
        elif self.path == "/redirect":
            self.send_response(301)
            self.send_header("Location", "/ok")
            self.end_headers()
        elif self.path == "/big":  # no Content-Length: the cap must stop the stream
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"y" * 10_000)
        elif self.path == "/short":  # promises more than it sends
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"z" * 100)
        elif self.path in ("/reset-twice", "/reset-always"):  # half the body, then a TCP reset
            body = bytes(range(256)) * 40
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path == "/reset-twice" and n > 2:
                self.wfile.write(body)
                return
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif self.path == "/busy-until":  # 503 "come back at <HTTP date 2 s from now>", then fine
            if n == 1:
                from email.utils import formatdate

                self.send_response(503)
                self.send_header("Retry-After", formatdate(REAL_TIME() + 2, usegmt=True))
                self.end_headers()
            else:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"fine")
        elif self.path == "/slow":
            time.sleep(1.5)
            self.send_response(200)
            self.end_headers()


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetcher(tmp_path, **kw):
    opts = dict(allow_private_addresses=True, backoff_s=0.01, tries=3, read_timeout_s=0.5, connect_timeout_s=0.5)
    opts.update(kw)
    return Fetcher(FetchOptions(**opts), tmp_path)


def test_ok_download_is_hashed_into_a_temp_file(server, tmp_path):
    got = fetcher(tmp_path).fetch(server + "/ok")
    assert got.ok and got.nbytes == 1000 and got.is_temp and len(got.sha256) == 64
    assert open(got.path, "rb").read() == b"x" * 1000


def test_404_is_not_retried(server, tmp_path):
    Handler.hits.clear()
    got = fetcher(tmp_path).fetch(server + "/404")
    assert not got.ok and got.reason == "http 404" and Handler.hits["/404"] == 1


def test_503_is_retried_and_succeeds(server, tmp_path):
    Handler.hits.clear()
    got = fetcher(tmp_path).fetch(server + "/flaky")
    assert got.ok and Handler.hits["/flaky"] == 2 and got.tries == 2


def test_429_gives_up_after_the_configured_tries(server, tmp_path):
    Handler.hits.clear()
    got = fetcher(tmp_path, tries=3).fetch(server + "/429")
    assert got.reason == "http 429 after 3 tries" and Handler.hits["/429"] == 3


def test_redirects_are_followed_and_bounded(server, tmp_path):
    assert fetcher(tmp_path).fetch(server + "/redirect").ok
    got = fetcher(tmp_path, max_redirects=3).fetch(server + "/loop")
    assert got.reason == "too many redirects (> 3)"


def test_size_cap_aborts_the_stream(server, tmp_path):
    got = fetcher(tmp_path, max_bytes=50_000).fetch(server + "/big")
    assert not got.ok and got.reason.startswith("too large")
    assert not list(tmp_path.glob(".part-*"))  # nothing half-written is kept


def test_short_body_is_a_truncated_download(server, tmp_path):
    got = fetcher(tmp_path, tries=1).fetch(server + "/short")
    assert not got.ok and ("truncated download" in got.reason or "read error" in got.reason)


def test_timeout_is_retried_then_reported(server, tmp_path):
    got = fetcher(tmp_path, tries=2, read_timeout_s=0.3).fetch(server + "/slow")
    assert got.reason == "timeout after 2 tries"


def test_private_addresses_are_refused_by_default(server, tmp_path):
    got = fetcher(tmp_path, allow_private_addresses=False).fetch(server + "/ok")
    assert not got.ok and got.reason == "refused: private address 127.0.0.1"


def test_local_files_are_read_in_place(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    got = fetcher(tmp_path).fetch(str(src))
    assert got.ok and got.path == str(src) and not got.is_temp
    assert fetcher(tmp_path).fetch("file://" + str(src)).ok
    assert src.read_bytes() == b"abc"
    assert fetcher(tmp_path).fetch(str(tmp_path / "missing")).reason == "file not found"
    assert fetcher(tmp_path).fetch("ftp://host/x").reason == "unsupported URL scheme: ftp"


def test_refused_connection_is_named(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got = fetcher(tmp_path, tries=2).fetch(f"http://127.0.0.1:{port}/x.jpg")
    assert got.reason == "connection refused after 2 tries"


def test_a_connection_reset_mid_body_is_retried_within_the_deadline(server, tmp_path):
    got = fetcher(tmp_path, tries=3).fetch(server + "/reset-twice")
    assert got.ok and got.tries == 3 and got.sha256 == hashlib.sha256(bytes(range(256)) * 40).hexdigest()
    Path(got.path).unlink()  # (the caller's to keep)
    got = fetcher(tmp_path, tries=3).fetch(server + "/reset-always")
    assert not got.ok and got.reason == "truncated download: got 5120 of 10240 bytes after 3 tries"
    assert not list(tmp_path.glob(".part-*"))  # the cut bodies are not left behind


def _flapping_dns(fail: int):
    calls = []

    def resolve(host, port):
        calls.append(host)
        if len(calls) <= fail:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return ["127.0.0.1"]

    return resolve, calls


def test_dns_failing_for_a_while_is_retried_within_the_deadline(server, tmp_path):
    port = server.rsplit(":", 1)[1]
    resolve, calls = _flapping_dns(fail=2)
    f = Fetcher(FetchOptions(allow_private_addresses=True, backoff_s=0.01, tries=3), tmp_path, resolve=resolve)
    got = f.fetch(f"http://files.example:{port}/ok")
    assert got.ok and got.tries == 3 and len(calls) == 3
    # failing past the item's deadline: the row ends with the reason, on time
    resolve, calls = _flapping_dns(fail=10 ** 6)
    f = Fetcher(FetchOptions(allow_private_addresses=True, backoff_s=0.2, tries=50, item_timeout_s=1.0),
                tmp_path, resolve=resolve)
    t0 = time.monotonic()
    got = f.fetch(f"http://files.example:{port}/ok")
    assert time.monotonic() - t0 < 1.5
    assert not got.ok and got.reason.startswith("dns error: temporary failure in name resolution after ")
    assert 2 <= len(calls) < 50
    # a name that does not exist is not asked again
    def nxdomain(host, port):
        calls.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    calls.clear()
    got = Fetcher(FetchOptions(tries=3), tmp_path, resolve=nxdomain).fetch("http://nowhere.example/x.jpg")
    assert got.reason == "dns error: Name or service not known" and len(calls) == 1


@pytest.mark.parametrize("jump_s", [-86400.0, 86400.0], ids=["clock-back-a-day", "clock-ahead-a-day"])
def test_a_clock_that_jumps_neither_stalls_nor_cuts_a_fetch(server, tmp_path, monkeypatch, jump_s):
    """The wall clock jumps a day (NTP, a suspended VM) while a server says "retry at <date>":
    deadlines run on the monotonic clock, so the item still ends on time with a reason or its file."""
    monkeypatch.setattr(time, "time", lambda: REAL_TIME() + jump_s)
    Handler.hits.clear()
    t0 = time.monotonic()
    got = fetcher(tmp_path, tries=2, item_timeout_s=5.0).fetch(server + "/busy-until")
    took = time.monotonic() - t0
    assert took < 6.0
    assert got.ok and open(got.path, "rb").read() == b"fine" and Handler.hits["/busy-until"] == 2
    Handler.hits.clear()
    got = fetcher(tmp_path, tries=3, item_timeout_s=1.0).fetch(server + "/slow")  # slower than its deadline
    assert not got.ok and got.reason and time.monotonic() - t0 - took < 2.0
