"""Fixtures for the hostile-input suite: a misbehaving server on loopback, fetchers with short
limits, a guard against real DNS lookups, and a check that no half-written download is left."""
from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hostile_helpers import FAST, RecordingFetcher  # noqa: E402
from hostile_server import HostileServer  # noqa: E402

from omni.fetching.fetch import FetchOptions  # noqa: E402


@pytest.fixture(scope="module")
def server():
    srv = HostileServer()
    yield srv
    srv.close()


@pytest.fixture
def srv(server):
    server.reset()
    return server


@pytest.fixture
def make_fetcher(tmp_path):
    """A fetcher with short limits (loopback allowed unless told otherwise); after the test,
    no ``.part-*`` download may be left in its temp folder but those handed to the caller."""
    handed_out: set = set()

    def make(resolve=None, **kw) -> RecordingFetcher:
        opts = {**FAST, "allow_private_addresses": True, **kw}
        fetcher = RecordingFetcher(FetchOptions(**opts), tmp_path / "tmp", resolve=resolve)
        fetcher.handed_out = handed_out
        return fetcher

    yield make
    leftovers = {str(p) for p in (tmp_path / "tmp").glob(".part-*")} - handed_out
    assert not leftovers, f"half-written downloads left behind: {leftovers}"


@pytest.fixture
def no_system_dns(monkeypatch):
    """Any real name lookup (other than of a literal address) fails the test."""
    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        try:
            ipaddress.ip_address(str(host).strip("[]"))
        except ValueError:
            raise AssertionError(f"a real DNS lookup of {host!r} was made") from None
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
