"""A misbehaving HTTP server on loopback, written on raw sockets so every byte is under control.

Routes (by path prefix) drip bytes, lie about lengths, loop redirects, poison keep-alive
connections, send bombs and garbage. The server counts hits per path, connections, and the
Host headers (and TLS server names) it saw. ``close()`` stops every handler it started.
"""
from __future__ import annotations

import socket
import ssl
import threading
import time
import zlib
from collections import Counter

OK_BODY = b"x" * 1000


class HostileServer:
    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.tls = tls
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.hits: Counter = Counter()
        self.host_headers: list[str] = []
        self.server_names: list[str] = []
        self.connections = 0
        self.routes = dict(ROUTES)
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        if tls is not None:
            tls.sni_callback = lambda _sslobj, name, _ctx: self.server_names.append(name)
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()
            self.host_headers.clear()
            self.server_names.clear()
            self.connections = 0

    def close(self) -> None:
        self.stopping.set()
        self._accepter.join(2)
        self.sock.close()
        with self.lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for t in self._threads:
            t.join(2)

    # -- plumbing

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with self.lock:
                self.connections += 1
                self._conns.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn.settimeout(2)
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(0.1)
            buf = b""
            while not self.stopping.is_set():
                head, buf = self._read_request(conn, buf)
                if head is None:
                    return
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                with self.lock:
                    self.hits[path] += 1
                    self.host_headers.append(headers.get("host", ""))
                handler = next((h for prefix, h in self.routes.items() if path.startswith(prefix)), not_found)
                if not handler(self, conn, path):
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            with self.lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _read_request(self, conn, buf: bytes):
        while b"\r\n\r\n" not in buf:
            if self.stopping.is_set():
                return None, b""
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return None, b""
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        return head, rest

    def send(self, conn, data: bytes) -> None:
        conn.sendall(data)

    def drip(self, conn, data: bytes, every_s: float, size: int = 1) -> bool:
        """Send ``data`` ``size`` bytes at a time; False when the client went away or the server stops."""
        for i in range(0, len(data), size):
            if self.stopping.is_set():
                return False
            try:
                conn.sendall(data[i:i + size])
            except OSError:
                return False
            time.sleep(every_s)
        return True

    def idle(self, seconds: float = 3600) -> None:
        """Hold the connection open without sending (until the server stops or time is up)."""
        self.stopping.wait(seconds)


def response(status: str, body: bytes = b"", headers: dict | None = None, length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- routes: handler(server, conn, path) -> keep the connection open for another request


def ok(s, conn, path):
    s.send(conn, response("200 OK", OK_BODY))
    return True


def not_found(s, conn, path):
    s.send(conn, response("404 Not Found", b"nothing here"))
    return True


def poisoned_404(s, conn, path):
    """A 404 whose body arrives a moment after its headers, on a keep-alive connection."""
    body = b"<html>not found, sorry</html>"
    s.send(conn, response("404 Not Found", body)[:-len(body)])
    time.sleep(0.05)
    s.send(conn, body)
    return True


def redirect_same_host(s, conn, path):
    body = b"<html>moved <a href='/ok'>here</a></html>"
    s.send(conn, response("302 Found", body, {"Location": "/ok"})[:-len(body)])
    time.sleep(0.05)
    s.send(conn, body)
    return True


def redirect_absolute(s, conn, path):
    s.send(conn, response("301 Moved", b"", {"Location": s.url("/ok")}))
    return True


def redirect_chunked_body(s, conn, path):
    s.send(conn, b"HTTP/1.1 307 Temporary\r\nLocation: /ok\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n0\r\n\r\n")
    return True


def redirect_no_length(s, conn, path):
    """A redirect whose body runs until the connection closes (no length, no chunks)."""
    s.send(conn, b"HTTP/1.1 302 Found\r\nLocation: /ok\r\n\r\nsome body")
    return False


def loop(s, conn, path):
    s.send(conn, response("302 Found", b"again", {"Location": "/loop"}))
    return True


def chain(s, conn, path):
    n = int(path.rsplit("/", 1)[1])
    s.send(conn, response("302 Found", b"", {"Location": f"/chain/{n + 1}"}))
    return True


def redirect_to(target: str):
    def handler(s, conn, path):
        s.send(conn, response("302 Found", b"", {"Location": target}))
        return True
    return handler


def drip_status_line(s, conn, path):
    s.drip(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 0.2)
    return False


def drip_headers(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\n")
    s.drip(conn, b"X-Padding: " + b"a" * 100000, 0.1)
    return False


def drip_body(s, conn, path):
    body = b"y" * 100_000
    s.send(conn, response("200 OK", body)[:-len(body)])
    s.drip(conn, body, 0.1)
    return False


def drip_body_no_length(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    s.drip(conn, b"y" * 100_000, 0.1)
    return False


def drip_chunked(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(100_000):
        if not s.drip(conn, b"1\r\nz\r\n", 0.05, size=6):
            break
    return False


def steady(s, conn, path):
    """2 KB every 0.1 s (20 KB/s, above any minimum rate) for a long time: only a deadline stops it."""
    body = b"s" * 10_000_000
    s.send(conn, response("200 OK", body)[:-len(body)])
    s.drip(conn, body, 0.1, size=2000)
    return False


def silent(s, conn, path):
    s.idle(30)
    return False


def close_at_once(s, conn, path):
    return False


def short_then_close(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"z" * 100)
    return False


def short_then_hang(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"z" * 100)
    s.idle(30)
    return False


def long_body(s, conn, path):
    """Declares 100 bytes, sends 5000, keeps the connection: the extra bytes must not poison it."""
    s.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"L" * 5000)
    return True


def huge_length(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n" + b"h" * 1000)
    s.idle(5)
    return False


def endless(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    chunk = b"e" * 65536
    while not s.stopping.is_set():
        try:
            conn.sendall(chunk)
        except OSError:
            break
    return False


def gzip_bomb(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(GZIP_BOMB)
           + GZIP_BOMB)
    return False


def gzip_garbage(s, conn, path):
    body = b"\x1f\x8b\x08\x00garbage-that-is-not-deflate" * 10
    s.send(conn, response("200 OK", body, {"Content-Encoding": "gzip"}))
    return False


def many_headers(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(500))
           + b"Content-Length: 2\r\n\r\nok")
    return False


def long_header_line(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 200_000 + b"\r\nContent-Length: 2\r\n\r\nok")
    return False


def garbage(s, conn, path):
    s.send(conn, b"HELLO THERE\r\n\r\n")
    return False


def http09(s, conn, path):
    s.send(conn, b"\x89PNG\r\n\x1a\n just bytes, no status line")
    return False


def status(code: str, headers: dict | None = None):
    def handler(s, conn, path):
        s.send(conn, response(code, b"body", headers))
        return True
    return handler


def no_content(s, conn, path):
    s.send(conn, b"HTTP/1.1 204 No Content\r\n\r\n")
    return True


def two_lengths(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n" + b"t" * 20)
    return False


def negative_length(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\nConnection: close\r\n\r\nnegative")
    return False


def bad_chunks(s, conn, path):
    s.send(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n0\r\n\r\n")
    return False


def interim(*codes: str, then: str = "200 OK"):
    """Interim (1xx) responses, each with a header field, then the final response."""
    def handler(s, conn, path):
        s.send(conn, b"".join(f"HTTP/1.1 {code}\r\nLink: </style.css>; rel=preload\r\n\r\n".encode()
                              for code in codes) + response(then, OK_BODY))
        return True
    return handler


def interim_flood(s, conn, path):
    """``103 Early Hints`` for ever, never a final response."""
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    while not s.stopping.is_set():
        try:
            conn.sendall(hint * 64)
        except OSError:
            break
    return False


def echo_path(s, conn, path):
    s.send(conn, response("200 OK", path.encode("latin-1")))
    return True


def _gzip_bomb(total: int = 200 * 1024 * 1024) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    zero = bytes(1 << 20)
    out = [comp.compress(zero) for _ in range(total >> 20)]
    out.append(comp.flush())
    return b"".join(out)


GZIP_BOMB = _gzip_bomb()  # 200 MB of zeros in about 200 KB

ROUTES = {
    "/ok": ok,
    "/404-poison": poisoned_404,
    "/redirect-same": redirect_same_host,
    "/redirect-abs": redirect_absolute,
    "/redirect-chunked": redirect_chunked_body,
    "/redirect-nolength": redirect_no_length,
    "/redirect-file": redirect_to("file:///etc/passwd"),
    "/redirect-data": redirect_to("data:text/plain,hello"),
    "/redirect-ftp": redirect_to("ftp://example.com/x"),
    "/redirect-private": redirect_to("http://internal.example/secret"),
    "/redirect-metadata": redirect_to("http://169.254.169.254/latest/meta-data/"),
    "/redirect-garbage": redirect_to("http://[::1/x"),
    "/loop": loop,
    "/chain/": chain,
    "/drip-status": drip_status_line,
    "/drip-headers": drip_headers,
    "/drip-body": drip_body,
    "/drip-nolength": drip_body_no_length,
    "/drip-chunked": drip_chunked,
    "/steady": steady,
    "/silent": silent,
    "/close": close_at_once,
    "/short-close": short_then_close,
    "/short-hang": short_then_hang,
    "/long-body": long_body,
    "/huge-length": huge_length,
    "/endless": endless,
    "/gzip-bomb": gzip_bomb,
    "/gzip-garbage": gzip_garbage,
    "/many-headers": many_headers,
    "/long-header": long_header_line,
    "/garbage": garbage,
    "/http09": http09,
    "/status-500": status("500 Internal Server Error"),
    "/status-503-forever": status("503 Service Unavailable", {"Retry-After": "100000"}),
    "/status-429-date": status("429 Too Many", {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}),
    "/status-429-bad": status("429 Too Many", {"Retry-After": "soon-ish"}),
    "/status-403": status("403 Forbidden"),
    "/status-410": status("410 Gone"),
    "/status-304": status("304 Not Modified"),
    "/status-300": status("300 Multiple Choices", {"Location": "/ok"}),
    "/status-999": status("999 Whatever"),
    "/status-101": status("101 Switching Protocols"),
    "/redirect-nolocation": status("302 Found"),
    "/no-content": no_content,
    "/two-lengths": two_lengths,
    "/negative-length": negative_length,
    "/bad-chunks": bad_chunks,
    "/echo": echo_path,
    "/early-hints": interim("103 Early Hints"),
    "/interim-mix": interim("100 Continue", "102 Processing", "103 Early Hints", "103 Early Hints"),
    "/interim-404": interim("103 Early Hints", then="404 Not Found"),
    "/interim-flood": interim_flood,
}


class SlowRelay:
    """A TCP relay to ``port`` that passes the client's bytes at once and the server's bytes one
    at a time every ``every_s`` seconds (a TLS handshake dripped byte by byte)."""

    def __init__(self, port: int, every_s: float = 0.1):
        self.port_to = port
        self.every_s = every_s
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def close(self) -> None:
        self.stopping.set()
        for t in self._threads:
            t.join(2)
        self.sock.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.port_to))
            for src, dst, slow in ((client, upstream, False), (upstream, client, True)):
                t = threading.Thread(target=self._pipe, args=(src, dst, slow), daemon=True)
                self._threads.append(t)
                t.start()

    def _pipe(self, src, dst, slow: bool) -> None:
        src.settimeout(0.1)
        try:
            while not self.stopping.is_set():
                try:
                    data = src.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                for i in range(0, len(data), 1 if slow else len(data)):
                    if self.stopping.is_set():
                        return
                    dst.sendall(data[i:i + 1] if slow else data)
                    if slow:
                        time.sleep(self.every_s)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
