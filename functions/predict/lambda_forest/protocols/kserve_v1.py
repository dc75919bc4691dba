"""KServe's V1 inference protocol: `GET /v1/models`, `GET /v1/models/NAME` and
`POST /v1/models/NAME:predict` with `{"instances": [...]}` or `{"inputs": [...]}`, answered with
`{"predictions": [...]}`; errors are `{"error": "..."}`.
"""

from __future__ import annotations

from typing import Any

from lambda_forest.artifact import Prediction
from lambda_forest.errors import RouteNotFound
from lambda_forest.protocols.shapes import obj, rows
from lambda_forest.schema import PredictRequest, check_row_count

PREDICT_VERB = "predict"
PREDICT_REQUEST = {
    "oneOf": [
        obj(
            {"instances": rows("rows as lists in feature_names order or objects by feature name")},
            required=("instances",),
            title="KServe V1 instances",
        ),
        obj({"inputs": rows("rows, as in instances")}, required=("inputs",), title="KServe V1 inputs"),
    ]
}
PREDICT_RESPONSE = obj(
    {"predictions": {"type": "array", "description": "one prediction per row: a class label, or a number"}},
    required=("predictions",),
)
MODEL_RESPONSE = obj({"name": {"type": "string"}, "ready": {"type": "boolean"}}, required=("name", "ready"))
MODELS_RESPONSE = obj({"models": {"type": "array", "items": {"type": "string"}}}, required=("models",))
ERROR_RESPONSE = obj({"error": {"type": "string"}}, required=("error",))


def split_target(target: str) -> tuple[str, str]:
    """`iris:predict` -> ("iris", "predict"); a verb other than predict is no route."""
    name, _, verb = target.rpartition(":")
    if not name or verb != PREDICT_VERB:
        raise RouteNotFound(f"No route /v1/models/{target}; KServe V1 predictions go to /v1/models/NAME:predict.")
    return name, verb


def predict_request(payload: dict[str, Any], max_rows: int) -> PredictRequest:
    """The rows of a checked V1 body (KServe's V1 answers carry predictions only)."""
    key = "instances" if "instances" in payload else "inputs"
    check_row_count(len(payload[key]), max_rows, repr(key))
    return PredictRequest(payload[key], probabilities=False, row_label=lambda index: f"{key}[{index}]")


def predict_response(result: Prediction) -> dict[str, Any]:
    return {"predictions": result.predictions}
