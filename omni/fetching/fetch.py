"""Fetch one crawl-list URL into a temporary file: polite, bounded, retried, never raising.

``http(s)://`` is streamed with a size cap, bounded redirects, connect/read timeouts and
retries with exponential backoff and jitter on timeouts, connection errors (a reset mid-body
included), a temporary DNS failure, 429 and 5xx (honouring ``Retry-After``; 4xx is never
retried). Each item also has an overall deadline
(``item_timeout_s``) and a minimum average rate (``min_bytes_per_s`` after ``rate_grace_s``):
a server that drips one byte per second defeats per-read timeouts, so a watchdog thread
shuts the socket of an item that outlives its deadline or its response-header limit.

Every host is resolved once per hop; every address it resolves to must be globally routable
(unless ``allow_private_addresses``), and the connection goes to the address that was
checked, with the host name kept for the Host header, TLS SNI and the certificate check (no
DNS rebinding). A response is drained (small bodies) or closed before its connection can
serve another request.

``file://`` URLs and plain paths are read in place (the caller gets the file's resolved path
back; the file is never moved or changed), only when they are regular files under
``local_roots`` (symlinks and ``..`` resolved first; ``None``: no root policy) and never under
/proc, /sys or /dev; the size cap is enforced while reading.
"""
from __future__ import annotations

import hashlib
import http.client
import ipaddress
import itertools
import math
import os
import random
import re
import socket
import stat
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote, unquote, urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (DecodeError, InvalidChunkLength, InvalidHeader, LocationParseError,
                                NewConnectionError, ProtocolError, SSLError)
from urllib3.exceptions import TimeoutError as _U3Timeout

from ..runtime.diskspace import is_disk_full

RETRY_STATUS = {429, 500, 502, 503, 504, 520, 521, 522, 523, 524}
REDIRECT_STATUS = {301, 302, 303, 307, 308}
MAX_RETRY_AFTER_S = 60.0
DRAIN_MAX_BYTES = 64 * 1024  # a redirect or error body up to this size is read so its connection is reused
MAX_INTERIM_RESPONSES = 16  # 1xx responses (103 Early Hints, ...) passed over before the final one; more: a bad response
READ_CHUNK = 1 << 16
WATCH_INTERVAL_S = 0.05
SPECIAL_FILESYSTEMS = ("/proc", "/sys", "/dev")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{1,31}):")
_URL_SAFE = "/?&=%:@!$'()*+,;-._~[]"

Resolver = Callable[[str, int], list]
DNS_TEMPORARY = "dns error: temporary failure in name resolution"  # retried within the item's deadline


@dataclass
class FetchOptions:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 20.0
    max_bytes: int = 200 * 1024 * 1024
    max_redirects: int = 5
    tries: int = 3
    backoff_s: float = 0.5
    user_agent: str = "omni-ingest/0.1"
    allow_private_addresses: bool = False
    per_host: int = 8
    item_timeout_s: float = 120.0  # overall deadline per item: retries, redirects and body included
    min_bytes_per_s: float = 1000.0  # minimum average body rate, checked after rate_grace_s
    rate_grace_s: float = 10.0
    local_roots: tuple | list | None = None  # folders that plain paths may be read under; None: no policy
    ca_certs: str | None = None  # extra CA bundle for https (default: the system's)


@dataclass
class Fetched:
    """What a fetch produced. ``path`` is a temp file (``is_temp``) or the user's own file."""

    ok: bool
    reason: str = ""
    path: str = ""
    is_temp: bool = False
    sha256: str = ""
    nbytes: int = 0
    http_status: int | None = None
    tries: int = 0


def local_roots_for(configured: Iterable | None, list_paths: Iterable) -> tuple[str, ...]:
    """``ingest.local_roots`` when set, else the folder of every list (a folder list is its own root)."""
    if configured is not None:
        return tuple(str(Path(p).expanduser()) for p in configured)
    roots = [str(p if Path(p).is_dir() else Path(p).parent) for p in list_paths]
    return tuple(dict.fromkeys(roots))


def url_scheme(url: str) -> str:
    """The URL's scheme in lower case; empty for plain paths (a one-letter scheme is a drive)."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""


def local_path(url: str) -> str | None:
    """The file a plain path or ``file://`` URL names (as the fetcher reads it), else None."""
    scheme = url_scheme(url) if url else "-"
    if scheme == "":
        return url
    if scheme == "file":
        parts = urlsplit(url)
        return unquote(parts.path) if parts.netloc in ("", "localhost") else None
    return None


def local_signature(url: str) -> list | str | None:
    """What is at a local URL now: ``[size, mtime_ns, inode]``, or ``"missing"``; None for a
    remote URL. The downloads journal keeps it, so a file changed in place is checked again."""
    path = local_path(url)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "missing"
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _too_large(cap: int) -> str:
    mb = cap / (1024 * 1024)
    return f"too large: > {mb:g} MB" if mb >= 1 else f"too large: > {cap} bytes"


# ---------------------------------------------------------------- the address guard

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TEREDO = ipaddress.ip_network("2001::/32")


def _embedded_ipv4(ip) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv6 address reaches (mapped, 6to4, NAT64), else None."""
    if ip.version == 4:
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_public(ip) -> bool:
    if ip.version == 4 and ip in _CGNAT:
        return False
    if ip.version == 6 and (ip.is_site_local or ip in _TEREDO):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local
                                 or ip.is_unspecified)


def address_refusal(address: str) -> str:
    """Empty when ``address`` is globally routable, else the reason it is refused.

    IPv6 forms that carry an IPv4 address (IPv4-mapped, 6to4, NAT64) are judged by that
    address; IPv4-compatible, Teredo, site-local and every reserved range are refused."""
    try:
        ip = ipaddress.ip_address(str(address).split("%")[0])
    except ValueError:
        return f"refused: not an address {str(address)[:60]!r}"
    inner = _embedded_ipv4(ip)
    if not _is_public(inner if inner is not None else ip):
        return f"refused: private address {ip}"
    return ""


def system_resolve(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def pick_address(host: str, port: int, allow_private: bool, resolve: Resolver = system_resolve) -> tuple[str, str]:
    """``(address, "")`` to connect to, or ``("", reason)``. Every address the host resolves to
    must pass the guard; the first one is used, so the checked address is the one connected to."""
    try:
        addresses = [str(ipaddress.ip_address(host))]  # a literal address needs no lookup
    except ValueError:
        addresses = None
    try:
        addresses = addresses or [str(a).split("%")[0] for a in resolve(host, port)]
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:  # the resolver is unreachable or overloaded: retried
            return "", DNS_TEMPORARY
        return "", f"dns error: {exc.strerror or exc}"
    except (UnicodeError, ValueError, OSError):
        return "", "dns error: bad host name"
    if not addresses:
        return "", "dns error: no address"
    if not allow_private:
        for address in addresses:
            refused = address_refusal(address)
            if refused:
                return "", refused
    return addresses[0], ""


def check_host(host: str, port: int, allow_private: bool, resolve: Resolver = system_resolve) -> str:
    """Empty string when the host may be contacted, else the reason it is refused."""
    return pick_address(host, port, allow_private, resolve)[1]


# ---------------------------------------------------------------- deadlines and their watchdog

def _shut(sock) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # also wakes a read blocked in another thread
    except (OSError, TypeError):
        pass


class _Deadline:
    """One item's time limits; the watchdog shuts the sockets of an item that outlives them."""

    def __init__(self, item_s: float):
        self.item_s = item_s
        self.until = time.monotonic() + item_s
        self.phase_until = math.inf
        self.phase_reason = ""
        self.reason = ""  # set once, when a limit was hit
        self._socks: list = []
        self._lock = threading.Lock()

    def left(self) -> float:
        return self.until - time.monotonic()

    def start_phase(self, seconds: float, reason: str) -> None:
        self.phase_reason = reason
        self.phase_until = time.monotonic() + seconds

    def end_phase(self) -> None:
        self.phase_until = math.inf

    def expired(self) -> str:
        """The reason once a limit has passed, else empty."""
        now = time.monotonic()
        if not self.reason:
            if now >= self.until:
                self.reason = f"timeout: item deadline {self.item_s:g} s exceeded"
            elif now >= self.phase_until:
                self.reason = self.phase_reason
        return self.reason

    def watch(self, sock) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.reason:
                _shut(sock)

    def unwatch(self) -> None:
        with self._lock:
            self._socks.clear()

    def fire_if_expired(self) -> None:
        if self.expired():
            with self._lock:
                for sock in self._socks:
                    _shut(sock)


_PART_IDS = itertools.count()


def _new_part(folder: Path) -> tuple[int, str]:
    """A new, empty download file ``.part-<pid>-<n>`` in ``folder`` (owner-only, as mkstemp makes
    them), without mkstemp's random names: a process counter is unique, O_EXCL makes sure."""
    while True:
        path = os.path.join(folder, f".part-{os.getpid()}-{next(_PART_IDS)}")
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path
        except FileExistsError:  # left by an earlier process with the same pid
            continue


class _Watchdog:
    """One thread for all fetchers: every ``WATCH_INTERVAL_S`` it fires the deadlines that passed."""

    def __init__(self):
        self._cond = threading.Condition()
        self._items: set[_Deadline] = set()
        self._thread: threading.Thread | None = None

    def add(self, deadline: _Deadline) -> None:
        with self._cond:
            self._items.add(deadline)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="omni-fetch-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, deadline: _Deadline) -> None:
        with self._cond:
            self._items.discard(deadline)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items:
                    self._cond.wait()
                items = list(self._items)
            for deadline in items:
                deadline.fire_if_expired()
            time.sleep(WATCH_INTERVAL_S)


_WATCHDOG = _Watchdog()
_current = threading.local()  # the deadline of the item this thread is fetching


def _watch(sock) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _TooManyInterimResponses(http.client.HTTPException):
    pass


class _FinalResponse(http.client.HTTPResponse):
    """A response read past its interim (1xx) responses. http.client passes over ``100 Continue``
    only, so a ``103 Early Hints`` ahead of the ``200`` became the answer; RFC 9110 (15.2) has a
    client parse and pass over every 1xx it did not ask for. ``101 Switching Protocols`` answers
    an upgrade omni never requests: it stays the final status (a failure). At most
    ``MAX_INTERIM_RESPONSES`` are passed over, each one's header fields under http.client's own
    limits (line length, count); the item's header deadline covers them all."""

    def _read_status(self):
        for _ in range(MAX_INTERIM_RESPONSES + 1):
            version, status, reason = super()._read_status()
            if not 100 <= status < 200 or status == 101:
                return version, status, reason
            http.client.parse_headers(self.fp)  # the interim response's fields, read and dropped
        raise _TooManyInterimResponses(f"more than {MAX_INTERIM_RESPONSES} interim (1xx) responses")


class _Watched:
    """Connection mix-in: hands every socket it opens or reuses to the current item's deadline,
    and reads responses past their interim (1xx) responses."""

    response_class = _FinalResponse

    def _new_conn(self):
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def request(self, *args, **kwargs):
        _watch(self.sock)
        return super().request(*args, **kwargs)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _HostLimiter:
    """At most ``per_host`` connections to one host at a time."""

    def __init__(self, per_host: int):
        self.per_host = per_host
        self._lock = threading.Lock()
        self._sems: dict[str, threading.BoundedSemaphore] = {}

    def get(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            if host not in self._sems:
                self._sems[host] = threading.BoundedSemaphore(self.per_host)
            return self._sems[host]


# ---------------------------------------------------------------- one request's target

@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str  # ASCII (IDNA) host name or address, no brackets
    port: int
    host_header: str
    path: str  # path and query, percent-encoded where needed


def _parse_target(url: str) -> tuple[_Target | None, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return None, f"bad URL: {str(exc)[:60]}"
    scheme = parts.scheme.lower()
    if not parts.hostname:
        return None, "bad URL: no host"
    try:
        host = parts.hostname.encode("idna").decode("ascii") if not parts.hostname.isascii() else parts.hostname
    except UnicodeError:
        return None, "bad URL: host name"
    default_port = 443 if scheme == "https" else 80
    port = port or default_port
    header = f"[{host}]" if ":" in host else host
    if port != default_port:
        header += f":{port}"
    path = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_URL_SAFE)
    return _Target(url, scheme, host, port, header, path), ""


# ---------------------------------------------------------------- the fetcher

class Fetcher:
    """Thread-safe fetcher; one instance per ingest run (one connection pool per address)."""

    def __init__(self, opts: FetchOptions, tmp_dir: Path, resolve: Resolver | None = None):
        self.opts = opts
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.resolve = resolve or system_resolve
        self.roots = None if opts.local_roots is None else tuple(
            os.path.realpath(os.path.expanduser(str(r))) for r in opts.local_roots)
        self.hosts = _HostLimiter(opts.per_host)
        self.pool = urllib3.PoolManager(num_pools=256, maxsize=opts.per_host, block=False)
        self.pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def fetch(self, url: str) -> Fetched:
        deadline = _Deadline(self.opts.item_timeout_s)
        _current.deadline = deadline
        _WATCHDOG.add(deadline)
        try:
            return self._fetch(str(url if url is not None else "").strip(), deadline)
        except Exception as exc:  # a worker never raises: it returns a reason (a full disk is no bad URL)
            if is_disk_full(exc):
                raise
            return Fetched(False, deadline.reason or f"fetch error: {type(exc).__name__}: {str(exc)[:80]}")
        finally:
            _WATCHDOG.remove(deadline)
            _current.deadline = None

    def _fetch(self, url: str, deadline: _Deadline) -> Fetched:
        if not url:
            return Fetched(False, "empty URL")
        scheme = url_scheme(url)
        if scheme in ("http", "https"):
            return self._fetch_http(url, deadline)
        if scheme == "file":
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                return Fetched(False, f"unsupported file URL host: {parts.netloc[:60]}")
            return self._fetch_local(unquote(parts.path), deadline)
        if scheme:
            return Fetched(False, f"unsupported URL scheme: {scheme}")
        return self._fetch_local(url, deadline)

    # -- local files

    def local_refusal(self, real_path: str) -> str:
        """Empty when a resolved path may be read, else the reason it is refused."""
        special = next((d for d in SPECIAL_FILESYSTEMS if _is_under(real_path, d)), None)
        if special:
            return f"refused: special file system {special}"
        if self.roots is not None and not any(_is_under(real_path, r) for r in self.roots):
            return "refused: outside local_roots"
        return ""

    def _fetch_local(self, path: str, deadline: _Deadline) -> Fetched:
        if not path:
            return Fetched(False, "empty URL")
        if "\x00" in path:
            return Fetched(False, "bad path: NUL byte")
        real = os.path.realpath(path)  # symlinks and .. resolved before the check
        refused = self.local_refusal(real)
        if refused:
            return Fetched(False, refused)
        fd, why = _open_regular(real)
        if fd is None:
            return Fetched(False, why)
        try:
            opened = _fd_path(fd)  # what was really opened, should the path have changed since
            refused = self.local_refusal(opened) if opened else ""
            if refused:
                return Fetched(False, refused)
            return self._read_local(fd, real, deadline)
        finally:
            os.close(fd)

    def _read_local(self, fd: int, path: str, deadline: _Deadline) -> Fetched:
        cap = self.opts.max_bytes
        h = hashlib.sha256()
        n = 0
        while chunk := os.read(fd, 1 << 20):
            n += len(chunk)
            if n > cap:  # the cap is enforced on what is read, not on st_size (/proc reports 0)
                return Fetched(False, _too_large(cap), nbytes=n)
            h.update(chunk)
            if deadline.expired():
                return Fetched(False, deadline.reason, nbytes=n)
        return Fetched(True, path=path, sha256=h.hexdigest(), nbytes=n, tries=1)

    # -- http(s)

    def _fetch_http(self, url: str, deadline: _Deadline) -> Fetched:
        opts = self.opts
        last_reason = ""
        for attempt in range(1, opts.tries + 1):
            result, retry_after = self._try_http(url, deadline)
            result.tries = attempt
            if result.ok or retry_after is None:
                return result
            last_reason = result.reason
            if attempt < opts.tries:
                delay = retry_after if retry_after > 0 else opts.backoff_s * (2 ** (attempt - 1))
                delay = min(delay, MAX_RETRY_AFTER_S) * (1 + 0.25 * random.random())
                if delay >= deadline.left():  # no time left for another try
                    return Fetched(False, f"{last_reason} {_after(attempt)}", tries=attempt)
                time.sleep(delay)
        return Fetched(False, f"{last_reason} {_after(opts.tries)}", tries=opts.tries)

    def _try_http(self, url: str, deadline: _Deadline) -> tuple[Fetched, float | None]:
        """One attempt. Returns the result and, when worth retrying, a delay (0: use backoff)."""
        opts = self.opts
        current = url
        for _hop in range(opts.max_redirects + 1):
            if url_scheme(current) not in ("http", "https"):
                return Fetched(False, f"bad redirect target: {current[:100]}"), None
            target, bad = _parse_target(current)
            if target is None:
                return Fetched(False, bad), None
            address, refused = pick_address(target.host, target.port, opts.allow_private_addresses, self.resolve)
            if refused:
                return Fetched(False, refused), (0.0 if refused == DNS_TEMPORARY else None)
            result, retry_after, location = self._hop(target, address, deadline)
            if location is None:
                return result, retry_after
            current = location
        return Fetched(False, f"too many redirects (> {opts.max_redirects})"), None

    def _hop(self, target: _Target, address: str, deadline: _Deadline):
        """One request to one checked address: ``(result, retry delay, redirect location)``."""
        slot = self.hosts.get(target.host)
        if not slot.acquire(timeout=max(0.0, deadline.left())):
            return Fetched(False, deadline.expired() or "timeout: no free connection slot"), None, None
        try:
            resp, failure = self._request(target, address, deadline)
            if resp is None:
                return failure[0], failure[1], None
            try:
                return self._handle(resp, target, deadline)
            finally:
                deadline.unwatch()  # before the connection can serve another item
                resp.release_conn()
        finally:
            deadline.unwatch()
            slot.release()

    def _request(self, target: _Target, address: str, deadline: _Deadline):
        opts = self.opts
        if deadline.expired():
            return None, (Fetched(False, deadline.reason), None)
        tls = {}
        if target.scheme == "https":
            tls = {"server_hostname": target.host, "assert_hostname": target.host}
            if opts.ca_certs:
                tls["ca_certs"] = opts.ca_certs
        pool = self.pool.connection_from_host(address, port=target.port, scheme=target.scheme, pool_kwargs=tls)
        left = deadline.left()
        timeout = urllib3.Timeout(connect=min(opts.connect_timeout_s, left), read=min(opts.read_timeout_s, left))
        header_limit = opts.connect_timeout_s + opts.read_timeout_s + 1.0
        deadline.start_phase(header_limit, f"timeout: no complete response headers after {header_limit:g} s")
        try:
            resp = pool.urlopen("GET", target.path, headers={"User-Agent": opts.user_agent, "Host": target.host_header},
                                redirect=False, retries=False, timeout=timeout, preload_content=False,
                                assert_same_host=False, release_conn=False)
        except Exception as exc:
            if deadline.expired():
                return None, (Fetched(False, deadline.reason), None)
            return None, _request_failure(exc)
        finally:
            deadline.end_phase()
        return resp, None

    def _handle(self, resp, target: _Target, deadline: _Deadline):
        status = resp.status
        location = resp.headers.get("Location")
        if status in REDIRECT_STATUS and location:
            _discard(resp, deadline)
            try:
                return None, None, urljoin(target.url, location.strip())
            except ValueError:
                return Fetched(False, f"bad redirect target: {location[:100]}", http_status=status), None, None
        if status in RETRY_STATUS:
            retry_after = _retry_after(resp)
            _discard(resp, deadline)
            return Fetched(False, f"http {status}", http_status=status), retry_after, None
        if not 200 <= status < 300:
            _discard(resp, deadline)
            return Fetched(False, f"http {status}", http_status=status), None, None
        result, retry_after = self._stream_body(resp, deadline)
        return result, retry_after, None

    def _stream_body(self, resp, deadline: _Deadline) -> tuple[Fetched, float | None]:
        cap = self.opts.max_bytes
        status = resp.status
        declared = _content_length(resp)
        if declared is not None and declared > cap:
            resp.close()
            return Fetched(False, _too_large(cap), http_status=status), None
        fd, tmp = _new_part(self.tmp_dir)
        h = hashlib.sha256()
        n = 0
        failure: tuple[str, float | None] | None = None
        started = time.monotonic()
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := resp.read1(READ_CHUNK):  # read1: one socket read, so drips are seen
                    n += len(chunk)
                    if n > cap:
                        failure = (_too_large(cap), None)
                        break
                    h.update(chunk)
                    out.write(chunk)
                    failure = self._too_slow(n, time.monotonic() - started)
                    if failure:
                        break
        except Exception as exc:
            if is_disk_full(exc):  # our disk, not the server: stop the run, keep no part
                resp.close()
                os.unlink(tmp)
                raise
            failure = _read_failure(exc, resp, declared)
        if deadline.expired():
            failure = (deadline.reason, None)
        elif failure is None and declared is not None and resp.tell() < declared:
            failure = (f"truncated download: got {resp.tell()} of {declared} bytes", 0.0)
        if failure:
            resp.close()  # never reuse a connection whose response was not read to its end
            os.unlink(tmp)
            return Fetched(False, failure[0], http_status=status), failure[1]
        return Fetched(True, path=tmp, is_temp=True, sha256=h.hexdigest(), nbytes=n, http_status=status), None

    def _too_slow(self, nbytes: int, elapsed: float) -> tuple[str, None] | None:
        opts = self.opts
        if elapsed < opts.rate_grace_s or opts.min_bytes_per_s <= 0:
            return None
        rate = nbytes / elapsed
        return (f"too slow: {rate:.0f} B/s", None) if rate < opts.min_bytes_per_s else None


def _after(tries: int) -> str:
    return "after 1 try" if tries == 1 else f"after {tries} tries"


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


_SPECIAL_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "character device"),
                  (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


def _not_regular(mode: int) -> str:
    kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "special file")
    return "" if stat.S_ISREG(mode) else f"refused: not a regular file ({kind})"


def _open_regular(path: str) -> tuple[int | None, str]:
    """An open descriptor of a regular file, or ``(None, reason)``. Never blocks on a FIFO."""
    try:
        refused = _not_regular(os.stat(path).st_mode)
        if refused:
            return None, refused
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None, "file not found"
    except PermissionError:
        return None, "permission denied"
    except OSError as exc:
        return None, f"cannot read file: {exc.strerror or exc}"
    refused = _not_regular(os.fstat(fd).st_mode)  # it may have been swapped since the first look
    if refused:
        os.close(fd)
        return None, refused
    return fd, ""


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _content_length(resp) -> int | None:
    value = (resp.headers.get("Content-Length") or "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _discard(resp, deadline: _Deadline) -> None:
    """Leave the connection clean for its next request: read a small body to its end, else close it."""
    remaining = resp.length_remaining
    if remaining is not None and remaining <= DRAIN_MAX_BYTES:
        try:
            while resp.length_remaining and resp.read1(READ_CHUNK, decode_content=False):
                pass
        except Exception:
            pass
        if resp.length_remaining == 0 and not deadline.expired():
            return
    resp.close()


def _request_failure(exc: Exception) -> tuple[Fetched, float | None]:
    if isinstance(exc, SSLError):
        return Fetched(False, "tls error"), None
    if isinstance(exc, NewConnectionError):  # (a ConnectTimeoutError subclass in urllib3)
        return Fetched(False, _connection_reason(exc)), 0.0
    if isinstance(exc, _U3Timeout):
        return Fetched(False, "timeout"), 0.0
    if isinstance(exc, InvalidHeader):
        return Fetched(False, "bad response: invalid header"), None
    if isinstance(exc, (LocationParseError, ValueError)):
        return Fetched(False, f"bad URL: {str(exc)[:60]}"), None
    bad = _bad_response(exc)
    if bad:
        return Fetched(False, bad), None
    return Fetched(False, _connection_reason(exc)), 0.0


def _bad_response(exc: Exception) -> str:
    """A reason when the server answered with something that is not HTTP (never retried)."""
    cause = exc.args[1] if isinstance(exc, ProtocolError) and len(exc.args) > 1 else exc
    if not isinstance(cause, http.client.HTTPException) or isinstance(
            cause, (http.client.RemoteDisconnected, http.client.IncompleteRead)):
        return ""
    if isinstance(cause, _TooManyInterimResponses):
        return f"bad response: {cause}"
    if isinstance(cause, http.client.LineTooLong):
        return "bad response: line too long"
    if "more than" in str(cause) and "headers" in str(cause):
        return "bad response: too many headers"
    return f"bad response: {type(cause).__name__}"


def _read_failure(exc: Exception, resp, declared: int | None) -> tuple[str, float | None]:
    if isinstance(exc, DecodeError):
        return "bad content encoding", None
    if isinstance(exc, _U3Timeout):
        return "timeout", 0.0
    if declared is not None and resp.tell() < declared:
        return f"truncated download: got {resp.tell()} of {declared} bytes", 0.0
    cause = exc.args[1] if isinstance(exc, ProtocolError) and len(exc.args) > 1 else exc
    if isinstance(cause, (http.client.IncompleteRead, InvalidChunkLength)):  # a chunked body cut or garbled
        return f"truncated download: got {resp.tell()} bytes, then the stream broke", 0.0
    return f"read error: {_connection_reason(exc)}", 0.0


def _connection_reason(exc: Exception) -> str:
    if isinstance(exc, SSLError):
        return "tls error"
    text = str(exc)
    for needle, reason in (("Connection refused", "connection refused"), ("Name or service not known", "dns error"),
                           ("Connection reset", "connection reset"), ("Remote end closed", "connection closed"),
                           ("certificate", "tls error")):
        if needle in text:
            return reason
    return f"connection error: {type(exc).__name__}"


def _retry_after(resp) -> float:
    """Seconds the server asks to wait. An HTTP date is read against the response's own ``Date``
    (the server's clock, as RFC 9110 suggests), so a jump of this machine's clock neither makes
    the wait a day long nor skips it; without a ``Date``, against this machine's clock."""
    value = (resp.headers.get("Retry-After") or "").strip()
    if not value:
        return 0.0
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, OverflowError):
        return 0.0
    try:
        now = parsedate_to_datetime(resp.headers.get("Date") or "").timestamp()
    except (TypeError, ValueError, OverflowError):
        now = time.time()
    return max(0.0, when - now)
