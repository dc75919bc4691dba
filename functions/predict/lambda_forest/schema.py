"""The native HTTP API's request and response shapes (shared/DESIGN.md section 3), free of any event format.

Request shapes are data (`lambda_forest.protocols.shapes`): they check request envelopes here and become
the OpenAPI document (`lambda_forest.openapi`). The rows inside are checked by the model's feature schema.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from lambda_forest.artifact import Prediction
from lambda_forest.capture import MAX_ROW_ID_LENGTH
from lambda_forest.errors import (
    InvalidJson,
    InvalidLabels,
    InvalidRequest,
    LambdaForestError,
    RequestError,
    TooManyInstances,
    TooManyLabels,
)
from lambda_forest.explain import EXPLAIN_SHAPE, ExplainOptions
from lambda_forest.features import RowLabel, ValidatedRows, category_text, instances_row, json_type, quote
from lambda_forest.manifest import Manifest
from lambda_forest.protocols import mlflow
from lambda_forest.protocols.shapes import CHECKED_BY, ERROR_MARK, MAX_ROWS_MARK, MODEL_MARK, check, obj, rows

# A caller's row id (`ids` on /predict, `id` in a label): kept with captured rows, joined with ground truth.
ROW_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ROW_ID_LENGTH, "x-expected": "a non-empty string"}
FEEDBACK_EXAMPLE = '{"labels": [{"id": "...", "label": ...}]}'
# POST /feedback: checked here, then each label against the model (`label_checker`); the served document
# names the model's classes.
FEEDBACK_REQUEST = obj(
    {
        "labels": {
            "type": "array",
            "minItems": 1,
            "items": obj(
                {
                    "id": ROW_ID | {"description": "the row's id: the request's `ids`, or {request_id}:{row}"},
                    "label": {
                        "type": ["string", "number", "boolean"],
                        "description": "a classifier's class (a number matches by its text), a regressor's number",
                        "x-expected": "a class of this model, or a number for a regressor",
                        MODEL_MARK: "label",
                    },
                },
                required=("id", "label"),
                **{ERROR_MARK: InvalidLabels.code, "x-expected": "an object with exactly 'id' and 'label'"},
            ),
            "x-expected": 'a non-empty list of {"id": ..., "label": ...}',
            MAX_ROWS_MARK: True,
        }
    },
    required=("labels",),
    **{"x-expected": f"an object like {FEEDBACK_EXAMPLE}"},
)


# The options a /predict body may carry beside its rows, whatever form the rows come in.
PREDICT_OPTIONS: dict[str, Any] = {
    "probabilities": {
        "type": "boolean",
        "default": True,
        "description": "include classes and probabilities (classifiers); false leaves them out",
    },
    "ids": {
        "type": "array",
        "items": ROW_ID,
        "description": "your own row ids, one distinct string per row, kept with captured rows for ground truth",
        CHECKED_BY: "lambda_forest.schema._check_ids",
    },
    "explain": EXPLAIN_SHAPE,
}
INSTANCES_FORM = obj(
    {"instances": rows("rows as lists in feature_names order, or objects by feature name"), **PREDICT_OPTIONS},
    required=("instances",),
    title="instances",
)
# /predict takes the native body or any MLflow body, with the same options.
PREDICT_REQUEST = {"oneOf": [INSTANCES_FORM, *mlflow.request_forms(PREDICT_OPTIONS)]}
EXAMPLE = '{"instances": [[...]]}'


@dataclass(frozen=True)
class PredictRequest:
    """Rows for THE validator (lambda_forest.features), whatever protocol brought them, and the options."""

    instances: Sequence[Any]
    probabilities: bool = True
    text: bool = False  # cells are text (CSV, BYTES tensors): the validator parses them
    row_label: RowLabel = instances_row  # how messages name a row
    ids: list[str] | None = None  # the caller's row ids, kept with captured rows for ground truth
    explain: ExplainOptions | None = None  # explanations asked for (lambda_forest.explain)


def parse_json(body: str | bytes | None, example: str = EXAMPLE) -> Any:
    """The JSON value of a request body; InvalidJson says what was wrong (`example` shows what is expected)."""
    if body is None or (isinstance(body, str | bytes) and not body.strip()):
        raise InvalidJson(f"The request body is empty; expected a JSON object like {example}.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidJson(f"The request body is not valid JSON: {error}.") from None


def check_row_count(count: int, max_rows: int, what: str = "'instances'") -> None:
    if count > max_rows:
        raise TooManyInstances(f"{what} has {count} rows; at most {max_rows} are accepted per request.")


def parse_predict_body(body: str | bytes | None, max_rows: int) -> PredictRequest:
    """Check a /predict JSON body (native or MLflow); the rows themselves are checked against a model later."""
    payload = parse_json(body)
    form = check(payload, PREDICT_REQUEST)
    options = {key: payload[key] for key in PREDICT_OPTIONS if key in payload}
    if form is INSTANCES_FORM:
        instances, label = payload["instances"], instances_row
    else:
        instances, label = mlflow.rows_of(payload)
    check_row_count(len(instances), max_rows, "The request" if form is not INSTANCES_FORM else "'instances'")
    if "ids" in options:
        _check_ids(options["ids"], len(instances))
    if "explain" in options:
        options["explain"] = ExplainOptions.parse(options["explain"])
    return PredictRequest(instances, row_label=label, **options)


def parse_invocations_body(body: str | bytes | None, max_rows: int) -> PredictRequest:
    """Check an /invocations JSON body (MLflow's scoring protocol), which answers predictions only."""
    payload = parse_json(body)
    check(payload, mlflow.INVOCATIONS_REQUEST)
    instances, label = mlflow.rows_of(payload)
    check_row_count(len(instances), max_rows, "The request")
    return PredictRequest(instances, probabilities=False, row_label=label)


def _check_ids(ids: Any, rows: int) -> None:
    """`ids`: one distinct, non-empty string per row."""
    if not isinstance(ids, list) or len(ids) != rows:
        shape = f"a list of {len(ids)}" if isinstance(ids, list) else f"a JSON {json_type(ids)}"
        raise InvalidRequest(f"'ids' is {shape}; expected a list of {rows} strings, one per row.")
    first_seen: dict[str, int] = {}
    for index, row_id in enumerate(ids):
        check_row_id(row_id, f"ids[{index}]", InvalidRequest)
        if row_id in first_seen:
            raise InvalidRequest(
                f"ids[{index}] {quote(row_id)} repeats ids[{first_seen[row_id]}]; ids must be distinct."
            )
        first_seen[row_id] = index


def check_row_id(row_id: Any, where: str, error: type[RequestError] = InvalidLabels) -> None:
    check(row_id, ROW_ID, where, error)


def predict_response(
    manifest: Manifest,
    result: Prediction,
    rows: ValidatedRows | None = None,
    request_id: str | None = None,
    explanations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"name": manifest.name, "version": manifest.version},
        "predictions": result.predictions,
    }
    if manifest.is_classifier:
        body["classes"] = manifest.classes
        if result.probabilities is not None:
            body["probabilities"] = result.probabilities
    if rows is not None and rows.warnings:
        body["warnings"] = rows.warning_dicts()
    if explanations is not None:
        body["explanations"] = explanations
    body["request_id"] = request_id
    return body


def parse_feedback_body(body: str | bytes | None, manifest: Manifest, max_labels: int) -> list[tuple[str, Any]]:
    """`{"labels": [{"id": "...", "label": ...}]}` (FEEDBACK_REQUEST) checked against the model: (row id,
    label) pairs.

    A classifier's label must be one of its classes (a number matches a class by its text, as
    categories do) and is recorded as that class; a regressor's must be a finite number.
    """
    payload = parse_json(body, FEEDBACK_EXAMPLE)
    labels = payload.get("labels") if isinstance(payload, dict) else None
    if isinstance(labels, list) and len(labels) > max_labels:  # before looking at each entry
        raise TooManyLabels(f"'labels' has {len(labels)} entries; at most {max_labels} are accepted per request.")
    check(payload, FEEDBACK_REQUEST)
    known = label_checker(manifest)
    return [(entry["id"], known(entry["label"], f"'labels[{index}].label'")) for index, entry in enumerate(labels)]


def label_checker(manifest: Manifest) -> Callable[[Any, str], Any]:
    """`check(label, where)`: the label as recorded (a classifier's class, a regressor's number), or InvalidLabels."""
    if not manifest.is_classifier:

        def number(label: Any, where: str) -> float:
            if type(label) not in (int, float) or not math.isfinite(label):
                shown = "not finite" if type(label) in (int, float) else f"a JSON {json_type(label)}"
                raise InvalidLabels(f"{where} is {shown}; expected a finite number (a regression target).")
            return label

        return number
    classes = manifest.classes or []
    by_text = {category_text(value): value for value in classes}

    def known_class(label: Any, where: str) -> Any:
        if isinstance(label, str | int | float) and category_text(label) in by_text:  # a bool matches "True"
            return by_text[category_text(label)]
        shown = ", ".join(quote(str(value)) for value in classes[:10]) + (", ..." if len(classes) > 10 else "")
        raise InvalidLabels(f"{where} is {quote(str(label))}, not a class of this model; expected one of {shown}.")

    return known_class


def health_response(model: dict[str, str] | None) -> dict[str, Any]:
    return {"status": "ok", "model": model}


def error_response(error: LambdaForestError, request_id: str | None) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message}, "request_id": request_id}
