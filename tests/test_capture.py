"""Prediction capture, row ids and ground truth (shared/DESIGN.md sections 3 and 6), through the handler."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from lambda_forest.capture import Capturer, label_line, parse_record, record_directory
from tests.conftest import api_event, publish_model

IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
PREDICTION_KEYS = {
    "kind",
    "request_id",
    "time",
    "model",
    "alias",
    "features",
    "rows",
    "row_ids",
    "row_count",
    "predictions",
    "probabilities",
    "warnings",
}


@pytest.fixture
def iris_api(handler: Any, local_store: Any, published_iris: Any) -> Any:
    return lambda **settings: handler(local_store, **settings)


def predict(invoke: Any, body: dict[str, Any]) -> Any:
    return invoke(api_event("POST", "/predict", body))


def records(invoke: Any) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in invoke.lines]


def test_nothing_is_captured_by_default(iris_api: Any) -> None:
    invoke = iris_api()
    assert predict(invoke, {"instances": ROWS}).status == 200
    assert invoke.lines == []


def test_a_captured_request_is_one_line_in_the_contract(iris_api: Any, published_iris: Any) -> None:
    invoke = iris_api(capture_sample_rate=1.0)
    event = api_event("POST", "/predict", {"instances": [ROWS[0], dict(zip(IRIS, ROWS[1], strict=True))]})
    reply = invoke(event)
    [record] = records(invoke)
    assert set(record) == PREDICTION_KEYS
    request_id = event["requestContext"]["requestId"]
    assert reply.body["request_id"] == record["request_id"] == request_id
    assert record["kind"] == "prediction" and record["alias"] == "live"
    assert record["model"] == {"name": "iris", "version": published_iris.version}
    assert record["features"] == IRIS
    assert record["rows"] == ROWS[:2]  # an object row is captured in feature order
    assert record["row_ids"] == [f"{request_id}:0", f"{request_id}:1"] and record["row_count"] == 2
    assert record["predictions"] == reply.body["predictions"]
    assert record["probabilities"] == reply.body["probabilities"]
    assert record["warnings"] == []
    assert datetime.fromisoformat(record["time"]).tzinfo is not None


def test_callers_ids_are_kept_and_probabilities_may_be_absent(iris_api: Any) -> None:
    invoke = iris_api(capture_sample_rate=1.0)
    reply = predict(invoke, {"instances": ROWS[:2], "ids": ["a-1", "a-2"], "probabilities": False})
    assert reply.status == 200
    [record] = records(invoke)
    assert record["row_ids"] == ["a-1", "a-2"] and record["probabilities"] is None


def test_csv_cells_are_captured_as_the_numbers_the_model_read(iris_api: Any) -> None:
    from local_lambda.events import proxy_event

    invoke = iris_api(capture_sample_rate=1.0)
    body = ",".join(IRIS) + "\n5.1,3.5,1.4,0.2\n6.7,3,NA,\n"
    assert invoke(proxy_event("POST", "/predict", {"Content-Type": "text/csv"}, body.encode())).status == 200
    [record] = records(invoke)
    assert record["rows"] == [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, None, None]]  # not text cells


def test_a_pinned_version_captures_no_alias(handler: Any, local_store: Any, published_iris: Any) -> None:
    invoke = handler(local_store, model_version=published_iris.version, capture_sample_rate=1.0)
    predict(invoke, {"instances": ROWS})
    assert records(invoke)[0]["alias"] is None


def test_sampling_is_a_share_of_requests_drawn_from_the_injected_source() -> None:
    def decisions(rate: float, seed: int) -> list[bool]:
        capturer = Capturer(rate, rng=random.Random(seed))
        return [capturer.sampled() for _ in range(2000)]

    assert decisions(0.3, 7) == decisions(0.3, 7)  # deterministic for a given source
    assert 0.27 < sum(decisions(0.3, 7)) / 2000 < 0.33
    assert not any(decisions(0.0, 1)) and all(decisions(1.0, 1))


def test_sampled_requests_are_the_ones_captured(iris_api: Any) -> None:
    invoke = iris_api(capture_sample_rate=0.5)
    for _ in range(40):
        predict(invoke, {"instances": ROWS[:1]})
    draws = random.Random(0)  # the source the handler fixture injects
    expected = sum(draws.random() < 0.5 for _ in range(40))
    assert len(invoke.lines) == expected and 0 < expected < 40


def test_a_large_batch_is_capped_to_a_row_sample_and_says_so(iris_api: Any) -> None:
    invoke = iris_api(capture_sample_rate=1.0, capture_max_rows=4)
    rows = [[4.0 + row / 10, 3.0, 1.0 + row / 5, 0.5] for row in range(30)]
    ids = [f"row-{row}" for row in range(30)]
    reply = predict(invoke, {"instances": rows, "ids": ids})
    [record] = records(invoke)
    assert record["row_count"] == 30 and len(record["rows"]) == 4
    kept = [ids.index(row_id) for row_id in record["row_ids"]]
    assert kept == sorted(set(kept))
    assert record["rows"] == [rows[row] for row in kept]
    assert record["predictions"] == [reply.body["predictions"][row] for row in kept]
    assert record["probabilities"] == [reply.body["probabilities"][row] for row in kept]


def test_a_line_over_the_byte_limit_keeps_fewer_rows() -> None:
    lines: list[bytes] = []
    capturer = Capturer(1.0, max_rows=100, max_bytes=2_000, rng=random.Random(3), write=lines.append)
    response = {"model": {"name": "m", "version": "v"}, "predictions": [1.5] * 100}
    assert capturer.capture(request_id="r", response=response, features=["x"], instances=[[0.25]] * 100)
    [line] = lines
    record = orjson.loads(line)
    assert len(line) <= 2_000 and 0 < len(record["rows"]) < 100 and record["row_count"] == 100


def test_warnings_follow_the_captured_rows() -> None:
    lines: list[bytes] = []
    capturer = Capturer(1.0, max_rows=2, rng=random.Random(1), write=lines.append)
    warnings = [{"row": row, "feature": "x", "code": "unknown_category", "message": "..."} for row in range(4)]
    response = {"model": None, "predictions": [0, 1, 2, 3], "warnings": [*warnings, {"row": None, "code": "more"}]}
    capturer.capture(request_id="r", response=response, features=["x"], instances=[[0], [1], [2], [3]])
    record = orjson.loads(lines[0])
    assert [warning["row"] for warning in record["warnings"]] == [0, 1]
    assert [record["rows"][w["row"]][0] for w in record["warnings"]] == [
        int(i.split(":")[1]) for i in record["row_ids"]
    ]


def test_a_capture_that_cannot_be_written_never_fails_the_request(iris_api: Any) -> None:
    import app

    invoke = iris_api(capture_sample_rate=1.0)
    failures: list[Exception] = []

    def broken(_: bytes) -> None:
        raise OSError("stdout closed")

    app.capturer.write, app.capturer.on_failure = broken, failures.append
    reply = predict(invoke, {"instances": ROWS})
    assert reply.status == 200 and reply.body["predictions"]
    assert [type(error) for error in failures] == [OSError]


def test_a_row_too_large_to_log_is_dropped_not_an_error() -> None:
    failures: list[Exception] = []
    capturer = Capturer(1.0, max_bytes=500, write=lambda _: None, on_failure=failures.append)
    response = {"model": None, "predictions": ["a"]}
    assert not capturer.capture(request_id="r", response=response, features=["x"], instances=[["x" * 1000]])
    assert "line limit" in str(failures[0])


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        (["a"], "a list of 1; expected a list of 3 strings"),
        ("abc", "a JSON string; expected a list of 3 strings"),
        (["a", 2, "c"], "ids[1] is a JSON number; expected a non-empty string"),
        (["a", "", "c"], "ids[1] is an empty string"),
        (["a", "b", "a"], "ids[2] 'a' repeats ids[0]"),
        (["a", "b", "c" * 300], "ids[2] is 300 characters long; at most 256"),
    ],
)
def test_bad_ids_say_what_was_wrong(iris_api: Any, ids: Any, words: str) -> None:
    reply = predict(iris_api(), {"instances": ROWS, "ids": ids})
    assert (reply.status, reply.body["error"]["code"]) == (400, "invalid_request")
    assert words in reply.body["error"]["message"]


def feedback(invoke: Any, body: Any) -> Any:
    return invoke(api_event("POST", "/feedback", body))


def test_feedback_records_one_label_line_per_row(iris_api: Any) -> None:
    invoke = iris_api()
    event = api_event(
        "POST", "/feedback", {"labels": [{"id": "a-1", "label": "setosa"}, {"id": "x", "label": "virginica"}]}
    )
    reply = invoke(event)
    assert reply.status == 200
    assert reply.body == {"accepted": 2, "request_id": event["requestContext"]["requestId"]}
    labels = records(invoke)
    assert [(label["kind"], label["row_id"], label["label"]) for label in labels] == [
        ("label", "a-1", "setosa"),
        ("label", "x", "virginica"),  # an id no capture knows is recorded; the monitor counts it
    ]
    assert all(label["request_id"] == event["requestContext"]["requestId"] and label["time"] for label in labels)


def test_a_regressors_labels_are_numbers(handler: Any, local_store: Any, trained_diabetes: Any) -> None:
    publish_model(local_store, trained_diabetes, name="diabetes")
    invoke = handler(local_store, name="diabetes")
    assert feedback(invoke, {"labels": [{"id": "r:0", "label": 151.0}, {"id": "r:1", "label": 75}]}).status == 200
    assert [record["label"] for record in records(invoke)] == [151.0, 75]
    reply = feedback(invoke, {"labels": [{"id": "r:0", "label": "high"}]})
    assert (reply.status, reply.body["error"]["code"]) == (400, "invalid_labels")
    assert "'labels[0].label' is a JSON string; expected a finite number" in reply.body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        (
            {"labels": [{"id": "a", "label": "setosa"}, {"id": "b", "label": "rose"}]},
            400,
            "invalid_labels",
            "'labels[1].label' is 'rose', not a class of this model; expected one of 'setosa', 'versicolor',",
        ),
        (
            {"labels": [{"id": "a", "label": None}]},
            400,
            "invalid_labels",
            "'labels[0].label' is a JSON null; expected a class",
        ),
        (
            {"labels": [{"id": "a"}]},
            400,
            "invalid_labels",
            "'labels[0]' has no 'label'; expected an object with exactly",
        ),
        ({"labels": [["a", "setosa"]]}, 400, "invalid_labels", "'labels[0]' is a JSON array; expected an object with"),
        (
            {"labels": [{"id": "a", "label": "setosa", "weight": 2}]},
            400,
            "invalid_labels",
            "'labels[0]' has unknown key(s) 'weight'; expected only 'id', 'label'",
        ),
        (
            {"labels": [{"id": 7, "label": "setosa"}]},
            400,
            "invalid_labels",
            "'labels[0].id' is a JSON number; expected a",
        ),
        ({"labels": [{"id": "", "label": "setosa"}]}, 400, "invalid_labels", "'labels[0].id' is an empty string"),
        ({"labels": [{"id": "a" * 257, "label": "setosa"}]}, 400, "invalid_labels", "257 characters long; at most 256"),
        ({"labels": []}, 400, "invalid_request", "'labels' is empty; expected a non-empty list of {\"id\""),
        ({"labels": {"id": "a"}}, 400, "invalid_request", "'labels' is a JSON object; expected a non-empty list"),
        ({"rows": []}, 400, "invalid_request", "The request body has unknown key(s) 'rows'; expected only 'labels'"),
        ({}, 400, "invalid_request", "has no 'labels'; expected an object like {\"labels\""),
        ([1], 400, "invalid_request", "The request body is a JSON array; expected an object like"),
    ],
)
def test_bad_feedback_says_what_was_wrong(iris_api: Any, body: Any, status: int, code: str, words: str) -> None:
    invoke = iris_api()
    reply = feedback(invoke, body)
    assert (reply.status, reply.body["error"]["code"]) == (status, code)
    assert words in reply.body["error"]["message"]
    assert invoke.lines == []  # nothing of a refused request is recorded


def test_feedback_is_bounded_in_size(iris_api: Any) -> None:
    invoke = iris_api(max_batch_rows=2)
    reply = feedback(invoke, {"labels": [{"id": str(row), "label": "setosa"} for row in range(3)]})
    assert (reply.status, reply.body["error"]["code"]) == (413, "too_many_labels")
    assert "at most 2" in reply.body["error"]["message"]


def test_feedback_without_a_model_is_503(handler: Any, local_store: Any) -> None:
    reply = feedback(handler(local_store), {"labels": [{"id": "a", "label": "setosa"}]})
    assert (reply.status, reply.body["error"]["code"]) == (503, "model_unavailable")


def test_log_lines_are_routed_as_the_subscription_filters_route_them() -> None:
    prediction = orjson.dumps({"kind": "prediction", "rows": []})
    label = label_line("a", "setosa", "2026-12-01T10:15:00.000Z")
    powertools = json.dumps({"level": "INFO", "message": "model loaded", "kind_of": "x"}).encode()
    assert record_directory(prediction) == "captures" and record_directory(label) == "labels"
    for other in (powertools, b"START RequestId: 1", b'{"kind": "metric"}', b"", b'{"kind": '):
        assert record_directory(other) is None
    assert parse_record(label) == {
        "kind": "label",
        "row_id": "a",
        "label": "setosa",
        "time": "2026-12-01T10:15:00.000Z",
        "request_id": None,
    }


def test_capture_time_comes_from_the_clock() -> None:
    lines: list[bytes] = []
    when = datetime(2026, 12, 1, 10, 15, 0, 123456, tzinfo=UTC)
    capturer = Capturer(1.0, write=lines.append, clock=lambda: when)
    capturer.capture(request_id="r", response={"model": None, "predictions": [1]}, features=["x"], instances=[[1]])
    assert orjson.loads(lines[0])["time"] == "2026-12-01T10:15:00.123Z"
