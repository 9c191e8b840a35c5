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
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import requests

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
    """Thread-safe fetcher; one instance per ingest run."""

    def __init__(self, opts: FetchOptions, tmp_dir: Path):
        self.opts = opts
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.hosts = _HostLimiter(opts.per_host)
        self._local = threading.local()

    def _session(self) -> requests.Session:
        sess = getattr(self._local, "session", None)
        if sess is None:
            sess = requests.Session()
            sess.headers["User-Agent"] = self.opts.user_agent
            sess.trust_env = False
            self._local.session = sess
        return sess

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
        kind = "timeout" if last_reason.startswith("timeout") else last_reason
        if kind == "timeout":
            return Fetched(False, f"timeout after {opts.tries} tries", tries=opts.tries)
        return Fetched(False, f"{last_reason} after {opts.tries} tries", tries=opts.tries)

    def _try_http(self, url: str) -> tuple[Fetched, float | None]:
        """One attempt. Returns the result and, when worth retrying, a delay (0: use backoff)."""
        opts = self.opts
        sess = self._session()
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
                    resp = sess.get(current, stream=True, allow_redirects=False,
                                    timeout=(opts.connect_timeout_s, opts.read_timeout_s))
                except requests.Timeout:
                    return Fetched(False, "timeout"), 0.0
                except requests.ConnectionError as exc:
                    return Fetched(False, _connection_reason(exc)), 0.0
                try:
                    if resp.is_redirect:
                        current = urljoin(current, resp.headers.get("Location", ""))
                        continue
                    status = resp.status_code
                    if status in RETRY_STATUS:
                        return Fetched(False, f"http {status}", http_status=status), _retry_after(resp)
                    if status >= 400:
                        return Fetched(False, f"http {status}", http_status=status), None
                    return self._stream_body(resp), None
                finally:
                    resp.close()
        return Fetched(False, f"too many redirects (> {opts.max_redirects})"), None

    def _stream_body(self, resp: requests.Response) -> Fetched:
        cap = self.opts.max_bytes
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            return Fetched(False, _too_large(cap), http_status=resp.status_code)
        fd, tmp = _mkstemp(self.tmp_dir)
        h = hashlib.sha256()
        n = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in resp.iter_content(chunk_size=1 << 16):
                    n += len(chunk)
                    if n > cap:
                        raise _TooLarge
                    h.update(chunk)
                    out.write(chunk)
        except _TooLarge:
            os.unlink(tmp)
            return Fetched(False, _too_large(cap), http_status=resp.status_code)
        except requests.RequestException as exc:
            os.unlink(tmp)
            return Fetched(False, f"read error: {type(exc).__name__}", http_status=resp.status_code)
        declared_n = int(declared) if declared and declared.isdigit() else None
        if declared_n is not None and n < declared_n:
            os.unlink(tmp)
            return Fetched(False, f"truncated download: {n} of {declared_n} bytes", http_status=resp.status_code)
        return Fetched(True, path=tmp, is_temp=True, sha256=h.hexdigest(), nbytes=n,
                       http_status=resp.status_code)


class _TooLarge(Exception):
    pass


def _mkstemp(folder: Path) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix=".part-", dir=folder)


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    for needle, reason in (("Connection refused", "connection refused"), ("Name or service not known", "dns error"),
                           ("Connection reset", "connection reset"), ("Remote end closed", "connection closed"),
                           ("SSLError", "tls error"), ("certificate", "tls error")):
        if needle in text or needle in type(exc).__name__:
            return reason
    return f"connection error: {type(exc).__name__}"


def _retry_after(resp: requests.Response) -> float:
    value = resp.headers.get("Retry-After", "").strip()
    if not value:
        return 0.0
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return 0.0
