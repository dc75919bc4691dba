"""A local stand-in for the front door: HTTP on 127.0.0.1 in, the front door's events to the emulated function out.

The front door is an API Gateway REST API (payload 1.0), an HTTP API (payload 2.0) or a Lambda function
URL (2.0), as template.yaml's `ApiType` chooses. Only the adapter is ours; the function itself runs under
AWS's Runtime Interface Emulator, exactly as built by `sam build`. The emulator runs one invocation at a
time, as one Lambda execution environment.

CORS is where the template puts it: the REST API passes preflights to the function (which reads
CORS_ALLOW_ORIGINS), while the HTTP API and the function URL answer them natively and add the CORS
headers to every response themselves; `NativeCors` plays that part here.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lambda_forest.front_doors import REST_API
from local_lambda.emulator import Emulator, EmulatorError
from local_lambda.events import front_door_event

BAD_GATEWAY = {"message": "Internal server error"}  # what API Gateway says when the integration fails
# What template.yaml configures on the HTTP API and the function URL.
CORS_ALLOW_METHODS = "GET,POST"
CORS_ALLOW_HEADERS = "authorization,content-type,x-amz-content-sha256,x-amz-date,x-amz-security-token,x-api-key"
CORS_EXPOSE_HEADERS = "allow,retry-after"
CORS_MAX_AGE_SECONDS = 600


@dataclass(frozen=True)
class NativeCors:
    """The CORS that an HTTP API or a function URL adds in front of the function."""

    origins: tuple[str, ...]

    def allowed(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for `origin`, or None when it is not allowed."""
        if not origin or not self.origins:
            return None
        if "*" in self.origins:
            return "*"
        return origin if origin in self.origins else None

    def preflight(self, origin: str | None) -> dict[str, str]:
        allowed = self.allowed(origin)
        if allowed is None:
            return {}
        return {
            "Access-Control-Allow-Origin": allowed,
            "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": str(CORS_MAX_AGE_SECONDS),
        }

    def response(self, origin: str | None, headers: dict[str, str]) -> dict[str, str]:
        """The function's headers with the gateway's CORS headers in place of any the function set."""
        kept = {key: value for key, value in headers.items() if not key.lower().startswith("access-control-")}
        allowed = self.allowed(origin)
        if allowed is not None:
            kept.update({"Access-Control-Allow-Origin": allowed, "Access-Control-Expose-Headers": CORS_EXPOSE_HEADERS})
        return kept


def make_server(
    emulator: Emulator,
    host: str = "127.0.0.1",
    port: int = 3000,
    front_door: str = REST_API,
    cors_origins: tuple[str, ...] = (),
    after_invoke: Callable[[], object] | None = None,
) -> ThreadingHTTPServer:
    """Serve the emulated function behind `front_door`; `cors_origins` configures an HTTP API's or URL's CORS.

    `after_invoke` runs after each invocation (the local record shipper).
    """
    lock = threading.Lock()
    native_cors = None if front_door == REST_API else NativeCors(cors_origins)

    class Handler(BaseHTTPRequestHandler):
        server_version = "lambda-forest-local"

        def _proxy(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            origin = self.headers.get("Origin")
            is_preflight = self.command == "OPTIONS" and origin and self.headers.get("Access-Control-Request-Method")
            if native_cors is not None and native_cors.origins and is_preflight:
                return self._send(HTTPStatus.NO_CONTENT, native_cors.preflight(origin), b"")
            event = front_door_event(front_door, self.command, self.path, dict(self.headers.items()), body)
            try:
                with lock:
                    result = emulator.invoke(event)
                    if after_invoke:
                        after_invoke()
            except EmulatorError as error:
                self.log_error("%s", error)
                return self._send(HTTPStatus.BAD_GATEWAY, {}, json.dumps(BAD_GATEWAY).encode())
            if "statusCode" not in result:  # the function raised: the runtime returns an error payload
                self.log_error("function error: %s", result.get("errorType"))
                return self._send(HTTPStatus.BAD_GATEWAY, {}, json.dumps(BAD_GATEWAY).encode())
            headers = dict(result.get("headers") or {})
            for key, values in (result.get("multiValueHeaders") or {}).items():
                headers[key] = ", ".join(values)
            if native_cors is not None:
                headers = native_cors.response(origin, headers)
            raw = result.get("body") or ""
            payload = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
            self._send(result["statusCode"], headers, payload, cookies=result.get("cookies") or [])

        def _send(self, status: int, headers: dict[str, str], payload: bytes, cookies: Sequence[str] = ()) -> None:
            self.send_response(status)
            if payload:
                headers.setdefault("Content-Type", "application/json")
            for key, value in headers.items():
                self.send_header(key, value)
            for cookie in cookies:
                self.send_header("Set-Cookie", cookie)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def __getattr__(self, name: str) -> Any:
            """Every method (GET, POST, ... TRACE, QUERY) goes to the function, which answers 405 for the others."""
            if name.startswith("do_"):
                return self._proxy
            raise AttributeError(name)

    return ThreadingHTTPServer((host, port), Handler)
