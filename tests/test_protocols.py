"""Every protocol the function speaks: the same rows through every request shape give the same, exact
predictions; each shape's mistakes get its protocol's 4xx; answers come in each protocol's shape."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from local_lambda.events import front_door_event
from tests.conftest import publish_model
from training.forest import json_rows

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def request(path: str, body: Any, content_type: str = "application/json", method: str = "POST") -> dict[str, Any]:
    raw = body if isinstance(body, str) else json.dumps(body)
    return front_door_event("rest", method, path, {"Content-Type": content_type}, raw.encode())


def get(path: str) -> dict[str, Any]:
    return front_door_event("rest", "GET", path, {}, b"")


def csv_text(rows: list[list[Any]], header: list[str] | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
    return out.getvalue()


class Model:
    """A published model, its handler, and the rows and answers to expect (the estimator's own)."""

    def __init__(self, invoke: Callable[[dict[str, Any]], Any], trained: Any, manifest: Any) -> None:
        self.invoke, self.name = invoke, manifest.name
        self.names = list(manifest.feature_names)
        self.kinds = [feature.type for feature in manifest.schema.features]
        self.rows = json_rows(trained.holdout_X, manifest.schema)
        self.predictions = trained.estimator.predict(trained.holdout_X).tolist()
        self.probabilities = trained.estimator.predict_proba(trained.holdout_X)


@pytest.fixture
def iris(handler: Any, local_store: Any, trained_iris: Any) -> Model:
    return Model(handler(local_store), trained_iris, publish_model(local_store, trained_iris))


@pytest.fixture
def loans(handler: Any, local_store: Any, trained_loans: Any) -> Model:
    manifest = publish_model(local_store, trained_loans, name="loans")
    return Model(handler(local_store, name="loans"), trained_loans, manifest)


@pytest.fixture(params=["iris", "loans"])
def model(request: pytest.FixtureRequest) -> Model:
    return request.getfixturevalue(request.param)


def records(model: Model) -> list[dict[str, Any]]:
    return [dict(zip(model.names, row, strict=True)) for row in model.rows]


def text_cells(model: Model) -> list[list[Any]]:
    return [[None if value is None else str(value) for value in row] for row in model.rows]


# The same rows, every shape.


def native_shapes(model: Model) -> dict[str, dict[str, Any]]:
    columns = list(reversed(model.names))
    return {
        "instances lists": request("/predict", {"instances": model.rows}),
        "instances objects": request("/predict", {"instances": records(model)}),
        "dataframe_split": request(
            "/predict",
            {"dataframe_split": {"columns": columns, "data": [row[::-1] for row in model.rows], "index": [0]}},
        ),
        "dataframe_split without columns": request("/predict", {"dataframe_split": {"data": model.rows}}),
        "dataframe_records": request("/predict", {"dataframe_records": records(model)}),
        "inputs rows": request("/predict", {"inputs": model.rows}),
        "inputs columns": request(
            "/predict", {"inputs": {name: [row[i] for row in model.rows] for i, name in enumerate(model.names)}}
        ),
        "csv with header": request("/predict", csv_text([r[::-1] for r in model.rows], columns), "text/csv"),
        "csv without header": request("/predict", csv_text(model.rows, None), "text/csv; charset=utf-8"),
    }


def test_every_native_and_mlflow_shape_gives_the_estimators_answers(model: Model) -> None:
    for shape, event in native_shapes(model).items():
        reply = model.invoke(event)
        assert reply.status == 200, (shape, reply.body)
        assert reply.body["predictions"] == model.predictions, shape
        assert np.array_equal(np.array(reply.body["probabilities"]), model.probabilities), shape


def test_invocations_answers_mlflow_predictions(model: Model) -> None:
    bodies = {
        "instances": {"instances": model.rows},
        "dataframe_split": {"dataframe_split": {"columns": model.names, "data": model.rows}},
        "dataframe_records": {"dataframe_records": records(model), "params": {}},
        "inputs": {"inputs": model.rows},
    }
    for shape, body in bodies.items():
        reply = model.invoke(request("/invocations", body))
        assert (reply.status, reply.body) == (200, {"predictions": model.predictions}), shape
    reply = model.invoke(request("/invocations", csv_text(model.rows, model.names), "text/csv"))
    assert reply.body == {"predictions": model.predictions}


def test_kserve_v1_answers_predictions(model: Model) -> None:
    for key in ("instances", "inputs"):
        reply = model.invoke(request(f"/v1/models/{model.name}:predict", {key: model.rows}))
        assert (reply.status, reply.body) == (200, {"predictions": model.predictions}), key
    assert model.invoke(get(f"/v1/models/{model.name}")).body == {"name": model.name, "ready": True}
    assert model.invoke(get("/v1/models")).body == {"models": [model.name]}


def v2_feature_tensors(model: Model) -> list[dict[str, Any]]:
    tensors = []
    for index, (name, kind) in enumerate(zip(model.names, model.kinds, strict=True)):
        column = [row[index] for row in model.rows]
        if kind == "categorical":
            tensors.append(
                {
                    "name": name,
                    "datatype": "BYTES",
                    "shape": [len(column)],
                    "data": [None if value is None else str(value) for value in column],
                }
            )
        else:
            tensors.append({"name": name, "datatype": "FP64", "shape": [len(column), 1], "data": column})
    return tensors


def v2_matrix_tensor(model: Model, nested: bool) -> dict[str, Any]:
    numeric = all(kind == "numeric" for kind in model.kinds)
    cells = model.rows if numeric else text_cells(model)
    data = cells if nested else [value for row in cells for value in row]
    shape = [len(cells), len(model.names)]
    return {"name": "input-0", "datatype": "FP64" if numeric else "BYTES", "shape": shape, "data": data}


def test_open_inference_v2_answers_every_tensor_layout(model: Model) -> None:
    layouts = {
        "a tensor per feature": v2_feature_tensors(model),
        "one [rows, features] tensor, flat": [v2_matrix_tensor(model, nested=False)],
        "one [rows, features] tensor, nested": [v2_matrix_tensor(model, nested=True)],
    }
    for layout, inputs in layouts.items():
        reply = model.invoke(request(f"/v2/models/{model.name}/infer", {"id": "r1", "inputs": inputs}))
        assert reply.status == 200, (layout, reply.body)
        outputs = {output["name"]: output for output in reply.body["outputs"]}
        assert reply.body["id"] == "r1" and reply.body["model_name"] == model.name
        assert outputs["predict"]["data"] == model.predictions, layout
        assert outputs["predict"]["shape"] == [len(model.rows)]
        proba = outputs["predict_proba"]
        assert proba["shape"] == list(model.probabilities.shape)
        assert np.array_equal(np.array(proba["data"]).reshape(proba["shape"]), model.probabilities), layout


def test_v2_outputs_as_asked(iris: Model) -> None:
    body = {"inputs": [v2_matrix_tensor(iris, nested=True)], "outputs": [{"name": "predict_proba"}]}
    reply = iris.invoke(request("/v2/models/iris/infer", body))
    assert [output["name"] for output in reply.body["outputs"]] == ["predict_proba"]
    assert reply.body["outputs"][0]["parameters"]["classes"] == ["setosa", "versicolor", "virginica"]
    body["outputs"] = [{"name": "predict"}]
    reply = iris.invoke(request("/v2/models/iris/infer", body))
    assert [(o["name"], o["datatype"]) for o in reply.body["outputs"]] == [("predict", "BYTES")]


def test_v2_regressors_answer_fp64_values(handler: Any, local_store: Any, trained_diabetes: Any) -> None:
    manifest = publish_model(local_store, trained_diabetes, name="diabetes")
    invoke = handler(local_store, name="diabetes")
    rows = trained_diabetes.holdout_X.tolist()
    tensor = {"name": "x", "datatype": "FP64", "shape": [len(rows), len(rows[0])], "data": rows}
    reply = invoke(request("/v2/models/diabetes/infer", {"inputs": [tensor]}))
    [output] = reply.body["outputs"]
    assert (output["name"], output["datatype"]) == ("predict", "FP64")
    assert output["data"] == trained_diabetes.estimator.predict(trained_diabetes.holdout_X).tolist()
    metadata = invoke(get("/v2/models/diabetes")).body
    assert [output["name"] for output in metadata["outputs"]] == ["predict"]
    assert metadata["versions"] == [manifest.version]
    reply = invoke(request("/v2/models/diabetes/infer", {"inputs": [tensor], "outputs": [{"name": "predict_proba"}]}))
    assert reply.status == 400 and "regressor" in reply.body["error"]


def test_v2_metadata_health_and_readiness(loans: Model) -> None:
    metadata = loans.invoke(get("/v2/models/loans")).body
    assert [tensor["name"] for tensor in metadata["inputs"]] == loans.names
    kinds = {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]}
    assert {name: kind for name, kind in zip(loans.names, loans.kinds, strict=True) if kind == "categorical"} == {
        name: "categorical" for name, datatype in kinds.items() if datatype == "BYTES"
    }
    region = next(tensor for tensor in metadata["inputs"] if tensor["name"] == "region")
    assert region["shape"] == [-1] and region["parameters"]["categories"] == ["north", "south", "west"]
    assert loans.invoke(get("/v2/health/live")).body == {"live": True}
    assert loans.invoke(get("/v2/health/ready")).body == {"ready": True}
    assert loans.invoke(get("/v2/models/loans/ready")).body == {"name": "loans", "ready": True}
    version = metadata["versions"][0]
    assert loans.invoke(get(f"/v2/models/loans/versions/{version}/ready")).status == 200
    assert loans.invoke(get("/v2")).body["name"] == "lambda-forest"


# Each shape's mistakes, in its protocol's error style.


def native_error(reply: Any) -> tuple[int, str]:
    assert set(reply.body) == {"error", "request_id"}
    return reply.status, reply.body["error"]["code"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "words"),
    [
        ({"dataframe_split": {"columns": ["a"]}}, "application/json", 400, "invalid_request", "has no 'data'"),
        (
            {"dataframe_split": {"data": [[1, 2, 3, 4]], "extra": 1}},
            "application/json",
            400,
            "invalid_request",
            "'dataframe_split' has unknown key(s) 'extra'",
        ),
        (
            {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2, 3]]}},
            "application/json",
            400,
            "invalid_instances",
            "dataframe_split.data[0] has 3 values; 'columns' names 2",
        ),
        (
            {"dataframe_split": {"data": [[1, 2, 3, 4], {"sepal length (cm)": 1}]}},
            "application/json",
            400,
            "invalid_instances",
            "dataframe_split.data[1] is a JSON object; expected a list in feature_names order",
        ),
        (
            {"dataframe_records": [{"sepal length (cm)": 1}]},
            "application/json",
            400,
            "invalid_instances",
            "dataframe_records[0] is missing feature",
        ),
        ({"dataframe_records": []}, "application/json", 400, "invalid_request", "'dataframe_records' is empty"),
        (
            {"inputs": {"sepal length (cm)": [1, 2], "petal width (cm)": [1]}},
            "application/json",
            400,
            "invalid_instances",
            "differ in length",
        ),
        ({"inputs": "rows"}, "application/json", 400, "invalid_request", "'inputs' is a JSON string"),
        (
            {"inputs": [[1, 2, 3, 4]], "instances": [[1, 2, 3, 4]]},
            "application/json",
            400,
            "invalid_request",
            "'instances' and 'inputs'",
        ),
        ({"rows": [[1, 2, 3, 4]]}, "application/json", 400, "invalid_request", "none of 'instances'"),
        ("", "text/csv", 400, "invalid_csv", "CSV body is empty"),
        (
            "sepal length (cm),petal width (cm)\n1,2\n",
            "text/csv",
            400,
            "invalid_instances",
            "The CSV header (line 1) has no",
        ),
        (
            ",sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n0,1,2,3,4\n",
            "text/csv",
            400,
            "invalid_instances",
            "unknown column(s) ''; an unnamed first column is a saved DataFrame index: write the CSV with index=False",
        ),
        ("1,2,3\n", "text/csv", 400, "invalid_instances", "line 1 has 3 values; expected 4"),
        ("1,2,x,4\n", "text/csv", 400, "invalid_instances", "line 1['petal length (cm)'] is 'x', not a number"),
        ("1,2,3,4\n" * 4, "text/csv", 413, "too_many_instances", "at most 3"),
    ],
)
def test_predict_shapes_say_what_was_wrong(
    handler: Any,
    local_store: Any,
    published_iris: Any,
    body: Any,
    content_type: str,
    status: int,
    code: str,
    words: str,
) -> None:
    reply = handler(local_store, max_batch_rows=3)(request("/predict", body, content_type))
    assert native_error(reply) == (status, code)
    assert words in reply.body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"dataframe_records": [{"x": 1}]}, 400, "unknown feature"),
        ({"instances": [[1, 2, 3, 4]], "params": {"predict_method": "predict_proba"}}, 400, "no parameters"),
        ({"instances": [[1, 2, 3, 4]], "probabilities": True}, 400, "unknown key(s) 'probabilities'"),
        ("{not json", 400, "not valid JSON"),
    ],
)
def test_invocations_errors_are_mlflows(iris: Model, body: Any, status: int, words: str) -> None:
    reply = iris.invoke(request("/invocations", body))
    assert reply.status == status
    assert reply.body["error_code"] == "BAD_REQUEST" and words in reply.body["message"]


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/models/wine:predict", {"instances": IRIS_ROWS}, 404, "this endpoint serves 'iris'"),
        ("/v1/models/iris:explain", {"instances": IRIS_ROWS}, 404, "/v1/models/NAME:predict"),
        ("/v1/models/iris:predict", {"rows": IRIS_ROWS}, 400, "none of 'instances' or 'inputs'"),
        ("/v1/models/iris:predict", {"instances": [[1, 2]]}, 400, "instances[0] has 2 values"),
        ("/v1/models/iris:predict", "[1", 400, "not valid JSON"),
    ],
)
def test_kserve_v1_errors(iris: Model, path: str, body: Any, status: int, words: str) -> None:
    reply = iris.invoke(request(path, body))
    assert (reply.status, list(reply.body)) == (status, ["error"])
    assert words in reply.body["error"]


def test_kserve_v1_predict_takes_post_only(iris: Model) -> None:
    reply = iris.invoke(get("/v1/models/iris:predict"))
    assert (reply.status, reply.headers.get("allow")) == (405, "POST"), reply.body
    assert reply.body == {"error": "GET is not allowed on /v1/models/iris:predict; use POST."}
    assert iris.invoke(get("/v1/models/iris:explain")).status == 404


def tensor(name: str = "x", shape: list[int] | None = None, datatype: str = "FP64", data: Any = None) -> dict:
    return {"name": name, "shape": shape or [2, 4], "datatype": datatype, "data": IRIS_ROWS if data is None else data}


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v2/models/wine/infer", {"inputs": [tensor()]}, 404, "this endpoint serves 'iris'"),
        ("/v2/models/iris/versions/v0/infer", {"inputs": [tensor()]}, 404, "is not served here"),
        ("/v2/models/iris/infer", {"inputs": []}, 400, "'inputs' is empty"),
        ("/v2/models/iris/infer", {"inputs": [tensor(shape=[2, 3])]}, 400, "expected [-1, 4]"),
        ("/v2/models/iris/infer", {"inputs": [tensor(shape=[3, 4])]}, 400, "has 8 values; its shape [3, 4] needs 12"),
        ("/v2/models/iris/infer", {"inputs": [tensor(datatype="FP128")]}, 400, "expected one of"),
        ("/v2/models/iris/infer", {"inputs": [tensor(datatype="BOOL")]}, 400, "BOOL"),
        (
            "/v2/models/iris/infer",
            {"inputs": [tensor(data=[[1, 2, "x", 4], [1, 2, 3, 4]])]},
            400,
            "Tensor 'x' is FP64, but row 0['petal length (cm)'] is 'x'; expected numbers or null",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [tensor(datatype="INT64", data=[[1, 2, 3, 4], [1, 2, 3, True]])]},
            400,
            "Tensor 'x' is INT64, but row 1['petal width (cm)'] is true; expected numbers or null",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [tensor("sepal length (cm)", [2], data=[1, 2])]},
            400,
            "No tensor for feature",
        ),
        ("/v2/models/iris/infer", {"inputs": [tensor()], "outputs": [{"name": "explain"}]}, 400, "expected one of"),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64"}]},
            400,
            "has no 'data'",
        ),
    ],
)
def test_open_inference_errors(iris: Model, path: str, body: Any, status: int, words: str) -> None:
    reply = iris.invoke(request(path, body))
    assert (reply.status, list(reply.body)) == (status, ["error"])
    assert words in reply.body["error"]


def test_v2_number_tensors_hold_numbers_and_text_goes_in_bytes(loans: Model) -> None:
    """A mixed table's text cells in an FP64 tensor are a malformed request, not text read as categories."""
    matrix = v2_matrix_tensor(loans, nested=True)
    reply = loans.invoke(request("/v2/models/loans/infer", {"inputs": [matrix | {"datatype": "FP64"}]}))
    assert (reply.status, list(reply.body)) == (400, ["error"])
    assert "Tensor 'input-0' is FP64, but row 0['region'] is " in reply.body["error"]
    assert "text goes in a BYTES tensor" in reply.body["error"]
    tensors = v2_feature_tensors(loans)
    region = next(tensor for tensor in tensors if tensor["name"] == "region")
    region["datatype"] = "FP32"
    reply = loans.invoke(request("/v2/models/loans/infer", {"inputs": tensors}))
    assert reply.status == 400 and "Tensor 'region' is FP32, but row 0 is " in reply.body["error"], reply.body


def test_wrong_model_names_are_404s_naming_the_served_model(iris: Model) -> None:
    for path in ("/v1/models/wine", "/v2/models/wine", "/v2/models/wine/ready"):
        reply = iris.invoke(get(path))
        assert reply.status == 404 and "serves 'iris'" in reply.body["error"], path


def test_unknown_v2_routes_answer_in_v2_style(iris: Model) -> None:
    reply = iris.invoke(get("/v2/nowhere"))
    assert (reply.status, list(reply.body)) == (404, ["error"])
    reply = iris.invoke(get("/v2/models/iris/infer"))
    assert (reply.status, reply.headers["allow"]) == (405, "POST")


def test_ping_is_a_cheap_health_check(iris: Model) -> None:
    assert iris.invoke(get("/ping")).body == {"status": "ok", "model": None}


def test_an_unavailable_model_is_503_in_every_protocol(handler: Any, local_store: Any) -> None:
    invoke = handler(local_store)
    answers = {
        "/predict": invoke(request("/predict", {"instances": IRIS_ROWS})),
        "/invocations": invoke(request("/invocations", {"instances": IRIS_ROWS})),
        "/v1": invoke(request("/v1/models/iris:predict", {"instances": IRIS_ROWS})),
        "/v2": invoke(request("/v2/models/iris/infer", {"inputs": [tensor()]})),
        "/v2 ready": invoke(get("/v2/health/ready")),
    }
    assert {name: reply.status for name, reply in answers.items()} == dict.fromkeys(answers, 503)
    assert answers["/invocations"].body["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert isinstance(answers["/v2"].body["error"], str) and int(answers["/v2"].headers["retry-after"]) > 0


def test_mixed_rows_report_unknown_categories_in_every_native_shape(loans: Model) -> None:
    row = dict(zip(loans.names, loans.rows[0], strict=True)) | {"region": "east"}
    for body in ({"instances": [row]}, {"dataframe_records": [row]}):
        reply = loans.invoke(request("/predict", body))
        assert reply.body["warnings"][0]["code"] == "unknown_category"


def test_every_protocol_captures_its_sampled_predictions(handler: Any, local_store: Any, published_iris: Any) -> None:
    invoke = handler(local_store, capture_sample_rate=1.0)
    names = list(published_iris.feature_names)
    requests = {
        "/predict CSV": request("/predict", csv_text(IRIS_ROWS, names), "text/csv"),
        "/invocations": request("/invocations", {"dataframe_split": {"columns": names, "data": IRIS_ROWS}}),
        "KServe V1": request("/v1/models/iris:predict", {"instances": IRIS_ROWS}),
        "V2": request("/v2/models/iris/infer", {"inputs": [tensor()]}),
    }
    for label, event in requests.items():
        before = len(invoke.lines)
        assert invoke(event).status == 200, label
        [line] = invoke.lines[before:]
        record = json.loads(line)
        assert record["predictions"] == ["setosa", "virginica"], label
        assert record["request_id"] == event["requestContext"]["requestId"], label
