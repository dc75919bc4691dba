"""The Open Inference Protocol (KServe V2, REST): health, server and model metadata, readiness and
`POST /v2/models/NAME[/versions/VERSION]/infer`.

An inference request carries either one tensor per feature, named by it (FP64 or another number type
for a numeric feature, BYTES for a categorical one; shape `[rows]` or `[rows, 1]`), or one tensor of
shape `[rows, features]` in `feature_names` order (numbers, or BYTES for any table). Tensor data may be
flat (row-major) or nested; `null` is a missing value; a number tensor holds numbers (text is BYTES).
BYTES cells are text, read by THE validator's text mode (`lambda_forest.features`). The answer has the
outputs asked for (all by default): `predict` (BYTES class labels, or FP64 values) and, for
classifiers, `predict_proba` (FP64, `[rows, classes]`, its `parameters.classes` naming the columns).
Errors are `{"error": "..."}`.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from lambda_forest.artifact import Prediction
from lambda_forest.errors import InvalidInstances, InvalidRequest, ModelNotFound
from lambda_forest.features import FeatureSchema, names_shown, quote
from lambda_forest.manifest import Manifest
from lambda_forest.protocols.shapes import ROWS_MARK, obj
from lambda_forest.schema import PredictRequest, check_row_count

SERVER = {"name": "lambda-forest", "version": "0.1.0", "extensions": []}
PREDICT, PREDICT_PROBA = "predict", "predict_proba"
NUMBER_TYPES = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64")
DATATYPES = ("BOOL", *NUMBER_TYPES, "BYTES")
NUMBER_CELLS = (int, float, type(None))  # what a number tensor's data may hold (null: a missing value)

PARAMETERS = {"type": "object", "description": "protocol parameters (accepted, not used)"}
TENSOR = obj(
    {
        "name": {"type": "string", "description": "a feature's name, or any name for one [rows, features] tensor"},
        "shape": {"type": "array", "minItems": 1, "items": {"type": "integer"}},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "parameters": PARAMETERS,
        "data": {"type": "array", "items": {ROWS_MARK: "tensor data"}, "description": "flat (row-major) or nested"},
    },
    required=("name", "shape", "datatype", "data"),
)
REQUESTED_OUTPUT = obj(
    {"name": {"type": "string", "enum": [PREDICT, PREDICT_PROBA]}, "parameters": PARAMETERS}, required=("name",)
)
INFER_REQUEST = obj(
    {
        "id": {"type": "string"},
        "parameters": PARAMETERS,
        "inputs": {"type": "array", "minItems": 1, "items": TENSOR},
        "outputs": {"type": "array", "items": REQUESTED_OUTPUT},
    },
    required=("inputs",),
)
OUTPUT_TENSOR = obj(
    {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
    required=("name", "datatype", "shape", "data"),
)
INFER_RESPONSE = obj(
    {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "outputs": {"type": "array", "items": OUTPUT_TENSOR},
    },
    required=("model_name", "outputs"),
)
METADATA_TENSOR = obj(
    {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "parameters": {"type": "object"},
    },
    required=("name", "datatype", "shape"),
)
MODEL_METADATA = obj(
    {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": METADATA_TENSOR},
        "outputs": {"type": "array", "items": METADATA_TENSOR},
    },
    required=("name", "platform", "inputs", "outputs"),
)
SERVER_METADATA = obj(
    {"name": {"type": "string"}, "version": {"type": "string"}, "extensions": {"type": "array"}},
    required=("name", "version", "extensions"),
)
LIVE = obj({"live": {"type": "boolean"}}, required=("live",))
READY = obj({"ready": {"type": "boolean"}}, required=("ready",))
MODEL_READY = obj({"name": {"type": "string"}, "ready": {"type": "boolean"}}, required=("name", "ready"))
ERROR_RESPONSE = obj({"error": {"type": "string"}}, required=("error",))


def check_version(version: str | None, manifest: Manifest) -> None:
    if version is not None and version != manifest.version:
        raise ModelNotFound(
            f"Version {version!r} of {manifest.name!r} is not served here; this endpoint serves {manifest.version!r}."
        )


def outputs_of(manifest: Manifest) -> list[str]:
    return [PREDICT, PREDICT_PROBA] if manifest.is_classifier else [PREDICT]


def requested_outputs(payload: dict[str, Any], manifest: Manifest) -> list[str]:
    """The outputs a checked request asks for (all the model has, when it names none)."""
    available = outputs_of(manifest)
    asked = [output["name"] for output in payload.get("outputs") or []] or available
    missing = [name for name in asked if name not in available]
    if missing:
        raise InvalidRequest(
            f"Output {missing[0]!r} is not one of this model's outputs ({', '.join(available)}); "
            f"{manifest.name!r} is a {'classifier' if manifest.is_classifier else 'regressor'}."
        )
    return list(dict.fromkeys(asked))


def predict_request(
    payload: dict[str, Any], schema: FeatureSchema, max_rows: int, probabilities: bool
) -> PredictRequest:
    """The rows of a checked inference request, in feature order."""
    tensors = payload["inputs"]
    if len(tensors) == 1 and tensors[0]["name"] not in schema.positions:
        tensor = tensors[0]
        data = _data(tensor, schema.names)
        rows_count = tensor["shape"][0]
        check_row_count(rows_count, max_rows, f"Tensor {quote(tensor['name'])}")
        width = schema.width
        instances = [data[index * width : (index + 1) * width] for index in range(rows_count)]
    else:
        columns = _feature_columns(tensors, schema, max_rows)
        instances = [list(values) for values in zip(*(columns[name] for name in schema.names), strict=True)]
    text = any(tensor["datatype"] == "BYTES" for tensor in tensors)
    return PredictRequest(instances, probabilities, text=text, row_label=lambda index: f"row {index}")


def _feature_columns(tensors: list[dict[str, Any]], schema: FeatureSchema, max_rows: int) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {}
    for tensor in tensors:
        name = tensor["name"]
        if name not in schema.positions:
            raise InvalidRequest(
                f"Tensor {quote(name)} is not a feature; expected one tensor per feature "
                f"({names_shown(schema.names)}) or one [rows, {schema.width}] tensor."
            )
        if name in columns:
            raise InvalidRequest(f"Tensor {quote(name)} is given twice; expected one tensor per feature.")
        columns[name] = _data(tensor, [name])
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise InvalidRequest(f"No tensor for feature(s) {', '.join(map(repr, missing[:5]))}; expected one per feature.")
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        shown = ", ".join(f"{quote(name)}: {len(values)}" for name, values in list(columns.items())[:5])
        raise InvalidRequest(f"The tensors have different numbers of rows ({shown}); expected one number.")
    check_row_count(lengths.pop(), max_rows, "The tensors")
    return columns


def _data(tensor: dict[str, Any], columns: list[str]) -> list[Any]:
    """A tensor's data, flat, after checking it against its shape and datatype (`columns`: the features
    its columns hold, one for a feature's own tensor)."""
    name, shape, datatype = quote(tensor["name"]), tensor["shape"], tensor["datatype"]
    expect_columns = len(columns)
    if datatype == "BOOL":
        raise InvalidRequest(f"Tensor {name} is BOOL; expected a number type (FP64...) or BYTES.")
    wanted = [-1, expect_columns] if expect_columns > 1 else "[rows] or [rows, 1]"
    if any(size < 0 for size in shape) or not (
        (len(shape) == 2 and shape[1] == expect_columns) or (expect_columns == 1 and len(shape) == 1)
    ):
        raise InvalidRequest(f"Tensor {name} has shape {shape}; expected {wanted}.")
    if not shape[0]:
        raise InvalidRequest(f"Tensor {name} has no rows; expected at least one.")
    data = _flatten(tensor["data"], name)
    if len(data) != math.prod(shape):
        raise InvalidRequest(f"Tensor {name} has {len(data)} values; its shape {shape} needs {math.prod(shape)}.")
    if datatype == "BYTES":
        bad = next((value for value in data if not isinstance(value, str | None)), None)
        if bad is not None:
            raise InvalidInstances(f"Tensor {name} is BYTES but holds {quote(bad)}; expected strings (or null).")
    else:
        bad_at = next((index for index, value in enumerate(data) if type(value) not in NUMBER_CELLS), None)
        if bad_at is not None:
            row, column = divmod(bad_at, expect_columns)
            cell = f"row {row}" if expect_columns == 1 else f"row {row}[{quote(columns[column])}]"
            raise InvalidInstances(
                f"Tensor {name} is {datatype}, but {cell} is {_json_text(data[bad_at])}; expected numbers or null "
                "(text goes in a BYTES tensor)."
            )
    return data


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode() if isinstance(value, bool) else quote(value)


def _flatten(data: list[Any], name: str) -> list[Any]:
    if not any(isinstance(value, list) for value in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            if isinstance(value, dict):
                raise InvalidRequest(f"Tensor {name} holds an object; expected numbers, strings or null.")
            flat.append(value)
        else:
            stack.pop()
    return flat


def predict_datatype(manifest: Manifest) -> str:
    if not manifest.is_classifier:
        return "FP64"
    classes = manifest.classes or []
    if all(isinstance(label, str) for label in classes):
        return "BYTES"
    return "INT64" if all(isinstance(label, int) and not isinstance(label, bool) for label in classes) else "FP64"


def infer_response(
    manifest: Manifest, result: Prediction, outputs: list[str], request_id: str | None
) -> dict[str, Any]:
    rows_count = len(result.predictions)
    body: dict[str, Any] = {"model_name": manifest.name, "model_version": manifest.version, "outputs": []}
    if request_id is not None:
        body["id"] = request_id
    for name in outputs:
        if name == PREDICT:
            tensor = {"name": PREDICT, "datatype": predict_datatype(manifest), "shape": [rows_count]}
            body["outputs"].append(tensor | {"data": result.predictions})
        else:
            probabilities = result.probabilities or []
            body["outputs"].append(
                {
                    "name": PREDICT_PROBA,
                    "datatype": "FP64",
                    "shape": [rows_count, len(manifest.classes or [])],
                    "parameters": {"classes": manifest.classes},
                    "data": [value for row in probabilities for value in row],
                }
            )
    return body


def model_metadata(manifest: Manifest) -> dict[str, Any]:
    inputs = []
    for feature in manifest.schema.features:
        tensor: dict[str, Any] = {
            "name": feature.name,
            "datatype": "BYTES" if feature.is_categorical else "FP64",
            "shape": [-1],
        }
        if feature.is_categorical:
            tensor["parameters"] = {"categories": list(feature.categories)}
        inputs.append(tensor)
    outputs: list[dict[str, Any]] = [{"name": PREDICT, "datatype": predict_datatype(manifest), "shape": [-1]}]
    if manifest.is_classifier:
        classes = manifest.classes or []
        outputs.append(
            {"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(classes)], "parameters": {"classes": classes}}
        )
    return {
        "name": manifest.name,
        "versions": [manifest.version],
        "platform": "scikit-learn",
        "inputs": inputs,
        "outputs": outputs,
    }
