"""Local files: read only when regular and under ``local_roots`` (symlinks and ``..`` resolved),
never /proc, /sys or /dev, with the size cap enforced while reading; the file is never changed."""
import hashlib
import os
import re
import socket

import pytest
from hostile_helpers import Timer

from omni.fetching.fetch import local_roots_for


@pytest.fixture
def root(tmp_path):
    """A list folder with a media file, plus a secret outside it; all checked unchanged afterwards."""
    root = tmp_path / "lists"
    root.mkdir()
    (root / "clip.bin").write_bytes(b"clip bytes")
    (root / "sub").mkdir()
    (root / "sub" / "deep.bin").write_bytes(b"deep")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    before = _snapshot(tmp_path)
    yield root
    assert _snapshot(tmp_path) == before  # nothing read was changed, moved or touched


def _snapshot(folder):
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink() and "tmp" not in p.parts:
            st = p.stat()
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_size)
    return out


def test_files_under_the_roots_are_read_in_place(root, make_fetcher):
    fetcher = make_fetcher(local_roots=[str(root)])
    for url in (str(root / "clip.bin"), f"file://{root}/clip.bin", f"file://localhost{root}/clip.bin",
                str(root / "sub" / ".." / "clip.bin"), f"file://{root}/cl%69p.bin"):
        got = fetcher.fetch(url)
        assert got.ok and got.path == str(root / "clip.bin") and not got.is_temp and got.nbytes == 10, url
        assert got.sha256 == hashlib.sha256(b"clip bytes").hexdigest()


@pytest.mark.parametrize("make_url", [
    lambda root: str(root.parent / "secret.txt"),
    lambda root: f"file://{root.parent}/secret.txt",
    lambda root: str(root / ".." / "secret.txt"),
    lambda root: f"file://{root}/../secret.txt",
    lambda root: f"file://{root}/..%2fsecret.txt",
    lambda root: "/etc/passwd",
    lambda root: "/etc/shadow",
    lambda root: "file:///etc/hostname",
    lambda root: "~/.ssh/id_rsa",
    lambda root: "relative/path.bin",
    lambda root: str(root) + "-sibling/x.bin",
])
def test_paths_outside_the_roots_are_refused(root, make_fetcher, make_url):
    assert make_fetcher(local_roots=[str(root)]).fetch(make_url(root)).reason == "refused: outside local_roots"


def test_symlinks_are_resolved_before_the_check(root, make_fetcher):
    (root / "escape.bin").symlink_to(root.parent / "secret.txt")
    (root / "inside.bin").symlink_to(root / "clip.bin")
    (root / "dirlink").symlink_to(root.parent)
    (root / "proc.bin").symlink_to("/proc/self/environ")
    fetcher = make_fetcher(local_roots=[str(root)])
    assert fetcher.fetch(str(root / "escape.bin")).reason == "refused: outside local_roots"
    assert fetcher.fetch(str(root / "dirlink" / "secret.txt")).reason == "refused: outside local_roots"
    assert fetcher.fetch(str(root / "proc.bin")).reason == "refused: special file system /proc"
    got = fetcher.fetch(str(root / "inside.bin"))
    assert got.ok and got.path == str(root / "clip.bin")


def test_a_root_that_is_a_symlink_is_resolved_too(root, make_fetcher):
    (root.parent / "alias").symlink_to(root)
    assert make_fetcher(local_roots=[str(root.parent / "alias")]).fetch(str(root / "clip.bin")).ok


@pytest.mark.parametrize("path,reason", [
    ("/proc/self/pagemap", "refused: special file system /proc"),
    ("/proc/self/environ", "refused: special file system /proc"),
    ("file:///proc/self/environ", "refused: special file system /proc"),
    ("/proc/kmsg", "refused: special file system /proc"),
    ("/proc/self/fd/0", "/^refused: (special file system|not a regular file)/"),
    ("/dev/zero", "refused: special file system /dev"),
    ("/dev/urandom", "refused: special file system /dev"),
    ("/dev/stdin", "/^refused: (special file system|not a regular file)/"),
    ("/sys/kernel/mm/transparent_hugepage/enabled", "refused: special file system /sys"),
])
@pytest.mark.parametrize("roots", [None, ["/"]])
def test_special_file_systems_are_refused_whatever_the_roots(make_fetcher, path, reason, roots):
    with Timer() as t:
        got = make_fetcher(local_roots=roots).fetch(path)
    assert t.s < 1
    assert re.match(reason[1:-1], got.reason) if reason.startswith("/^") else got.reason == reason, got.reason


def test_special_files_under_the_roots_are_refused_without_blocking(root, make_fetcher):
    os.mkfifo(root / "fifo")
    (root / "fifo-link").symlink_to(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    fetcher = make_fetcher(local_roots=[str(root)])
    try:
        with Timer() as t:
            assert fetcher.fetch(str(root / "fifo")).reason == "refused: not a regular file (fifo)"
            assert fetcher.fetch(str(root / "fifo-link")).reason == "refused: not a regular file (fifo)"
            assert fetcher.fetch(f"file://{root}/fifo").reason == "refused: not a regular file (fifo)"
        assert t.s < 1
        assert fetcher.fetch(str(root / "sock")).reason == "refused: not a regular file (socket)"
        assert fetcher.fetch(str(root / "sub")).reason == "refused: not a regular file (directory)"
        assert fetcher.fetch(str(root)).reason == "refused: not a regular file (directory)"
    finally:
        sock.close()


def test_the_byte_cap_is_enforced_while_reading(root, make_fetcher):
    (root / "big.bin").write_bytes(b"b" * 5000)
    with open(root / "sparse.bin", "wb") as fh:
        fh.truncate(20 << 30)  # 20 GB of nothing: reading it all would take minutes
    fetcher = make_fetcher(local_roots=[str(root)], max_bytes=1 << 20)
    assert fetcher.fetch(str(root / "big.bin")).ok
    with Timer() as t:
        got = fetcher.fetch(str(root / "sparse.bin"))
    assert got.reason == "too large: > 1 MB" and t.s < 2
    assert make_fetcher(local_roots=[str(root)], max_bytes=1000).fetch(str(root / "big.bin")).reason \
        == "too large: > 1000 bytes"
    os.unlink(root / "sparse.bin")


@pytest.mark.parametrize("url,reason", [
    ("", "empty URL"), ("   ", "empty URL"), (None, "empty URL"), ("file://", "empty URL"),
    ("data:image/png;base64,iVBORw0KGgo=", "unsupported URL scheme: data"),
    ("javascript:alert(1)", "unsupported URL scheme: javascript"),
    ("JavaScript:alert(1)", "unsupported URL scheme: javascript"),
    ("ftp://example.com/a.mp4", "unsupported URL scheme: ftp"),
    ("gopher://example.com/", "unsupported URL scheme: gopher"),
    ("mailto:someone@example.com", "unsupported URL scheme: mailto"),
    ("about:blank", "unsupported URL scheme: about"),
    ("blob:https://example.com/uuid", "unsupported URL scheme: blob"),
    ("s3://bucket/key.mp4", "unsupported URL scheme: s3"),
    ("file://otherhost/etc/passwd", "unsupported file URL host: otherhost"),
    ("/tmp/with\x00nul", "bad path: NUL byte"),
])
def test_urls_that_are_not_fetched_say_why(make_fetcher, url, reason):
    assert make_fetcher(local_roots=[]).fetch(url).reason == reason


def test_missing_files_and_empty_roots(root, make_fetcher):
    assert make_fetcher(local_roots=[str(root)]).fetch(str(root / "missing.bin")).reason == "file not found"
    assert make_fetcher(local_roots=[str(root)]).fetch(str(root / "clip.bin" / "x")).reason == "file not found"
    assert make_fetcher(local_roots=[]).fetch(str(root / "clip.bin")).reason == "refused: outside local_roots"
    assert make_fetcher(local_roots=None).fetch(str(root / "clip.bin")).ok  # no policy configured


def test_default_roots_are_the_list_folders(tmp_path):
    (tmp_path / "crawl").mkdir()
    (tmp_path / "crawl" / "a.csv").write_text("url,query\n")
    roots = local_roots_for(None, [tmp_path / "target" / "train.csv", tmp_path / "target" / "val.csv",
                                   tmp_path / "crawl", tmp_path / "crawl" / "a.csv"])
    assert roots == (str(tmp_path / "target"), str(tmp_path / "crawl"))
    assert local_roots_for([tmp_path / "media"], [tmp_path / "crawl"]) == (str(tmp_path / "media"),)
    assert local_roots_for([], [tmp_path / "crawl"]) == ()


def test_the_new_limits_are_settings_that_reach_the_fetcher():
    import dataclasses

    from omni.config import ExtractConfig, IngestConfig
    from omni.fetching.fetch import FetchOptions

    ingest, fetch_fields = IngestConfig(), {f.name for f in dataclasses.fields(FetchOptions)}
    for name in ("item_timeout_s", "min_bytes_per_s", "rate_grace_s", "local_roots"):
        assert name in fetch_fields and name in IngestConfig.model_fields  # copied across by name
        assert getattr(ingest, name) == getattr(FetchOptions(), name)
    assert ingest.max_video_pixels == 7680 * 4320 and ingest.local_roots is None
    assert (ExtractConfig().max_duration_s, ExtractConfig().max_windows_per_video) == (1800.0, 100)
