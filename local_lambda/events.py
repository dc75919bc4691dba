"""API Gateway REST proxy events and a Lambda context for running the function off AWS.

Used by the local HTTP API, the benchmarks and the tests, so every local caller builds the same event
shape that API Gateway sends.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

STAGE = "local"


def proxy_event(method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The API Gateway REST proxy event for one HTTP request."""
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    try:
        text, encoded = (body.decode("utf-8"), False) if body else (None, False)
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "resource": url.path,
        "path": url.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "queryStringParameters": {key: values[-1] for key, values in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": url.path,
            "httpMethod": method,
            "path": f"/{STAGE}{url.path}",
            "stage": STAGE,
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": headers.get("User-Agent", "")},
            "accountId": "000000000000",
            "apiId": "local",
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def json_event(method: str, path: str, body: Any) -> dict[str, Any]:
    """A proxy event whose body is `body` as JSON."""
    return proxy_event(method, path, {"Content-Type": "application/json"}, json.dumps(body).encode())


@dataclass
class LocalContext:
    """The attributes of a Lambda context object that the function and Powertools read."""

    function_name: str = "lambda-forest-predict"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:lambda-forest-predict"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"
    log_group_name: str = "/aws/lambda/lambda-forest-predict"
    log_stream_name: str = "2026/11/30/[$LATEST]0"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000
