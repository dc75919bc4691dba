"""One build behind every front door: REST API, HTTP API (payload 2.0) and function URL events through the
handler give the same answers, errors, request ids and CORS."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from lambda_forest.config import FunctionConfig
from lambda_forest.errors import ConfigError
from lambda_forest.front_doors import FRONT_DOORS, FUNCTION_URL, HTTP_API, REST_API, front_door
from local_lambda.events import front_door_event, json_event
from tests.conftest import EVENTS, load_event

SAMPLE_PREFIXES = {"rest-api": REST_API, "http-api": HTTP_API, "function-url": FUNCTION_URL}
ORIGIN = "https://app.example.com"
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture
def iris_api(handler: Any, local_store: Any, published_iris: Any) -> Any:
    return handler(local_store)


@pytest.fixture
def cors_api(handler: Any, local_store: Any, published_iris: Any) -> Any:
    return handler(local_store, cors_allow_origins=(ORIGIN, "http://localhost:5173"))


def request(door: str, method: str, path: str, body: bytes = b"", **headers: str) -> dict[str, Any]:
    return front_door_event(door, method, path, {key.replace("_", "-"): value for key, value in headers.items()}, body)


@pytest.mark.parametrize(
    "sample", sorted(path.name for path in EVENTS.glob("*.json") if path.name.startswith(tuple(SAMPLE_PREFIXES)))
)
def test_each_samples_shape_names_its_front_door(sample: str) -> None:
    prefix = next(prefix for prefix in SAMPLE_PREFIXES if sample.startswith(prefix))
    assert front_door(load_event(sample)) == SAMPLE_PREFIXES[prefix]


def test_the_older_rest_events_are_rest_events() -> None:
    assert front_door(load_event("predict.json")) == REST_API


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_local_events_name_their_front_door(door: str) -> None:
    assert front_door(json_event("POST", "/predict", {}, door=door)) == door


def test_every_front_door_gives_the_same_predictions(iris_api: Any, trained_iris: Any) -> None:
    samples = {door: iris_api(load_event(f"{prefix}-predict.json")) for prefix, door in SAMPLE_PREFIXES.items()}
    assert {reply.status for reply in samples.values()} == {200}
    request_ids = {door: reply.body.pop("request_id") for door, reply in samples.items()}
    assert all(request_ids.values())  # each front door's own request id
    assert samples[REST_API].body == samples[HTTP_API].body == samples[FUNCTION_URL].body
    assert samples[REST_API].body["predictions"] == trained_iris.estimator.predict(IRIS_ROWS).tolist()
    rows = trained_iris.holdout_X.tolist()
    bodies = [iris_api(json_event("POST", "/predict", {"instances": rows}, door=door)).body for door in FRONT_DOORS]
    for body in bodies:
        body.pop("request_id")
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["predictions"] == trained_iris.estimator.predict(trained_iris.holdout_X).tolist()


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_errors_carry_the_front_doors_request_id(iris_api: Any, door: str) -> None:
    event = request(door, "POST", "/predict", b"{not json", Content_Type="application/json")
    reply = iris_api(event)
    assert (reply.status, reply.body["error"]["code"]) == (400, "invalid_json")
    assert reply.body["request_id"] == event["requestContext"]["requestId"]
    assert reply.headers["content-type"] == "application/json"


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_unknown_routes_and_methods_on_every_front_door(iris_api: Any, door: str) -> None:
    reply = iris_api(request(door, "GET", "/nowhere"))
    assert (reply.status, reply.body["error"]["code"]) == (404, "not_found")
    assert "POST /predict" in reply.body["error"]["message"]
    reply = iris_api(request(door, "DELETE", "/predict"))
    assert (reply.status, reply.headers["allow"]) == (405, "POST")


def test_http_api_stage_is_not_part_of_the_route(iris_api: Any) -> None:
    event = load_event("http-api-health.json")
    assert event["rawPath"] == "/v1/health" and event["requestContext"]["stage"] == "v1"
    assert iris_api(event).body["status"] == "ok"


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_logs_carry_the_front_doors_request_id_as_correlation_id(
    iris_api: Any, door: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app

    stream = io.StringIO()
    log_handler = logging.StreamHandler(stream)
    log_handler.setFormatter(app.logger.registered_formatter)
    app.logger.addHandler(log_handler)
    monkeypatch.setattr(app, "run_prediction", lambda *_: 1 / 0)
    event = json_event("POST", "/predict", {"instances": IRIS_ROWS}, door=door)
    try:
        assert iris_api(event).status == 500
    finally:
        app.logger.removeHandler(log_handler)
    logged = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert logged and {entry["correlation_id"] for entry in logged} == {event["requestContext"]["requestId"]}


@pytest.mark.parametrize("event", [{"Records": []}, {"version": "1.0"}, {}])
def test_events_from_no_front_door_are_refused(event: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="function URL"):
        front_door(event)


# CORS: allowed origins only (none by default); the REST API leaves it to the function.


def test_no_origin_is_allowed_by_default(iris_api: Any) -> None:
    preflight = load_event("rest-api-preflight.json")
    reply = iris_api(preflight)
    assert reply.status == 405 and not any(key.startswith("access-control-") for key in reply.headers)
    reply = iris_api(request(REST_API, "GET", "/health", Origin=ORIGIN))
    assert reply.status == 200 and "access-control-allow-origin" not in reply.headers


def test_preflight_from_an_allowed_origin(cors_api: Any) -> None:
    reply = cors_api(load_event("rest-api-preflight.json"))
    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert {"POST", "GET"} <= set(reply.headers["access-control-allow-methods"].split(","))
    assert "Content-Type" in reply.headers["access-control-allow-headers"]
    assert int(reply.headers["access-control-max-age"]) > 0


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (json_event("POST", "/predict", {"instances": IRIS_ROWS}), 200),
        (json_event("POST", "/predict", {"instances": [[1]]}), 400),
        (json_event("GET", "/nowhere", None), 404),
    ],
)
def test_answers_to_an_allowed_origin_carry_cors_headers(cors_api: Any, event: dict[str, Any], status: int) -> None:
    event["headers"]["Origin"], event["multiValueHeaders"]["Origin"] = ORIGIN, [ORIGIN]
    reply = cors_api(event)
    assert reply.status == status
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert "Retry-After" in reply.headers["access-control-expose-headers"]


def test_other_origins_get_no_cors_headers(cors_api: Any) -> None:
    reply = cors_api(request(REST_API, "GET", "/health", Origin="https://evil.example"))
    assert reply.status == 200 and "access-control-allow-origin" not in reply.headers
    preflight = request(
        REST_API, "OPTIONS", "/predict", Origin="https://evil.example", Access_Control_Request_Method="POST"
    )
    assert "access-control-allow-origin" not in cors_api(preflight).headers


def test_rest_answers_vary_by_origin_when_cors_is_on(cors_api: Any) -> None:
    """The function picks Access-Control-Allow-Origin from the caller's Origin, so every answer says
    `Vary: Origin`: a cache must not hand one origin's answer (or a no-origin one) to another."""
    preflight = request(REST_API, "OPTIONS", "/predict", Origin=ORIGIN, Access_Control_Request_Method="POST")
    for event in (
        preflight,
        request(REST_API, "GET", "/health", Origin=ORIGIN),
        request(REST_API, "GET", "/health", Origin="https://evil.example"),
        request(REST_API, "GET", "/health"),
        request(REST_API, "GET", "/nowhere", Origin=ORIGIN),
    ):
        reply = cors_api(event)
        assert reply.headers.get("vary") == "Origin", (event["httpMethod"], event["path"], reply.headers)
    assert cors_api(preflight).status == 204


def test_without_cors_answers_do_not_vary(iris_api: Any) -> None:
    assert "vary" not in iris_api(request(REST_API, "GET", "/health", Origin=ORIGIN)).headers


@pytest.mark.parametrize(
    ("setting", "origins"),
    [
        ("", ()),
        ("https://app.example.com", ("https://app.example.com",)),
        (" https://a.example , http://localhost:5173 ", ("https://a.example", "http://localhost:5173")),
        ("*", ("*",)),
    ],
)
def test_cors_origins_setting(setting: str, origins: tuple[str, ...]) -> None:
    config = FunctionConfig.from_env({"MODEL_STORE": "/s", "MODEL_NAME": "iris", "CORS_ALLOW_ORIGINS": setting})
    assert config.cors_allow_origins == origins


@pytest.mark.parametrize(
    "setting", ["https://app.example.com/", "app.example.com", "https://a.example/path", "https://*.example"]
)
def test_malformed_cors_origins_fail_loudly(setting: str) -> None:
    with pytest.raises(ConfigError, match="CORS_ALLOW_ORIGINS"):
        FunctionConfig.from_env({"MODEL_STORE": "/s", "MODEL_NAME": "iris", "CORS_ALLOW_ORIGINS": setting})
