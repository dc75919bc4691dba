"""Bodies at API Gateway's and Lambda's payload limits, deeply nested JSON, huge numbers, huge answers:
each a 4xx that says what was wrong, or a 200 that is exactly the estimator's answer; never a 5xx."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from tests.conftest import api_event, publish_model

LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024  # a synchronous invocation's request (and response)
API_GATEWAY_PAYLOAD_LIMIT = 10 * 1024 * 1024
FUNCTION_TIMEOUT_SECONDS = 20
FLOAT32_MAX = float(np.finfo(np.float32).max)


@pytest.fixture
def iris(handler: Any, local_store: Any, trained_iris: Any) -> Any:
    publish_model(local_store, trained_iris)
    invoke = handler(local_store)

    def send(raw: str) -> Any:
        started = time.monotonic()
        reply = invoke(api_event("POST", "/predict", raw=raw))
        assert reply.status < 500, reply.body
        assert time.monotonic() - started < FUNCTION_TIMEOUT_SECONDS
        return reply

    return send


def padded(value: float, digits: int) -> str:
    """`value` written with `digits` extra zeros: the same float64, many more bytes."""
    text = repr(float(value))
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + "0" * digits + (f"e{exponent}" if exponent else "")


def rows_body(rows: np.ndarray, digits: int = 0) -> str:
    return '{"instances": [' + ",".join("[" + ",".join(padded(v, digits) for v in row) + "]" for row in rows) + "]}"


def assert_exact(reply: Any, trained: Any, rows: np.ndarray) -> None:
    assert reply.status == 200
    assert reply.body["predictions"] == trained.estimator.predict(rows).tolist()
    assert np.array_equal(np.array(reply.body["probabilities"]), trained.estimator.predict_proba(rows))


def test_ten_thousand_rows_just_under_lambdas_payload_limit_are_answered_exactly(iris: Any, trained_iris: Any) -> None:
    rows = np.resize(trained_iris.holdout_X, (10_000, 4))
    body = rows_body(rows, digits=145)
    assert LAMBDA_PAYLOAD_LIMIT * 0.9 < len(body) < LAMBDA_PAYLOAD_LIMIT
    assert_exact(iris(body), trained_iris, rows)


@pytest.mark.parametrize("limit", [LAMBDA_PAYLOAD_LIMIT, API_GATEWAY_PAYLOAD_LIMIT], ids=["lambda", "api-gateway"])
def test_a_body_of_too_many_rows_at_the_payload_limits_is_a_413(iris: Any, limit: int) -> None:
    row = "[5.1,3.5,1.4,0.2]"
    body = '{"instances": [' + ",".join([row] * (limit // (len(row) + 1) - 1)) + "]}"
    assert limit * 0.99 < len(body) <= limit
    reply = iris(body)
    assert (reply.status, reply.body["error"]["code"]) == (413, "too_many_instances")
    assert "at most 10000" in reply.body["error"]["message"]


@pytest.mark.parametrize("depth", [10, 1_000, 100_000])
def test_deeply_nested_json_is_a_400(iris: Any, depth: int) -> None:
    reply = iris('{"instances": [' + "[" * depth + "1" + "]" * depth + "]}")
    assert reply.status == 400
    assert reply.body["error"]["code"] in ("invalid_json", "invalid_instances")


def test_deeply_nested_objects_are_a_400(iris: Any) -> None:
    reply = iris('{"instances": [' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "]}")
    assert reply.status == 400


def test_ten_thousand_rows_of_huge_numbers_within_float32_are_answered_exactly(iris: Any, trained_iris: Any) -> None:
    rng = np.random.default_rng(0)
    magnitudes = np.array([FLOAT32_MAX, 3.0e38, 1e38, 1e30, 1e-38, 1e-45, 0.0])
    rows = rng.choice(magnitudes, size=(10_000, 4)) * rng.choice([-1.0, 1.0], size=(10_000, 4))
    assert_exact(iris(rows_body(rows)), trained_iris, rows)


@pytest.mark.parametrize("value", ["3.5e38", "-1e39", "1e300", "1.7976931348623157e308"])
def test_numbers_beyond_float32_are_a_400_as_scikit_learn_refuses_them(
    iris: Any, trained_iris: Any, value: str
) -> None:
    rows = ",".join(["[5.1,3.5,1.4,0.2]"] * 9_999 + [f"[5.1,3.5,{value},0.2]"])
    reply = iris('{"instances": [' + rows + "]}")
    assert (reply.status, reply.body["error"]["code"]) == (400, "invalid_instances")
    assert "instances[9999]['petal length (cm)']" in reply.body["error"]["message"]
    assert "float32" in reply.body["error"]["message"]
    with pytest.raises(ValueError, match="too large for dtype"):
        trained_iris.estimator.predict(np.array([[5.1, 3.5, float(value), 0.2]]))


@pytest.mark.parametrize("value", ["1e400", "-1e999", "1" + "0" * 400])
def test_numbers_beyond_float64_are_a_400(iris: Any, value: str) -> None:
    reply = iris('{"instances": [[5.1, 3.5, 1.4, ' + value + "]]}")
    assert (reply.status, reply.body["error"]["code"]) == (400, "invalid_json")


def test_integers_beyond_int64_are_numbers_like_any_other(iris: Any, trained_iris: Any) -> None:
    big = "123456789012345678901234567890"
    rows = np.array([[5.1, 3.5, float(big), 0.2]])
    assert_exact(iris('{"instances": [[5.1, 3.5, ' + big + ", 0.2]]}"), trained_iris, rows)


def test_an_answer_over_lambdas_response_limit_is_a_413_that_says_how_many_rows_fit(
    handler: Any, local_store: Any
) -> None:
    from training.data import Dataset
    from training.forest import ForestParams, train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000, 3))
    y = np.array([f"class-{i:03d}" for i in range(200)])[np.arange(2_000) % 200]
    data = Dataset(X, y, ["a", "b", "c"], "label", "classification", "synthetic", "0" * 64)
    trained = train(data, ForestParams(n_estimators=3, n_jobs=1), progress=lambda _: None)
    publish_model(local_store, trained, name="many")
    invoke = handler(local_store, name="many")
    rows = rng.normal(size=(10_000, 3)).tolist()

    reply = invoke(api_event("POST", "/predict", {"instances": rows}))
    assert (reply.status, reply.body["error"]["code"]) == (413, "response_too_large")
    message = reply.body["error"]["message"]
    assert "over Lambda's 6 MB response limit" in message and '"probabilities": false' in message
    fit = int(message.split("send at most ")[1].split()[0])
    assert 100 < fit < 10_000
    fits = invoke(api_event("POST", "/predict", {"instances": rows[:fit]}))
    assert fits.status == 200 and len(fits.body["probabilities"]) == fit

    labels_only = invoke(api_event("POST", "/predict", {"instances": rows, "probabilities": False}))
    assert labels_only.status == 200 and len(labels_only.body["predictions"]) == 10_000


# Every route that reads a JSON body: each protocol parses its own shape, all through the one JSON reader.
JSON_ROUTES = ["/predict", "/invocations", "/v1/models/iris:predict", "/v2/models/iris/infer", "/feedback"]
NESTED_BODIES = {
    "arrays": "[" * 100_000 + "]" * 100_000,
    "objects": '{"instances": [' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "]}",
}


@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("nesting", NESTED_BODIES)
def test_deeply_nested_json_is_a_4xx_on_every_protocol(
    handler: Any, local_store: Any, trained_iris: Any, route: str, nesting: str
) -> None:
    publish_model(local_store, trained_iris)
    reply = handler(local_store)(api_event("POST", route, raw=NESTED_BODIES[nesting]))
    assert 400 <= reply.status < 500, reply.body
    assert reply.body.get("error") or reply.body.get("message")  # says what was wrong, in the protocol's shape
