"""The local API Gateway stand-in turns HTTP requests into the REST proxy events the function expects."""

from __future__ import annotations

import base64

from local_lambda.events import proxy_event


def test_json_request_becomes_a_rest_proxy_event() -> None:
    event = proxy_event("POST", "/predict?explain=1&explain=2", {"Content-Type": "application/json"}, b'{"a": 1}')
    assert (event["httpMethod"], event["path"], event["resource"]) == ("POST", "/predict", "/predict")
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {"explain": "2"}
    assert event["multiValueQueryStringParameters"] == {"explain": ["1", "2"]}
    assert event["multiValueHeaders"] == {"Content-Type": ["application/json"]}
    assert event["requestContext"]["requestId"] and event["requestContext"]["stage"] == "local"


def test_binary_bodies_are_base64_encoded_and_empty_ones_are_null() -> None:
    event = proxy_event("POST", "/predict", {}, b"\xff\x00")
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\x00"
    assert proxy_event("GET", "/health", {}, b"")["body"] is None
