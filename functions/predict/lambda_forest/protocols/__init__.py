"""Protocol adapters: each turns its protocol's request into rows for THE validator
(`lambda_forest.features`) and a prediction into its protocol's answer, errors included.

- `lambda_forest.schema`: the native protocol (`/predict`), which also takes MLflow's bodies and CSV
- `mlflow`: MLflow's scoring bodies and answers (`/invocations`, SageMaker's path, and `/ping`)
- `csv_body`: `text/csv` bodies
- `kserve_v1`: KServe's V1 protocol (`/v1/models/NAME:predict`)
- `open_inference`: the Open Inference Protocol, KServe V2 (`/v2/...`)
- `shapes`: request shapes as data, checked here and published as the OpenAPI document
"""

from __future__ import annotations

from typing import Any

from lambda_forest.errors import LambdaForestError, ModelNotFound

MLFLOW_PATHS = ("/invocations", "/ping")


def error_body(path: str, error: LambdaForestError, request_id: str | None) -> dict[str, Any]:
    """An error in the style of the protocol that `path` belongs to."""
    if path.startswith(("/v2/", "/v1/models")) or path == "/v2":
        return {"error": error.message}  # KServe V1 and the Open Inference Protocol
    if path.rstrip("/") in MLFLOW_PATHS:
        from lambda_forest.protocols import mlflow

        return mlflow.error_body(error, request_id)
    from lambda_forest.schema import error_response

    return error_response(error, request_id)


def check_model_name(name: str, served: str) -> None:
    """A path that names another model is a 404 that names the served one."""
    if name != served:
        raise ModelNotFound(f"No model {name!r} is served here; this endpoint serves {served!r}.")
