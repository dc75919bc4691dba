"""The HTTP API's request and response shapes (shared/DESIGN.md section 3), free of any event format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from lambda_forest.artifact import Prediction
from lambda_forest.errors import InvalidJson, InvalidRequest, LambdaForestError, TooManyInstances
from lambda_forest.features import ValidatedRows, json_type, quote
from lambda_forest.manifest import Manifest

REQUEST_KEYS = ("instances", "probabilities")


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
            f'The request body is a JSON {json_type(payload)}; expected an object like {{"instances": [[...]]}}.'
        )
    unknown = sorted(set(payload) - set(REQUEST_KEYS))
    if unknown:
        raise InvalidRequest(
            f"Unknown key(s) {', '.join(map(quote, unknown[:5]))}; expected only 'instances' and 'probabilities'."
        )
    if "instances" not in payload:
        raise InvalidRequest("The request has no 'instances'; expected a non-empty list of rows.")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidRequest(f"'instances' is a JSON {json_type(instances)}; expected a non-empty list of rows.")
    if not instances:
        raise InvalidRequest("'instances' is empty; expected at least one row.")
    if len(instances) > max_rows:
        raise TooManyInstances(f"'instances' has {len(instances)} rows; at most {max_rows} are accepted per request.")
    probabilities = payload.get("probabilities", True)
    if not isinstance(probabilities, bool):
        raise InvalidRequest(f"'probabilities' is a JSON {json_type(probabilities)}; expected true or false.")
    return PredictRequest(instances, probabilities)


def predict_response(manifest: Manifest, result: Prediction, rows: ValidatedRows | None = None) -> dict[str, Any]:
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
    return body


def health_response(model: dict[str, str] | None) -> dict[str, Any]:
    return {"status": "ok", "model": model}


def error_response(error: LambdaForestError, request_id: str | None) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message}, "request_id": request_id}
