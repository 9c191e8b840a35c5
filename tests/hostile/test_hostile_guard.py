"""The address guard: every address that is not globally routable is refused, the checked
address is the one connected to (no DNS rebinding), and the name is kept for Host, SNI and
the certificate. Names are answered by a fake resolver; no traffic leaves loopback."""
import socket

import pytest
from hostile_helpers import FakeResolver, Timer, make_tls
from hostile_server import HostileServer, SlowRelay

from omni.fetching import fetch
from omni.fetching.fetch import address_refusal, pick_address

REFUSED = [
    "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.1", "192.168.1.1", "127.0.0.1", "127.1.2.3",
    "0.0.0.0", "0.1.2.3", "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.100.100.200", "100.127.255.254",
    "192.0.0.1", "192.0.0.170", "192.0.2.1", "198.18.0.1", "198.19.255.1", "198.51.100.1", "203.0.113.1",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd00:ec2::254", "fec0::1", "ff02::1", "ff0e::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:100.64.0.1",
    "::127.0.0.1", "::10.0.0.1", "::8.8.8.8",  # IPv4-compatible (deprecated): never routable
    "2002:7f00:1::", "2002:a00:1::1", "2002:a9fe:a9fe::", "2002:6440:1::", "2002:c0a8:101::",  # 6to4 of private
    "64:ff9b::10.0.0.1", "64:ff9b::169.254.169.254", "64:ff9b::7f00:1", "64:ff9b::100.64.0.1",  # NAT64 of private
    "64:ff9b:1::a00:1", "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # local NAT64, Teredo
    "2001:db8::1", "100::1", "2001:10::1", "2001:2::1", "::ffff:0:0", "not-an-address",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
           "::ffff:8.8.8.8", "2002:808:808::", "64:ff9b::808:808", "64:ff9b::1.1.1.1"]


@pytest.mark.parametrize("address", REFUSED)
def test_addresses_that_are_not_globally_routable_are_refused(address):
    assert address_refusal(address).startswith("refused: ")


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address):
    assert address_refusal(address) == ""


def test_a_name_is_refused_when_any_of_its_addresses_is_private():
    resolve = FakeResolver({"mixed.example": ["8.8.8.8", "169.254.169.254"], "cgnat.example": ["100.64.1.1"],
                            "good.example": ["8.8.8.8", "2606:4700:4700::1111"]})
    assert pick_address("mixed.example", 80, False, resolve) == ("", "refused: private address 169.254.169.254")
    assert pick_address("cgnat.example", 80, False, resolve) == ("", "refused: private address 100.64.1.1")
    assert pick_address("good.example", 80, False, resolve) == ("8.8.8.8", "")
    assert pick_address("nowhere.example", 80, False, resolve)[1].startswith("dns error")
    assert pick_address("mixed.example", 80, True, resolve) == ("8.8.8.8", "")


def test_the_fetcher_refuses_without_sending_anything(make_fetcher, no_system_dns):
    resolve = FakeResolver({"meta.example": ["169.254.169.254"], "six.example": ["2002:a9fe:a9fe::1"],
                            "cg.example": ["100.100.100.200"]})
    fetcher = make_fetcher(resolve=resolve, allow_private_addresses=False)
    for url, address in (("http://meta.example/latest/meta-data/", "169.254.169.254"),
                         ("https://six.example/", "2002:a9fe:a9fe::1"), ("http://cg.example:8080/x", "100.100.100.200"),
                         ("http://127.0.0.1:9/x", "127.0.0.1"), ("http://[::1]:9/x", "::1"),
                         ("http://[::ffff:7f00:1]:9/", "::ffff:7f00:1"), ("http://[0:0:0:0:0:0:0:1]/", "::1")):
        assert fetcher.fetch(url).reason == f"refused: private address {address}", url
    assert fetcher.fetch("http://unknown.example/").reason == "dns error: Name or service not known"
    assert resolve.asked == ["meta.example", "six.example", "cg.example", "unknown.example"]  # literals: no lookup


@pytest.mark.parametrize("host", ["0x7f.1", "2130706433", "017700000001", "127.1", "0177.0.0.1"])
def test_odd_spellings_of_loopback_are_refused(make_fetcher, host):
    # the system resolver reads these inet_aton forms locally (no DNS query is sent)
    got = make_fetcher(allow_private_addresses=False).fetch(f"http://{host}:9/x")
    assert got.reason == "refused: private address 127.0.0.1"


def test_dns_rebinding_connects_to_the_address_that_was_checked(srv, make_fetcher, no_system_dns):
    # first answer loopback (allowed in this test), any later answer somewhere else
    resolve = FakeResolver({"rebind.example": lambda n: ["127.0.0.1"] if n == 1 else ["192.0.2.66"]})
    fetcher = make_fetcher(resolve=resolve, tries=1)
    got = fetcher.fetch(f"http://rebind.example:{srv.port}/ok")
    assert got.ok and resolve.asked == ["rebind.example"]  # resolved once; urllib3 never resolved it again
    assert srv.host_headers == [f"rebind.example:{srv.port}"]


def test_redirects_are_checked_hop_by_hop(srv, make_fetcher, monkeypatch, no_system_dns):
    real = fetch.address_refusal
    monkeypatch.setattr(fetch, "address_refusal", lambda a: "" if a == "127.0.0.1" else real(a))  # loopback = "public"
    resolve = FakeResolver({"public.example": ["127.0.0.1"], "internal.example": ["10.1.2.3"]})
    fetcher = make_fetcher(resolve=resolve, allow_private_addresses=False)
    assert fetcher.fetch(f"http://public.example:{srv.port}/ok").ok
    got = fetcher.fetch(f"http://public.example:{srv.port}/redirect-private")
    assert got.reason == "refused: private address 10.1.2.3"
    got = fetcher.fetch(f"http://public.example:{srv.port}/redirect-metadata")
    assert got.reason == "refused: private address 169.254.169.254"
    assert srv.hits["/secret"] == 0


def test_tls_keeps_the_name_for_sni_and_the_certificate(tmp_path, make_fetcher, no_system_dns):
    ctx, ca = make_tls(tmp_path, ["tls.example"])
    server = HostileServer(tls=ctx)
    try:
        resolve = FakeResolver({"tls.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
        fetcher = make_fetcher(resolve=resolve, ca_certs=ca, tries=1)
        got = fetcher.fetch(f"https://tls.example:{server.port}/ok")
        assert got.ok and got.nbytes == 1000
        assert server.server_names == ["tls.example"] and server.host_headers == [f"tls.example:{server.port}"]
        assert fetcher.fetch(f"https://other.example:{server.port}/ok").reason == "tls error"  # wrong name
        assert make_fetcher(resolve=resolve, tries=1).fetch(f"https://tls.example:{server.port}/ok").reason \
            == "tls error"  # unknown CA
    finally:
        server.close()


def test_tls_drips_are_cut_in_bounded_time(tmp_path, make_fetcher, no_system_dns):
    ctx, ca = make_tls(tmp_path, ["tls.example"])
    server = HostileServer(tls=ctx)
    relay = SlowRelay(server.port, every_s=0.05)  # the handshake itself arrives a byte at a time
    try:
        resolve = FakeResolver({"tls.example": ["127.0.0.1"]})
        fetcher = make_fetcher(resolve=resolve, ca_certs=ca, tries=1)
        with Timer() as t:  # CPython bounds the whole handshake by the connect timeout (0.5 s)
            got = fetcher.fetch(f"https://tls.example:{relay.port}/ok")
        assert got.reason.startswith("timeout") and t.s < 3
        with Timer() as t:
            got = fetcher.fetch(f"https://tls.example:{server.port}/drip-headers")
        assert got.reason == "timeout: no complete response headers after 2.5 s" and t.s < 4
        got = fetcher.fetch(f"https://tls.example:{server.port}/drip-body")
        assert got.reason.startswith("too slow: ")
        assert fetcher.fetch(f"https://tls.example:{server.port}/ok").ok
    finally:
        relay.close()
        server.close()


def test_unicode_host_names_are_sent_as_idna(srv, make_fetcher, no_system_dns):
    resolve = FakeResolver({"xn--bcher-kva.example": ["127.0.0.1"]})
    got = make_fetcher(resolve=resolve).fetch(f"http://bücher.example:{srv.port}/ok")
    assert got.ok and resolve.asked == ["xn--bcher-kva.example"]
    assert srv.host_headers == [f"xn--bcher-kva.example:{srv.port}"]


def test_ipv6_literals_and_user_info(make_fetcher):
    try:
        server = HostileServer("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        assert make_fetcher().fetch(server.url("/ok")).ok
        assert server.host_headers == [f"[::1]:{server.port}"]
        assert make_fetcher().fetch(f"http://user:secret@[::1]:{server.port}/ok").ok
        assert make_fetcher(allow_private_addresses=False).fetch(server.url("/ok")).reason \
            == "refused: private address ::1"
    finally:
        server.close()


@pytest.mark.parametrize("url,reason", [
    ("http://127.0.0.1:99999/x", "/^bad URL/"),
    ("http:///no-host", "bad URL: no host"),
    ("http://[::1/x", "/^bad URL/"),
    ("http://exa mple.com/", "dns error: Name or service not known"),
    ("https://", "bad URL: no host"),
])
def test_malformed_urls_have_a_reason(make_fetcher, url, reason):
    got = make_fetcher(resolve=FakeResolver({})).fetch(url)
    assert not got.ok
    assert got.reason.startswith(reason[2:-1]) if reason.startswith("/^") else got.reason == reason, got.reason


def test_system_resolver_is_used_by_default(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "",
                                                                 ("10.9.8.7", 80))])
    assert fetch.check_host("anything.example", 80, False) == "refused: private address 10.9.8.7"
