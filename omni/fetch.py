"""Fetch one crawl-list URL into a temporary file: polite, bounded, retried, never raising.

``http(s)://`` is streamed with a size cap, bounded redirects (each hop checked against
private addresses), timeouts and retries with exponential backoff and jitter on timeouts,
connection errors, 429 and 5xx (honouring ``Retry-After``). ``file://`` and plain paths
are read in place: the caller gets the original path back and the file is never moved.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import random
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as _U3Error
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError, SSLError
from urllib3.exceptions import TimeoutError as _U3Timeout

RETRY_STATUS = {429, 500, 502, 503, 504, 520, 521, 522, 523, 524}
MAX_RETRY_AFTER_S = 60.0


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


def _too_large(cap: int) -> str:
    mb = cap / (1024 * 1024)
    return f"too large: > {mb:g} MB" if mb >= 1 else f"too large: > {cap} bytes"


def check_host(host: str, port: int, allow_private: bool) -> str:
    """Empty string when the host may be contacted, else the reason it is refused."""
    if allow_private:
        return ""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        return f"dns error: {exc.strerror or exc}"
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
                or addr.is_reserved or addr.is_unspecified):
            return f"refused: private address {addr}"
    return ""


class Fetcher:
    """Thread-safe fetcher; one instance per ingest run (one connection pool per host)."""

    def __init__(self, opts: FetchOptions, tmp_dir: Path):
        self.opts = opts
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.hosts = _HostLimiter(opts.per_host)
        self.pool = urllib3.PoolManager(num_pools=256, maxsize=opts.per_host, block=False,
                                        headers={"User-Agent": opts.user_agent})

    def fetch(self, url: str) -> Fetched:
        try:
            scheme = urlsplit(url).scheme.lower()
            if scheme in ("http", "https"):
                return self._fetch_http(url)
            if scheme == "file":
                return self._fetch_local(unquote(urlsplit(url).path))
            if scheme and len(scheme) > 1:
                return Fetched(False, f"unsupported url scheme: {scheme}")
            return self._fetch_local(url)
        except Exception as exc:  # a worker never raises: it returns a reason
            return Fetched(False, f"fetch error: {type(exc).__name__}: {exc}")

    def _fetch_local(self, path: str) -> Fetched:
        p = Path(path)
        if not p.exists():
            return Fetched(False, "file not found")
        if not p.is_file():
            return Fetched(False, "not a regular file")
        size = p.stat().st_size
        if size > self.opts.max_bytes:
            return Fetched(False, _too_large(self.opts.max_bytes), nbytes=size)
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        return Fetched(True, path=str(p), sha256=h.hexdigest(), nbytes=size, tries=1)

    def _fetch_http(self, url: str) -> Fetched:
        opts = self.opts
        last_reason = ""
        for attempt in range(1, opts.tries + 1):
            result, retry_after = self._try_http(url)
            result.tries = attempt
            if result.ok or retry_after is None:
                return result
            last_reason = result.reason
            if attempt < opts.tries:
                delay = retry_after if retry_after > 0 else opts.backoff_s * (2 ** (attempt - 1))
                time.sleep(min(delay, MAX_RETRY_AFTER_S) * (1 + 0.25 * random.random()))
        return Fetched(False, f"{last_reason} after {opts.tries} tries", tries=opts.tries)

    def _try_http(self, url: str) -> tuple[Fetched, float | None]:
        """One attempt. Returns the result and, when worth retrying, a delay (0: use backoff)."""
        opts = self.opts
        timeout = urllib3.Timeout(connect=opts.connect_timeout_s, read=opts.read_timeout_s)
        current = url
        for _hop in range(opts.max_redirects + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return Fetched(False, f"bad redirect target: {current}"), None
            port = parts.port or (443 if parts.scheme == "https" else 80)
            refused = check_host(parts.hostname, port, opts.allow_private_addresses)
            if refused:
                return Fetched(False, refused), None
            with self.hosts.get(parts.hostname):
                try:
                    resp = self.pool.request("GET", current, preload_content=False, redirect=False,
                                             retries=False, timeout=timeout)
                except NewConnectionError as exc:  # (a ConnectTimeoutError subclass in urllib3)
                    return Fetched(False, _connection_reason(exc)), 0.0
                except _U3Timeout:
                    return Fetched(False, "timeout"), 0.0
                except _U3Error as exc:
                    return Fetched(False, _connection_reason(exc)), 0.0
                try:
                    status = resp.status
                    if status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                        current = urljoin(current, resp.headers["Location"])
                        continue
                    if status in RETRY_STATUS:
                        return Fetched(False, f"http {status}", http_status=status), _retry_after(resp)
                    if status >= 400:
                        return Fetched(False, f"http {status}", http_status=status), None
                    return self._stream_body(resp)
                finally:
                    resp.release_conn()
        return Fetched(False, f"too many redirects (> {opts.max_redirects})"), None

    def _stream_body(self, resp) -> tuple[Fetched, float | None]:
        cap = self.opts.max_bytes
        status = resp.status
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            return Fetched(False, _too_large(cap), http_status=status), None
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=self.tmp_dir)
        h = hashlib.sha256()
        n = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in resp.stream(1 << 16):
                    n += len(chunk)
                    if n > cap:
                        raise _TooLarge
                    h.update(chunk)
                    out.write(chunk)
        except _TooLarge:
            os.unlink(tmp)
            return Fetched(False, _too_large(cap), http_status=status), None
        except ReadTimeoutError:
            os.unlink(tmp)
            return Fetched(False, "timeout"), 0.0
        except (ProtocolError, _U3Error) as exc:
            os.unlink(tmp)
            if declared.isdigit() and n < int(declared):
                return Fetched(False, f"truncated download: {n} of {declared} bytes", http_status=status), 0.0
            return Fetched(False, f"read error: {_connection_reason(exc)}", http_status=status), 0.0
        if declared.isdigit() and n < int(declared):
            os.unlink(tmp)
            return Fetched(False, f"truncated download: {n} of {declared} bytes", http_status=status), 0.0
        return Fetched(True, path=tmp, is_temp=True, sha256=h.hexdigest(), nbytes=n, http_status=status), None


class _TooLarge(Exception):
    pass


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
    value = (resp.headers.get("Retry-After") or "").strip()
    if not value:
        return 0.0
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return 0.0
