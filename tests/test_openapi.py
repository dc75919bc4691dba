"""The OpenAPI document: made from the shapes that check requests, current in the repository, describing
every route, and filled in with the served model's features by GET /openapi.json."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from lambda_forest.openapi import document
from lambda_forest.protocols.shapes import check
from lambda_forest.schema import PREDICT_REQUEST
from local_lambda.events import front_door_event
from tests.conftest import ROOT, publish_model

COMMITTED = ROOT / "openapi.json"
JSON = "application/json"
VERSIONED_INFER = "/v2/models/{name}/versions/{version}/infer"


def get(path: str) -> dict[str, Any]:
    return front_door_event("rest", "GET", path, {}, b"")


def test_the_committed_document_is_current() -> None:
    assert json.loads(COMMITTED.read_text()) == document(), "run: python -m lambda_forest.openapi > openapi.json"


def test_the_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate

    validate(document())


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    import app

    routes = {(method.lower(), re.sub(r"<(\w+)>", r"{\1}", rule)) for _, method, rule in app.ROUTES}
    routes = {
        (method, "/v1/models/{name}:predict" if path == "/v1/models/{target}" else path) for method, path in routes
    }
    documented = {(method, path) for path, operations in document()["paths"].items() for method in operations}
    assert routes == documented


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [[1, 2, 3, 4]]},
        {"instances": [[1, 2, 3, 4]], "probabilities": False},
        {"dataframe_split": {"columns": ["a"], "data": [[1]]}},
        {"dataframe_records": [{"a": 1}]},
        {"inputs": {"a": [1, 2]}},
        {"inputs": [[1, 2, 3, 4]]},
    ],
)
def test_what_the_checks_accept_the_document_accepts(body: dict[str, Any]) -> None:
    check(body, PREDICT_REQUEST)
    jsonschema.validate(
        body, document()["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"instances": []},
        {"instances": "rows"},
        {"instances": [[1]], "extra": 1},
        {"instances": [[1]], "probabilities": "yes"},
        {"instances": [[1]], "inputs": [[1]]},
        {"dataframe_split": {"columns": ["a"]}},
        {"inputs": {}},
    ],
)
def test_what_the_checks_refuse_the_document_refuses(body: dict[str, Any]) -> None:
    from lambda_forest.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        check(body, PREDICT_REQUEST)
    schema = document()["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, schema)


def test_served_document_has_the_models_features(handler: Any, local_store: Any, trained_loans: Any) -> None:
    manifest = publish_model(local_store, trained_loans, name="loans")
    reply = handler(local_store, name="loans", max_batch_rows=500)(get("/openapi.json"))
    assert reply.status == 200
    served = reply.body
    assert manifest.version in served["info"]["title"]
    body = served["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    instances = body["oneOf"][0]["properties"]["instances"]
    assert instances["maxItems"] == 500
    as_list, as_object = instances["items"]["oneOf"]
    assert len(as_list["prefixItems"]) == len(manifest.feature_names)
    assert list(as_object["properties"]) == manifest.feature_names
    region = as_object["properties"]["region"]
    assert region["anyOf"][0]["enum"] == ["north", "south", "west"]
    assert as_object["properties"]["income"]["type"] == ["number", "null"]
    row = dict(zip(manifest.feature_names, [None] * len(manifest.feature_names), strict=True)) | {"region": "north"}
    jsonschema.validate({"instances": [row]}, body)
    assert (
        "region" in served["paths"]["/predict"]["post"]["requestBody"]["content"]["text/csv"]["schema"]["description"]
    )
    versioned = {parameter["name"]: parameter for parameter in served["paths"][VERSIONED_INFER]["post"]["parameters"]}
    assert (versioned["name"]["example"], versioned["version"]["example"]) == ("loans", manifest.version)


def test_without_a_model_the_served_document_is_the_generic_one(handler: Any, local_store: Any) -> None:
    reply = handler(local_store)(get("/openapi.json"))
    assert reply.status == 200 and reply.body["paths"] == document(model_name="iris")["paths"]


def test_the_served_document_accepts_what_the_function_answers(
    handler: Any, local_store: Any, trained_loans: Any
) -> None:
    """Unknown categories (answered with a warning), numbers and booleans for categories, and MLflow's
    dataframe_split in any column order are answered 200: the document must not refuse them."""
    manifest = publish_model(local_store, trained_loans, name="loans")
    invoke = handler(local_store, name="loans")
    served = invoke(get("/openapi.json")).body
    schema = served["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    row = {"region": "east", "income": 51000.5, "employment": None, "cylinders": 6, "owner": True}
    assert list(row) == manifest.feature_names
    names = list(reversed(manifest.feature_names))
    bodies = {
        "an unknown category, numbers and booleans for categories": {"instances": [row, list(row.values())]},
        "dataframe_split in another column order": {
            "dataframe_split": {"columns": names, "data": [[row[name] for name in names]]}
        },
    }
    for what, body in bodies.items():
        reply = invoke(front_door_event("rest", "POST", "/predict", {"Content-Type": JSON}, json.dumps(body).encode()))
        assert reply.status == 200, (what, reply.body)
        jsonschema.validate(body, schema)


def test_the_served_document_names_the_classes_feedback_takes(
    handler: Any, local_store: Any, trained_loans: Any
) -> None:
    publish_model(local_store, trained_loans, name="loans")
    served = handler(local_store, name="loans", max_batch_rows=50)(get("/openapi.json")).body
    schema = served["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    jsonschema.validate({"labels": [{"id": "a", "label": "repaid"}, {"id": "b", "label": "defaulted"}]}, schema)
    for refused in (
        {"labels": [{"id": "a", "label": "maybe"}]},
        {"labels": [{"id": str(i), "label": "repaid"} for i in range(51)]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(refused, schema)


@pytest.mark.parametrize(
    "options",
    [{}, {"probabilities": False}, {"explain": True}, {"explain": "shap"}, {"explain": {"classes": "all"}}],
    ids=repr,
)
def test_every_predict_answer_is_one_the_document_describes(
    handler: Any, local_store: Any, trained_loans: Any, options: dict[str, Any]
) -> None:
    publish_model(local_store, trained_loans, name="loans")
    invoke = handler(local_store, name="loans")
    served = invoke(get("/openapi.json")).body
    answers = served["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    row = {"region": "north-west", "income": 51000.5, "employment": None, "cylinders": 6, "owner": True}
    body = {"instances": [row, row], **options}
    reply = invoke(front_door_event("rest", "POST", "/predict", {"Content-Type": JSON}, json.dumps(body).encode()))
    assert reply.status == 200, reply.body
    jsonschema.validate(reply.body, answers)


def test_a_regressors_explained_answer_is_one_the_document_describes(
    handler: Any, local_store: Any, trained_diabetes: Any
) -> None:
    publish_model(local_store, trained_diabetes, name="diabetes")
    invoke = handler(local_store, name="diabetes")
    answers = invoke(get("/openapi.json")).body["paths"]["/predict"]["post"]["responses"]["200"]
    rows = trained_diabetes.data.X[:2].tolist()
    body = json.dumps({"instances": rows, "explain": True}).encode()
    reply = invoke(front_door_event("rest", "POST", "/predict", {"Content-Type": JSON}, body))
    assert reply.status == 200 and "explanations" in reply.body, reply.body
    jsonschema.validate(reply.body, answers["content"]["application/json"]["schema"])
