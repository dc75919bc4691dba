"""The local front doors turn HTTP requests into the events the function expects (REST proxy, HTTP API and
function URL payload 2.0) and play the native CORS of the HTTP API and the function URL."""

from __future__ import annotations

import base64
from typing import Any

from lambda_forest.front_doors import FUNCTION_URL, HTTP_API, front_door
from local_lambda.events import function_url_event, http_api_event, proxy_event
from local_lambda.http_api import NativeCors


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


def test_http_api_events_follow_payload_format_2() -> None:
    headers = {"Content-Type": "application/json", "Cookie": "a=1; b=2", "X-Trace": "t"}
    event = http_api_event("POST", "/predict?explain=1&explain=2", headers, b'{"a": 1}')
    assert (event["version"], event["rawPath"], event["rawQueryString"]) == ("2.0", "/predict", "explain=1&explain=2")
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["headers"] == {"content-type": "application/json", "x-trace": "t"}  # lower-cased, cookies apart
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["queryStringParameters"] == {"explain": "1,2"}
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    assert front_door(event) == HTTP_API


def test_function_url_events_base64_encode_only_binary_bodies() -> None:
    text = function_url_event("POST", "/predict", {"Content-Type": "text/csv"}, b"1,2,3,4\n")
    assert (text["body"], text["isBase64Encoded"]) == ("1,2,3,4\n", False)
    binary = function_url_event("POST", "/predict", {"Content-Type": "application/octet-stream"}, b"1,2")
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"1,2"
    assert ".lambda-url." in text["requestContext"]["domainName"] and front_door(text) == FUNCTION_URL
    assert "body" not in function_url_event("GET", "/health", {}, b"")


def test_native_cors_answers_only_allowed_origins() -> None:
    cors = NativeCors(("https://app.example.com",))
    assert cors.preflight("https://app.example.com")["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert cors.preflight("https://evil.example") == {}
    function_headers = {"Content-Type": "application/json", "Access-Control-Allow-Origin": "https://evil.example"}
    answered = cors.response("https://app.example.com", function_headers)
    assert answered["Access-Control-Allow-Origin"] == "https://app.example.com"  # the gateway's, not the function's
    assert "Access-Control-Allow-Origin" not in cors.response(None, function_headers)
    assert NativeCors(("*",)).allowed("https://any.example") == "*"
    assert NativeCors(()).allowed("https://app.example.com") is None


def test_the_record_shipper_does_what_the_subscription_filters_and_firehose_do(tmp_path: Any) -> None:
    from lambda_forest.store import CAPTURES, LABELS, LocalStore
    from local_lambda.shipper import RecordShipper

    store = LocalStore(tmp_path / "store")
    log = tmp_path / "emulator.log"
    prediction = b'{"kind":"prediction","request_id":"r","rows":[[1.0]]}'
    label = b'{"kind":"label","row_id":"r:0","label":"a","time":"2026-12-01T10:00:00.000Z"}'
    log.write_bytes(b"START RequestId: 1\n" + prediction + b'\n{"level":"INFO","message":"x"}\n' + label[:20])
    shipper = RecordShipper(log, store, "iris")
    assert shipper.ship() == 1  # the half-written label line waits
    with log.open("ab") as handle:
        handle.write(label[20:] + b"\nEND RequestId: 1\n")
    assert shipper.ship() == 1 and shipper.ship() == 0
    [capture_file] = store.list_records("iris", CAPTURES)
    [label_file] = store.list_records("iris", LABELS)
    assert store.read_records(capture_file) == prediction + b"\n"
    assert store.read_records(label_file) == label + b"\n"


def test_the_record_shipper_retries_what_the_store_refused(tmp_path: Any, capsys: Any) -> None:
    from lambda_forest.errors import StoreAccessDenied
    from lambda_forest.store import CAPTURES, LocalStore
    from local_lambda.shipper import RecordShipper

    store = LocalStore(tmp_path / "store")
    log = tmp_path / "emulator.log"
    log.write_bytes(b'{"kind":"prediction","rows":[]}\n')
    shipper = RecordShipper(log, store, "iris")
    real_write = store.write_records

    def refuse(*_: Any, **__: Any) -> str:
        raise StoreAccessDenied("The model store cannot be written.")

    store.write_records = refuse  # type: ignore[method-assign]
    assert shipper.ship_or_warn() == 0
    assert "captured lines not recorded yet" in capsys.readouterr().err
    store.write_records = real_write  # type: ignore[method-assign]
    assert shipper.ship_or_warn() == 1 and len(store.list_records("iris", CAPTURES)) == 1


def test_the_serve_banners_curl_examples_work_on_the_model_it_serves(
    handler: Any, local_store: Any, trained_loans: Any, trained_amounts: Any
) -> None:
    from local_lambda.__main__ import IRIS_EXAMPLE, example_requests
    from tests.conftest import api_event, publish_model

    assert example_requests(local_store, "nothing-yet") == IRIS_EXAMPLE  # before `make model` has trained iris
    for name, trained in (("loans", trained_loans), ("amounts", trained_amounts)):
        publish_model(local_store, trained, name=name)
        predict, feedback = example_requests(local_store, name)
        invoke = handler(local_store, name=name)
        reply = invoke(api_event("POST", "/predict", predict))
        assert reply.status == 200 and "warnings" not in reply.body, reply.body
        assert None in predict["instances"][1].values()  # shows a missing value, which the model allows
        assert invoke(api_event("POST", "/feedback", feedback)).body["accepted"] == 2
