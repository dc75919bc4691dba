"""The OpenAPI 3.1 document of every route, made from the request shapes that check the requests
(`lambda_forest.protocols.shapes` data in `lambda_forest.schema` and the protocol adapters): nothing about
a request is written twice. With a model, its feature schema (names, types, categories) takes the place
of the generic rows; without one, the document is the generic form committed as `openapi.json`.

    python -m lambda_forest.openapi > openapi.json      # the generic form
"""

from __future__ import annotations

import copy
import json
import math
import sys
from typing import Any

from lambda_forest.features import FeatureSchema, category_text
from lambda_forest.manifest import Manifest
from lambda_forest.protocols import kserve_v1, mlflow, open_inference
from lambda_forest.protocols.shapes import MAX_ROWS_MARK, MODEL_MARK, POSITIONAL_ROW, ROW, ROWS_MARK, obj
from lambda_forest.schema import FEEDBACK_REQUEST, PREDICT_REQUEST

FLOAT32_MAX = 3.4028234663852886e38
JSON = "application/json"
CSV = "text/csv"

NATIVE_ERROR = obj(
    {
        "error": obj({"code": {"type": "string"}, "message": {"type": "string"}}, required=("code", "message")),
        "request_id": {"type": ["string", "null"]},
    },
    required=("error", "request_id"),
)
# A contribution (or bias): a number, or one per class (`"classes": "all"`).
CONTRIBUTION = {"type": ["number", "array"], "items": {"type": "number"}}
PREDICT_RESPONSE = obj(
    {
        "model": obj({"name": {"type": "string"}, "version": {"type": "string"}}, required=("name", "version")),
        "predictions": {"type": "array", "description": "one per row: a class label, or a number for a regressor"},
        "classes": {"type": "array", "description": "classifiers: the labels, in probabilities' column order"},
        "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "warnings": {
            "type": "array",
            "items": obj(
                {
                    "row": {"type": ["integer", "null"]},
                    "feature": {"type": ["string", "null"]},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
                required=("row", "feature", "code", "message"),
            ),
        },
        "explanations": {
            "type": "array",
            "description": "when asked (`explain`): one per row, each feature's contribution to the predicted "
            "class's probability (or the value); with `classes: all`, lists aligned with `classes`",
            "items": obj(
                {
                    "class": {"description": "classifiers: the class explained (the predicted one)"},
                    "bias": CONTRIBUTION,
                    "contributions": {"type": "object", "additionalProperties": CONTRIBUTION},
                },
                required=("bias", "contributions"),
            ),
        },
        "request_id": {"type": ["string", "null"]},
    },
    required=("model", "predictions"),
)
HEALTH_RESPONSE = obj(
    {
        "status": {"type": "string", "enum": ["ok"]},
        "model": {
            "oneOf": [
                obj({"name": {"type": "string"}, "version": {"type": "string"}}, required=("name", "version")),
                {"type": "null"},
            ]
        },
    },
    required=("status", "model"),
)
MODEL_RESPONSE = {
    "type": "object",
    "required": ["name", "version", "task", "feature_names", "features"],
    "description": "the manifest's public fields",
}
ANY_OBJECT = {"type": "object"}
FEEDBACK_RESPONSE = obj(
    {"accepted": {"type": "integer"}, "request_id": {"type": ["string", "null"]}}, required=("accepted", "request_id")
)

# Per protocol: the error body, and the statuses its routes may answer besides 200.
ERRORS = {
    "native": ("NativeError", NATIVE_ERROR),
    "mlflow": ("MlflowError", mlflow.ERROR_RESPONSE),
    "kserve_v1": ("KServeV1Error", kserve_v1.ERROR_RESPONSE),
    "open_inference": ("OpenInferenceError", open_inference.ERROR_RESPONSE),
}
READ_ERRORS = (404, 405, 500, 503)
PREDICT_ERRORS = (400, 404, 405, 413, 500, 503)
STATUS_TEXT = {
    400: "the request is malformed; the message says what was wrong and what was expected",
    404: "no such route, or the path names a model or version that is not served",
    405: "the route takes another method (see Allow)",
    413: "more rows than MAX_BATCH_ROWS",
    500: "an unexpected error, logged with the request id",
    503: "the model cannot be served now (see Retry-After)",
}

CSV_BODY = {
    "type": "string",
    "description": "one row per line; an optional header line naming every feature (in any order); "
    "without one, the columns are in feature_names order",
}

# Every route: (method, path, protocol, summary, request bodies by media type, 200 response shape, errors).
OPERATIONS: list[tuple[str, str, str, str, dict[str, Any] | None, dict[str, Any], tuple[int, ...]]] = [
    (
        "post",
        "/predict",
        "native",
        "Predict: instances, MLflow bodies or CSV; answers predictions, classes and probabilities",
        {JSON: PREDICT_REQUEST, CSV: CSV_BODY},
        PREDICT_RESPONSE,
        PREDICT_ERRORS,
    ),
    (
        "post",
        "/feedback",
        "native",
        "Ground truth for predicted rows (by their ids)",
        {JSON: FEEDBACK_REQUEST},
        FEEDBACK_RESPONSE,
        PREDICT_ERRORS,
    ),
    ("get", "/model", "native", "The served model's public manifest", None, MODEL_RESPONSE, READ_ERRORS),
    ("get", "/health", "native", "Health (never loads the model)", None, HEALTH_RESPONSE, READ_ERRORS),
    ("get", "/ping", "mlflow", "SageMaker's health check (never loads the model)", None, HEALTH_RESPONSE, READ_ERRORS),
    (
        "post",
        "/invocations",
        "mlflow",
        "MLflow's scoring protocol (SageMaker's path): predictions only",
        {JSON: mlflow.INVOCATIONS_REQUEST, CSV: CSV_BODY},
        mlflow.INVOCATIONS_RESPONSE,
        PREDICT_ERRORS,
    ),
    ("get", "/v1/models", "kserve_v1", "KServe V1: the served models", None, kserve_v1.MODELS_RESPONSE, READ_ERRORS),
    (
        "get",
        "/v1/models/{name}",
        "kserve_v1",
        "KServe V1: a model's readiness (loads it)",
        None,
        kserve_v1.MODEL_RESPONSE,
        READ_ERRORS,
    ),
    (
        "post",
        "/v1/models/{name}:predict",
        "kserve_v1",
        "KServe V1: predictions",
        {JSON: kserve_v1.PREDICT_REQUEST},
        kserve_v1.PREDICT_RESPONSE,
        PREDICT_ERRORS,
    ),
    (
        "get",
        "/v2",
        "open_inference",
        "Open Inference Protocol: server metadata",
        None,
        open_inference.SERVER_METADATA,
        READ_ERRORS,
    ),
    (
        "get",
        "/v2/health/live",
        "open_inference",
        "Open Inference Protocol: liveness",
        None,
        open_inference.LIVE,
        READ_ERRORS,
    ),
    (
        "get",
        "/v2/health/ready",
        "open_inference",
        "Open Inference Protocol: readiness (loads the model)",
        None,
        open_inference.READY,
        READ_ERRORS,
    ),
    (
        "get",
        "/v2/models/{name}",
        "open_inference",
        "Open Inference Protocol: model metadata",
        None,
        open_inference.MODEL_METADATA,
        READ_ERRORS,
    ),
    (
        "get",
        "/v2/models/{name}/versions/{version}",
        "open_inference",
        "Open Inference Protocol: model metadata",
        None,
        open_inference.MODEL_METADATA,
        READ_ERRORS,
    ),
    (
        "get",
        "/v2/models/{name}/ready",
        "open_inference",
        "Open Inference Protocol: model readiness",
        None,
        open_inference.MODEL_READY,
        READ_ERRORS,
    ),
    (
        "get",
        "/v2/models/{name}/versions/{version}/ready",
        "open_inference",
        "Open Inference Protocol: model readiness",
        None,
        open_inference.MODEL_READY,
        READ_ERRORS,
    ),
    (
        "post",
        "/v2/models/{name}/infer",
        "open_inference",
        "Open Inference Protocol: inference",
        {JSON: open_inference.INFER_REQUEST},
        open_inference.INFER_RESPONSE,
        PREDICT_ERRORS,
    ),
    (
        "post",
        "/v2/models/{name}/versions/{version}/infer",
        "open_inference",
        "Open Inference Protocol: inference",
        {JSON: open_inference.INFER_REQUEST},
        open_inference.INFER_RESPONSE,
        PREDICT_ERRORS,
    ),
    (
        "get",
        "/openapi.json",
        "native",
        "This document, with the served model's features filled in",
        None,
        ANY_OBJECT,
        READ_ERRORS,
    ),
]


def document(manifest: Manifest | None = None, max_rows: int = 10_000, model_name: str | None = None) -> dict:
    """The OpenAPI 3.1 document; with `manifest`, its features and names fill in the rows and paths."""
    schema = manifest.schema if manifest is not None else None
    name = manifest.name if manifest is not None else model_name
    served = {"name": name, "version": manifest.version if manifest is not None else None}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, protocol, summary, bodies, answer, errors in OPERATIONS:
        operation: dict[str, Any] = {
            "summary": summary,
            "operationId": _operation_id(method, path),
            "tags": [protocol],
            "responses": {"200": _json_response("success", answer)}
            | {str(status): _error_response(status, ERRORS[protocol][0]) for status in errors},
        }
        parameters = [_path_parameter(part[1:-1], served) for part in _segments(path) if part.startswith("{")]
        if parameters:
            operation["parameters"] = parameters
        if bodies:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    media: {"schema": _fill(shape, manifest, max_rows) if media == JSON else _csv(schema)}
                    for media, shape in bodies.items()
                },
            }
        paths.setdefault(path, {})[method] = operation
    title = f"lambda-forest: {manifest.name} {manifest.version}" if manifest is not None else "lambda-forest"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "0.1.0",
            "description": "Random-forest predictions on AWS Lambda: the native protocol, MLflow's scoring "
            "protocol, KServe V1 and the Open Inference Protocol (V2)."
            + ("" if manifest is not None else " Generic form: GET /openapi.json fills in the served model."),
        },
        "servers": [{"url": ".", "description": "where this document is served"}],
        "paths": paths,
        "components": {"schemas": {name: _fill(shape, None, 0) for name, shape in ERRORS.values()}},
    }


def _fill(shape: Any, manifest: Manifest | None, max_rows: int) -> Any:
    """A request shape as JSON Schema: rows become the model's row schema (and labels its classes), lists of
    rows take at most `max_rows`, private keywords go."""
    if isinstance(shape, list):
        return [_fill(item, manifest, max_rows) for item in shape]
    if not isinstance(shape, dict):
        return shape
    schema = manifest.schema if manifest is not None else None
    if ROWS_MARK in shape:
        row = ROW_SCHEMAS.get(shape[ROWS_MARK])
        return row(schema) if row else {}
    filled = {key: _fill(value, manifest, max_rows) for key, value in shape.items() if not key.startswith("x-")}
    if shape.get(MAX_ROWS_MARK):
        filled["maxItems"] = max_rows
    if shape.get(MODEL_MARK) == "label" and manifest is not None:
        filled = {"description": filled["description"]} | _label_schema(manifest)
    return filled


def _label_schema(manifest: Manifest) -> dict[str, Any]:
    """What `lambda_forest.schema.label_checker` takes: a regressor's number, or a class (by its text)."""
    if not manifest.is_classifier:
        return {"type": "number"}
    values: list[Any] = []
    for label in manifest.classes or []:
        text = category_text(label)
        values.append(text)
        if text in ("True", "False"):
            values.append(text == "True")
        else:
            try:
                number = float(text)
            except ValueError:
                continue
            if math.isfinite(number) and category_text(number) == text:
                values.append(int(number) if number.is_integer() else number)
    return {"enum": values}


def _row_schema(schema: FeatureSchema | None) -> dict[str, Any]:
    """One row: a list in feature_names order, or an object by feature name."""
    if schema is None:
        return {
            "oneOf": [{"type": "array"}, {"type": "object"}],
            "description": "a list of values in feature_names order, or an object mapping each feature name "
            "to its value (GET /model lists the features)",
        }
    cells = [_cell(feature) for feature in schema.features]
    return {
        "oneOf": [
            {
                "type": "array",
                "prefixItems": cells,
                "items": False,
                "minItems": schema.width,
                "description": f"values in this order: {', '.join(schema.names)}",
            },
            {
                "type": "object",
                "properties": dict(zip(schema.names, cells, strict=True)),
                "required": list(schema.names),
                "additionalProperties": False,
            },
        ]
    }


def _positional_row(schema: FeatureSchema | None) -> dict[str, Any]:
    """One row as a list in an order the request names (dataframe_split's columns): any feature's values."""
    row: dict[str, Any] = {"type": "array", "description": "values in `columns` order"}
    if schema is None:
        return row
    types = {kind for feature in schema.features for kind in _cell_types(feature)}
    cell: dict[str, Any] = {"type": [kind for kind in CELL_TYPES if kind in types]}
    if schema.is_numeric_only:
        cell |= {"minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    return row | {"minItems": schema.width, "maxItems": schema.width, "items": cell}


ROW_SCHEMAS = {ROW: _row_schema, POSITIONAL_ROW: _positional_row}
CELL_TYPES = ("string", "number", "boolean", "null")


def _cell_types(feature: Any) -> list[str]:
    """The JSON types the row validator takes for `feature` (lambda_forest.features)."""
    if feature.is_categorical:  # a number matches by its text, a boolean when "True"/"False" is a category
        booleans = {"True", "False"} & set(feature.categories)
        return ["string", "number", *(["boolean"] if booleans else []), "null"]
    return ["number", "null"] if feature.missing_allowed else ["number"]


def _cell(feature: Any) -> dict[str, Any]:
    if feature.is_categorical:
        return {
            "anyOf": [{"enum": list(feature.categories)}, {"type": _cell_types(feature)}],
            "description": f"{feature.name}: one of its categories (a number matches by its text); null is "
            "missing; any other value is an unknown category, treated as missing with a warning",
        }
    return {
        "type": _cell_types(feature),
        "minimum": -FLOAT32_MAX,
        "maximum": FLOAT32_MAX,
        "description": f"{feature.name}: a number" + ("; null is missing" if feature.missing_allowed else ""),
    }


def _csv(schema: FeatureSchema | None) -> dict[str, Any]:
    body = copy.deepcopy(CSV_BODY)
    if schema is not None:
        body["description"] += f": {', '.join(schema.names)}"
    return body


def _json_response(description: str, shape: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _fill(shape, None, 0)}}}


def _error_response(status: int, component: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": STATUS_TEXT[status],
        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{component}"}}},
    }
    header = {405: "Allow", 503: "Retry-After"}.get(status)
    if header:
        response["headers"] = {header: {"schema": {"type": "string"}}}
    return response


def _path_parameter(name: str, served: dict[str, str | None]) -> dict[str, Any]:
    """A path parameter; `name` (and `version`) are the served model's, so a client or a contract test
    reaches the routes behind them."""
    parameter: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
    if served.get(name):
        parameter["example"] = served[name]
        parameter["description"] = f"the served model's {name}: {served[name]}"
    return parameter


def _segments(path: str) -> list[str]:
    return [part.split(":", 1)[0] for part in path.split("/") if part]


def _operation_id(method: str, path: str) -> str:
    words = [part.strip("{}").replace(".", "_").replace(":", "_") for part in path.split("/") if part]
    return "_".join([method, *words]) or method


def main() -> None:
    json.dump(document(), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
