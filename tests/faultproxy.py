"""A fault-injecting HTTP proxy for tests: 127.0.0.1, in front of moto's server (or any HTTP server).

Every request is forwarded to ``upstream``; on a seeded random share (``rate``) of the *ranged GETs*
(requests with a ``Range`` header, the reads of :class:`~vidsnap.aws.s3io.S3RangeReader` and of the
Object Lambda reader) the answer is replaced by one of these faults:

- ``slowdown``: 503 with S3's ``SlowDown`` XML error body;
- ``error500``: 500 with S3's ``InternalError`` XML error body;
- ``reset``: the connection is closed (RST) without any answer;
- ``reset_mid_body``: status, headers and half the body, then the connection is reset;
- ``short``: an honest 206 with fewer bytes than the range asked for (a shorter ``Content-Range``,
  a matching ``Content-Length``), the S3 checksum header passed through when S3 sent one;
- ``truncated``: ``Content-Length`` promises the whole body, half of it is sent, then the
  connection is closed;
- ``slow``: the right answer after a small delay.

Which request is hit and by what depends only on the seed and the request (method, path without
the query, range, and how many times that same request was seen), not on thread timing, so a run
injects the same faults every time (given the same bucket and key names). ``injected`` counts the
faults by kind, ``ranged_gets`` the ranged GETs seen, ``methods`` all requests by method.
Other requests (HEAD, PUT, DELETE, DynamoDB...) pass through untouched.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import http.client
import random
import socket
import struct
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

KINDS = ("slowdown", "error500", "reset", "reset_mid_body", "short", "truncated", "slow")

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "server",
    "date",
}

_S3_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>FAULTPROXY</RequestId><HostId>faultproxy</HostId></Error>"
)


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 that injects faults into ranged GETs (see the module doc).

    Use as a context manager, or :meth:`start` / :meth:`stop`. ``url`` is its base URL.
    """

    def __init__(
        self,
        upstream: str,
        *,
        rate: float,
        seed: int = 0,
        kinds: Sequence[str] = KINDS,
        slow_s: float = 0.05,
    ) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname is not None
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.rate = rate
        self.seed = seed
        self.kinds = tuple(kinds)
        self.slow_s = slow_s
        self.injected: collections.Counter[str] = collections.Counter()
        self.ranged_gets = 0
        #: Requests seen, by method (every request, faulted or not).
        self.methods: collections.Counter[str] = collections.Counter()
        self._seen: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        """Start serving (a daemon thread)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def choose(self, method: str, path: str, range_header: str | None) -> str | None:
        """The fault for this request, or None: deterministic in (seed, request, times seen)."""
        with self._lock:
            self.methods[method] += 1
        if method != "GET" or not range_header:
            return None
        path = urlsplit(path).path  # not the query: a presigned URL's signature and date change
        with self._lock:
            self.ranged_gets += 1
            key = (method, path, range_header)
            self._seen[key] += 1
            nth = self._seen[key]
        digest = hashlib.sha256(f"{self.seed}|{method}|{path}|{range_header}|{nth}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        if rng.random() >= self.rate:
            return None
        kind = rng.choice(self.kinds)
        with self._lock:
            self.injected[kind] += 1
        return kind


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: resets and broken pipes are what this server is for."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like S3: a reset hits a pooled connection
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._proxy()

    def do_HEAD(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    # -------------------------------------------------------------------------------------------

    def _request_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _proxy(self) -> None:
        proxy = self.server.proxy
        body = self._request_body()
        fault = proxy.choose(self.command, self.path, self.headers.get("Range"))
        if fault == "reset":
            self._reset()
            return
        if fault == "slow":
            time.sleep(proxy.slow_s)
        if fault in ("slowdown", "error500"):
            code, status, message = (
                ("SlowDown", 503, "Please reduce your request rate.")
                if fault == "slowdown"
                else ("InternalError", 500, "We encountered an internal error. Please try again.")
            )
            xml = _S3_ERROR.format(code=code, message=message).encode()
            self._answer(status, {"Content-Type": "application/xml"}, xml)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=30)
        try:
            send = body if body or self.command in ("PUT", "POST") else None
            conn.request(self.command, self.path, body=send, headers=headers)
            upstream = conn.getresponse()
            data = upstream.read()
            status = upstream.status
            out = [(k, v) for k, v in upstream.getheaders() if k.lower() not in _HOP_BY_HOP]
        finally:
            conn.close()
        if self.command == "HEAD":
            length = next((v for k, v in upstream.getheaders() if k.lower() == "content-length"), "0")
            self._answer(status, dict(out), b"", content_length=int(length))
            return
        if fault == "short" and status == 206 and len(data) > 1:
            self._short(out, data)
            return
        if fault in ("truncated", "reset_mid_body") and len(data) > 1:
            self._cut(status, out, data, reset=fault == "reset_mid_body")
            return
        self._answer(status, dict(out), data)

    def _answer(
        self, status: int, headers: dict[str, str], data: bytes, *, content_length: int | None = None
    ) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data) if content_length is None else content_length))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _short(self, headers: list[tuple[str, str]], data: bytes) -> None:
        """An honest 206 with fewer bytes than asked: shorter Content-Range, matching Content-Length."""
        keep = len(data) // 2
        out = dict(headers)
        for name in list(out):
            if name.lower() == "content-range":
                unit_range, total = out.pop(name).split("/")
                first = int(unit_range.split()[1].split("-")[0])
                out["Content-Range"] = f"bytes {first}-{first + keep - 1}/{total}"
        self._answer(206, out, data[:keep])

    def _cut(self, status: int, headers: list[tuple[str, str]], data: bytes, *, reset: bool) -> None:
        """Promise all of ``data`` in Content-Length, send half, then close (or reset)."""
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        if reset:
            self._reset()
        else:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _reset(self) -> None:
        """Close the connection with an RST (SO_LINGER 0), answering nothing more."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
