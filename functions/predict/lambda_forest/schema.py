"""The HTTP API's request and response shapes (shared/DESIGN.md section 3), free of any event format."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from lambda_forest.artifact import Prediction
from lambda_forest.errors import (
    InvalidInstances,
    InvalidJson,
    InvalidRequest,
    LambdaForestError,
    TooManyInstances,
)
from lambda_forest.manifest import Manifest

REQUEST_KEYS = ("instances", "probabilities")
_NUMBER_TYPES = frozenset((int, float))


@dataclass(frozen=True)
class PredictRequest:
    instances: list[Any]
    probabilities: bool = True


def parse_predict_body(body: str | bytes | None, max_rows: int) -> PredictRequest:
    """Check the request envelope; the rows themselves are checked against a model's features later."""
    if body is None or (isinstance(body, str | bytes) and not body.strip()):
        raise InvalidJson('The request body is empty; expected a JSON object like {"instances": [[...]]}.')
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidJson(f"The request body is not valid JSON: {error}.") from None
    if not isinstance(payload, dict):
        raise InvalidRequest(
            f'The request body is a JSON {_json_type(payload)}; expected an object like {{"instances": [[...]]}}.'
        )
    unknown = sorted(set(payload) - set(REQUEST_KEYS))
    if unknown:
        raise InvalidRequest(
            f"Unknown key(s) {', '.join(map(_quote, unknown[:5]))}; expected only 'instances' and 'probabilities'."
        )
    if "instances" not in payload:
        raise InvalidRequest("The request has no 'instances'; expected a non-empty list of rows.")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidRequest(f"'instances' is a JSON {_json_type(instances)}; expected a non-empty list of rows.")
    if not instances:
        raise InvalidRequest("'instances' is empty; expected at least one row.")
    if len(instances) > max_rows:
        raise TooManyInstances(f"'instances' has {len(instances)} rows; at most {max_rows} are accepted per request.")
    probabilities = payload.get("probabilities", True)
    if not isinstance(probabilities, bool):
        raise InvalidRequest(f"'probabilities' is a JSON {_json_type(probabilities)}; expected true or false.")
    return PredictRequest(instances, probabilities)


def rows_to_matrix(instances: list[Any], feature_names: list[str]) -> np.ndarray:
    """Turn validated rows (lists in feature order, or objects by feature name) into a float64 matrix."""
    width = len(feature_names)
    positions = {name: index for index, name in enumerate(feature_names)}
    matrix = np.empty((len(instances), width), dtype=np.float64)
    for index, row in enumerate(instances):
        if isinstance(row, list):
            if len(row) != width:
                raise InvalidInstances(
                    f"instances[{index}] has {len(row)} values; expected {width} ({_names(feature_names)})."
                )
            values = row
        elif isinstance(row, dict):
            values = _ordered(row, index, positions, feature_names)
        else:
            raise InvalidInstances(
                f"instances[{index}] is a JSON {_json_type(row)}; expected a list of {width} numbers "
                "or an object mapping each feature name to a number."
            )
        if not set(map(type, values)) <= _NUMBER_TYPES:  # bool is not int here: type(), not isinstance()
            column = next(column for column, value in enumerate(values) if type(value) not in _NUMBER_TYPES)
            _refuse_value(index, feature_names[column], values[column])
        try:
            matrix[index] = values
        except OverflowError:  # an int beyond float64
            column = next(column for column, value in enumerate(values) if not _finite(value))
            _refuse_value(index, feature_names[column], values[column])
    if not np.isfinite(matrix).all():
        index, column = np.argwhere(~np.isfinite(matrix))[0]
        _refuse_value(int(index), feature_names[column], float(matrix[index, column]))
    return matrix


def _refuse_value(index: int, feature: str, value: Any) -> None:
    raise InvalidInstances(f"instances[{index}][{feature!r}] is {_describe(value)}; expected a finite number.")


def _ordered(row: dict[str, Any], index: int, positions: dict[str, int], feature_names: list[str]) -> list[Any]:
    unknown = [key for key in row if key not in positions]
    if unknown:
        raise InvalidInstances(
            f"instances[{index}] has unknown feature(s) {', '.join(map(_quote, unknown[:5]))}; "
            f"expected {_names(feature_names)}."
        )
    missing = [name for name in feature_names if name not in row]
    if missing:
        raise InvalidInstances(
            f"instances[{index}] is missing feature(s) {', '.join(map(repr, missing[:5]))}"
            f"{' and more' if len(missing) > 5 else ''}."
        )
    return [row[name] for name in feature_names]


def _quote(name: str, limit: int = 40) -> str:
    """A caller's key, quoted and cut short so a response never echoes a huge string back."""
    return repr(name if len(name) <= limit else name[:limit] + "...")


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _names(feature_names: list[str]) -> str:
    shown = ", ".join(feature_names[:8])
    return shown + (f", ... ({len(feature_names)} in all)" if len(feature_names) > 8 else "")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _describe(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "not finite"
    return f"a JSON {_json_type(value)}"


def predict_response(manifest: Manifest, result: Prediction) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"name": manifest.name, "version": manifest.version},
        "predictions": result.predictions,
    }
    if manifest.is_classifier:
        body["classes"] = manifest.classes
        if result.probabilities is not None:
            body["probabilities"] = result.probabilities
    return body


def health_response(model: dict[str, str] | None) -> dict[str, Any]:
    return {"status": "ok", "model": model}


def error_response(error: LambdaForestError, request_id: str | None) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message}, "request_id": request_id}
