"""The events each front door sends the function, and a Lambda context, for running it off AWS.

API Gateway REST API (payload 1.0), HTTP API (payload 2.0) and Lambda function URL (2.0, on a
`*.lambda-url.*` domain). Used by the local HTTP API, the benchmarks and the tests, so every local caller
builds the shapes AWS sends.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lambda_forest.front_doors import FUNCTION_URL, HTTP_API, REST_API
from local_lambda.context import LocalContext

__all__ = ["LocalContext", "front_door_event", "function_url_event", "http_api_event", "json_event", "proxy_event"]

STAGE = "local"
ACCOUNT = "000000000000"
# Content types a function URL passes as text; any other body reaches the function base64-encoded.
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript", "application/yaml")


def proxy_event(method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The API Gateway REST proxy event for one HTTP request."""
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    text, encoded = _body(body, binary=False)
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
            "accountId": ACCOUNT,
            "apiId": "local",
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def http_api_event(method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The API Gateway HTTP API event (payload format 2.0, `$default` route and stage) for one HTTP request."""
    return _v2_event(method, target, headers, body, domain="local.execute-api.us-east-1.amazonaws.com")


def function_url_event(method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The Lambda function URL event (payload format 2.0, AuthType NONE) for one HTTP request."""
    content_type = next((value for key, value in headers.items() if key.lower() == "content-type"), "")
    binary = bool(body) and not content_type.lower().startswith(TEXT_TYPES)
    event = _v2_event(method, target, headers, body, domain="local.lambda-url.us-east-1.on.aws", binary=binary)
    event.update(pathParameters=None, stageVariables=None)
    return event


EVENT_BUILDERS = {REST_API: proxy_event, HTTP_API: http_api_event, FUNCTION_URL: function_url_event}


def front_door_event(door: str, method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The event `door` (rest, http or url) sends for one HTTP request."""
    return EVENT_BUILDERS[door](method, target, headers, body)


def json_event(method: str, path: str, body: Any, door: str = REST_API) -> dict[str, Any]:
    """An event from `door` whose body is `body` as JSON."""
    return front_door_event(door, method, path, {"Content-Type": "application/json"}, json.dumps(body).encode())


def _v2_event(
    method: str, target: str, headers: dict[str, str], body: bytes, *, domain: str, binary: bool = False
) -> dict[str, Any]:
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    # Payload 2.0 lower-cases header names, joins repeated values with commas and moves cookies apart.
    lowered = {key.lower(): value for key, value in headers.items() if key.lower() != "cookie"}
    cookies = [part.strip() for key, value in headers.items() if key.lower() == "cookie" for part in value.split(";")]
    text, encoded = _body(body, binary=binary)
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": lowered,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": domain.split(".", 1)[0],
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": method,
                "path": url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": formatdate(now, usegmt=True),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = {key: ",".join(values) for key, values in query.items()}
    if text is not None:
        event["body"] = text
    return event


def _body(body: bytes, *, binary: bool) -> tuple[str | None, bool]:
    """The event's body and isBase64Encoded: text as is, anything else (or any `binary` body) base64."""
    if not body:
        return None, False
    if not binary:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode(), True
