"""The HTTP API of shared/DESIGN.md section 3, through the Lambda handler with API Gateway events."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EVENTS, api_event, load_event, publish_model

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]

# What each committed event must produce against the iris model (also the README's examples).
EXPECTED = {
    "predict.json": (200, None),
    "predict-base64.json": (200, None),
    "predict-no-probabilities.json": (200, None),
    "predict-explain.json": (200, None),
    "predict-ids.json": (200, None),
    "feedback.json": (200, None),
    "bad-feedback-label.json": (400, "invalid_labels"),
    "model.json": (200, None),
    "health.json": (200, None),
    "bad-json.json": (400, "invalid_json"),
    "bad-no-instances.json": (400, "invalid_request"),
    "bad-empty-instances.json": (400, "invalid_request"),
    "bad-wrong-count.json": (400, "invalid_instances"),
    "bad-unknown-feature.json": (400, "invalid_instances"),
    "bad-not-a-number.json": (400, "invalid_instances"),
    "not-found.json": (404, "not_found"),
    "method-not-allowed.json": (405, "method_not_allowed"),
    # Other protocols: MLflow and CSV bodies, KServe V1, the Open Inference Protocol (V2).
    "predict-mlflow-split.json": (200, None),
    "predict-csv.json": (200, None),
    "invocations.json": (200, None),
    "kserve-v1-predict.json": (200, None),
    "open-inference-infer.json": (200, None),
    "open-inference-bad-shape.json": (400, None),
    # Every front door, made with `sam local generate-event` (python -m local_lambda.sample_events).
    "rest-api-predict.json": (200, None),
    "rest-api-health.json": (200, None),
    "rest-api-preflight.json": (405, "method_not_allowed"),  # CORS allows no origin by default
    "http-api-predict.json": (200, None),
    "http-api-health.json": (200, None),
    "function-url-predict.json": (200, None),
    "function-url-health.json": (200, None),
}


@pytest.fixture
def iris_api(handler: Any, local_store: Any, published_iris: Any) -> Any:
    return handler(local_store)


def test_every_event_file_is_covered() -> None:
    assert sorted(path.name for path in EVENTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("event_file", sorted(EXPECTED))
def test_event_files_give_documented_responses(iris_api: Any, event_file: str) -> None:
    status, code = EXPECTED[event_file]
    reply = iris_api(load_event(event_file))
    assert reply.status == status
    assert reply.headers["content-type"] == "application/json"
    if code:
        assert reply.body["error"]["code"] == code
        assert reply.body["error"]["message"]
        assert reply.body["request_id"] == load_event(event_file)["requestContext"]["requestId"]


def test_predict_returns_labels_and_probabilities_in_order(iris_api: Any, published_iris: Any) -> None:
    reply = iris_api(load_event("predict.json"))
    assert reply.body["model"] == {"name": "iris", "version": published_iris.version}
    assert reply.body["predictions"] == ["setosa", "virginica"]
    assert reply.body["classes"] == ["setosa", "versicolor", "virginica"]
    assert len(reply.body["probabilities"]) == 2
    for row in reply.body["probabilities"]:
        assert sum(row) == pytest.approx(1.0)


def test_base64_body_gives_the_same_answer(iris_api: Any) -> None:
    assert iris_api(load_event("predict-base64.json")).body == iris_api(load_event("predict.json")).body


def test_probabilities_false_leaves_them_out(iris_api: Any) -> None:
    body = iris_api(load_event("predict-no-probabilities.json")).body
    assert "probabilities" not in body
    assert body["predictions"] == ["virginica"]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "joblib"])
@pytest.mark.parametrize("model", ["iris", "diabetes"])
def test_predictions_equal_the_estimators_own(
    handler: Any, local_store: Any, trained_iris: Any, trained_diabetes: Any, model: str, compiled: bool
) -> None:
    trained = trained_iris if model == "iris" else trained_diabetes
    publish_model(local_store, trained, name=model, compile=compiled)
    rows = trained.holdout_X
    invoke = handler(local_store, name=model, allow_pickle=not compiled)
    body = invoke(api_event("POST", "/predict", {"instances": rows.tolist()})).body
    assert body["predictions"] == trained.estimator.predict(rows).tolist()
    if model == "iris":
        assert np.array_equal(np.array(body["probabilities"]), trained.estimator.predict_proba(rows))
    else:
        assert "classes" not in body and "probabilities" not in body


def test_model_route_shows_public_manifest_fields(iris_api: Any, published_iris: Any) -> None:
    body = iris_api(load_event("model.json")).body
    # shared/DESIGN.md section 3: the manifest's public fields, and nothing else (no hashes, no data stats).
    expected = {
        "name",
        "version",
        "task",
        "estimator",
        "feature_names",
        "features",
        "classes",
        "metrics",
        "importances",
        "created_at",
        "runtime",
    }
    assert set(body) == expected | {"explanations"}
    assert body["explanations"] == {"methods": ["path", "shap"], "default": "path"}
    assert body["version"] == published_iris.version
    assert body["feature_names"] == published_iris.feature_names
    assert body["features"][0] == {
        "name": "sepal length (cm)",
        "type": "numeric",
        "missing_allowed": True,
        "missing_rate": 0.0,
    }
    assert set(body["importances"]) == set(published_iris.feature_names)


def test_health_does_not_load_the_model(iris_api: Any, published_iris: Any) -> None:
    assert iris_api(load_event("health.json")).body == {"status": "ok", "model": None}
    iris_api(load_event("predict.json"))
    assert iris_api(load_event("health.json")).body["model"] == {"name": "iris", "version": published_iris.version}


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ("[1, 2]", 400, "invalid_request", "expected an object"),
        ('{"instances": [[1,2,3,4]], "extra": 1}', 400, "invalid_request", "'extra'"),
        ('{"instances": [[1,2,3,4]], "' + "k" * 5000 + '": 1}', 400, "invalid_request", "'" + "k" * 40 + "...'"),
        ('{"instances": "rows"}', 400, "invalid_request", "non-empty list"),
        ('{"instances": [[1,2,3,4]], "probabilities": "yes"}', 400, "invalid_request", "true or false"),
        ('{"instances": [[1, 2, NaN, 4]]}', 400, "invalid_json", "not valid JSON"),
        ('{"instances": [[1, 2, 1e400, 4]]}', 400, "invalid_json", "infinity"),
        ("[" * 2000 + "]" * 2000, 400, "invalid_json", "not valid JSON"),
        ('{"instances": [[1, 2, true, 4]]}', 400, "invalid_instances", "a JSON boolean"),
        ('{"instances": [[1, 2, 1e39, 4]]}', 400, "invalid_instances", "beyond float32's range"),
        ('{"instances": [[1, 2, -3.5e38, 4]]}', 400, "invalid_instances", "beyond float32's range"),
        (
            '{"instances": [[1, 2, "3", 4]]}',
            400,
            "invalid_instances",
            "instances[0]['petal length (cm)'] is the string '3'",
        ),
        (
            '{"instances": [[1, {"a": 1}, 3, 4]]}',
            400,
            "invalid_instances",
            "is a JSON object; expected a finite number",
        ),
        ('{"instances": [[1, 2, [3], 4]]}', 400, "invalid_instances", "is a JSON array"),
        ('{"instances": [[1,2,3,4], [1,2,3]]}', 400, "invalid_instances", "instances[1] has 3 values; expected 4"),
        ('{"instances": [{"sepal length (cm)": 1}]}', 400, "invalid_instances", "missing feature"),
        ('{"instances": [7]}', 400, "invalid_instances", "instances[0] is a JSON number"),
        ("", 400, "invalid_json", "empty"),
    ],
)
def test_bad_requests_say_what_was_wrong(iris_api: Any, body: str, status: int, code: str, words: str) -> None:
    reply = iris_api(api_event("POST", "/predict", raw=body))
    assert (reply.status, reply.body["error"]["code"]) == (status, code)
    assert words in reply.body["error"]["message"]


def test_too_many_rows_is_413(handler: Any, local_store: Any, published_iris: Any) -> None:
    invoke = handler(local_store, max_batch_rows=3)
    reply = invoke(api_event("POST", "/predict", {"instances": [IRIS_ROW] * 4}))
    assert (reply.status, reply.body["error"]["code"]) == (413, "too_many_instances")
    assert "at most 3" in reply.body["error"]["message"]
    assert invoke(api_event("POST", "/predict", {"instances": [IRIS_ROW] * 3})).status == 200


def test_method_not_allowed_names_the_allowed_method(iris_api: Any) -> None:
    reply = iris_api(load_event("method-not-allowed.json"))
    assert reply.headers["allow"] == "POST"


def test_no_model_published_is_503_with_retry_after(handler: Any, local_store: Any) -> None:
    reply = handler(local_store)(load_event("predict.json"))
    assert (reply.status, reply.body["error"]["code"]) == (503, "model_unavailable")
    assert int(reply.headers["retry-after"]) > 0
    assert str(local_store.root) not in json.dumps(reply.body)


def test_unexpected_errors_are_500_without_internals(
    iris_api: Any, monkeypatch: pytest.MonkeyPatch, local_store: Any
) -> None:
    import app

    def explode(*_: Any) -> Any:
        raise RuntimeError(f"secret detail {local_store.root}")

    monkeypatch.setattr(app, "run_prediction", explode)
    reply = iris_api(load_event("predict.json"))
    assert (reply.status, reply.body["error"]["code"]) == (500, "internal_error")
    assert "secret" not in json.dumps(reply.body) and "Traceback" not in json.dumps(reply.body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=20), children, max_size=6),
    max_leaves=30,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "instances": st.lists(
            st.lists(st.floats() | st.integers() | st.booleans() | st.none(), min_size=3, max_size=5)
            | st.dictionaries(
                st.sampled_from(
                    ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)", "other"]
                ),
                st.floats() | st.integers() | st.text(max_size=3),
            ),
            max_size=4,
        ),
        "probabilities": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values | request_like | st.text(max_size=40))
def test_arbitrary_bodies_never_cause_a_server_error(iris_api: Any, body: Any) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    reply = iris_api(api_event("POST", "/predict", raw=raw))
    assert reply.status in (200, 400, 413)
    if reply.status != 200:
        assert set(reply.body) == {"error", "request_id"}
