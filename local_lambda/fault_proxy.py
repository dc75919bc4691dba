"""A fault-injecting HTTP proxy on 127.0.0.1 in front of moto's S3 server, for fault tests and benchmarks.

Requests pass through to the upstream server unless a fault is set for their path: then the proxy
answers as S3 does when it throttles (`503 SlowDown`) or fails (`500 InternalError`), or holds the
connection open without a byte of answer (`stall`) until the client gives up. `count` limits a fault to
its first N matching requests (then requests pass again); `requests` counts what the proxy saw.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

FaultKind = Literal["slowdown", "error", "stall"]

S3_ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "error": (500, "InternalError", "We encountered an internal error. Please try again."),
}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


def model_files(path: str) -> bool:
    """Requests for a version's files (manifest, signature, forest, model), not aliases or listings."""
    return "/versions/" in path


@dataclass
class Fault:
    kind: FaultKind
    matches: Callable[[str], bool] = model_files
    count: int | None = None  # None: every matching request


class FaultProxy:
    """Use as a context manager; `endpoint` goes where the S3 endpoint would (AWS_ENDPOINT_URL_S3)."""

    def __init__(self, upstream: str, port: int = 0, stall_limit_s: float = 60) -> None:
        target = urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.stall_limit_s = stall_limit_s
        self.requests: Counter[str] = Counter()  # "passed", "slowdown", "error", "stall"
        self._fault: Fault | None = None
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.clear()
        self._server.shutdown()
        self._server.server_close()

    def inject(self, kind: FaultKind, matches: Callable[[str], bool] = model_files, count: int | None = None) -> None:
        with self._lock:
            self._fault = Fault(kind, matches, count)
            self._released.clear()

    def clear(self) -> None:
        """No more faults; stalled connections are closed at once."""
        with self._lock:
            self._fault = None
            self._released.set()

    def _take_fault(self, path: str) -> FaultKind | None:
        with self._lock:
            fault = self._fault
            if fault is None or not fault.matches(path):
                return None
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._fault = None
            return fault.kind

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._take_fault(urlsplit(self.path).path)
                proxy.requests[fault or "passed"] += 1
                if fault == "stall":
                    proxy._released.wait(proxy.stall_limit_s)  # no answer at all: the client's read times out
                    self.close_connection = True
                    return
                if fault is not None:
                    status, code, message = S3_ERRORS[fault]
                    xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
                    return self._answer(status, [("Content-Type", "application/xml")], xml)
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {key: value for key, value in self.headers.items() if key.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    kept = [
                        (k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}
                    ]
                    self._answer(response.status, kept, payload)
                finally:
                    upstream.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _serve

        return Handler
