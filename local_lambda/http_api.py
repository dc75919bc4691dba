"""A local stand-in for API Gateway: HTTP on 127.0.0.1 in, REST proxy events to the emulated function out.

Only the adapter is ours; the function itself runs under AWS's Runtime Interface Emulator, exactly as
built by `sam build`. The emulator runs one invocation at a time, as one Lambda execution environment.
"""

from __future__ import annotations

import base64
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from local_lambda.emulator import Emulator, EmulatorError
from local_lambda.events import proxy_event

BAD_GATEWAY = {"message": "Internal server error"}  # what API Gateway says when the integration fails


def make_server(emulator: Emulator, host: str = "127.0.0.1", port: int = 3000) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "lambda-forest-local"

        def _proxy(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            event = proxy_event(self.command, self.path, dict(self.headers.items()), body)
            try:
                with lock:
                    result = emulator.invoke(event)
            except EmulatorError as error:
                self.log_error("%s", error)
                return self._send(HTTPStatus.BAD_GATEWAY, {}, json.dumps(BAD_GATEWAY).encode())
            if "statusCode" not in result:  # the function raised: the runtime returns an error payload
                self.log_error("function error: %s", result.get("errorType"))
                return self._send(HTTPStatus.BAD_GATEWAY, {}, json.dumps(BAD_GATEWAY).encode())
            headers = dict(result.get("headers") or {})
            for key, values in (result.get("multiValueHeaders") or {}).items():
                headers[key] = ", ".join(values)
            raw = result.get("body") or ""
            payload = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
            self._send(result["statusCode"], headers, payload)

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            headers.setdefault("Content-Type", "application/json")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _proxy

    return ThreadingHTTPServer((host, port), Handler)
