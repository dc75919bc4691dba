"""The predict function: one build behind any front door (API Gateway REST API, HTTP API, function URL).

Routes are written once on a Powertools `Router`; the resolver of each front door includes it, and the
handler picks the resolver from the event's shape. Routes are thin: the request shapes live in
`lambda_forest.schema`, loading in `lambda_forest.model_cache`, and every error is turned into a response
in `reply_with_error`.
"""

from __future__ import annotations

import functools
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    CORSConfig,
    LambdaFunctionUrlResolver,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver, Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_forest.artifact import Prediction
from lambda_forest.capture import Capturer
from lambda_forest.config import FunctionConfig
from lambda_forest.errors import (
    InvalidJson,
    LambdaForestError,
    MethodNotAllowed,
    ModelUnavailable,
    ResponseTooLarge,
    RouteNotFound,
)
from lambda_forest.explain import ExplainOptions
from lambda_forest.features import ValidatedRows
from lambda_forest.front_doors import FUNCTION_URL, HTTP_API, REST_API, front_door
from lambda_forest.manifest import Manifest
from lambda_forest.model_cache import LoadedModel, LoadPolicy, ModelCache, load_version
from lambda_forest.protocols import check_model_name, csv_body, error_body
from lambda_forest.protocols.shapes import check
from lambda_forest.schema import (
    PredictRequest,
    health_response,
    parse_feedback_body,
    parse_invocations_body,
    parse_json,
    parse_predict_body,
    predict_response,
)
from lambda_forest.signing import KmsVerifier
from lambda_forest.store import ModelStore, open_store

RESOLVERS: dict[str, type[ApiGatewayResolver]] = {
    REST_API: APIGatewayRestResolver,
    HTTP_API: APIGatewayHttpResolver,
    FUNCTION_URL: LambdaFunctionUrlResolver,
}
# Response headers a browser script may read on a cross-origin call (Powertools already allows the request
# headers a caller needs: Content-Type, Authorization, X-Api-Key and SigV4's X-Amz-Date and X-Amz-Security-Token).
CORS_EXPOSE_HEADERS = ["Retry-After", "Allow"]
CORS_MAX_AGE_SECONDS = 600

# Requests that fail early publish only their error metric, flushed on its own; that is expected.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger()
metrics = Metrics()
tracer = Tracer()
router = Router()
ROUTES: list[tuple[re.Pattern[str], str, str]] = []  # (path pattern, method, rule): for 405 answers and 404s


def route[F: Callable[..., Any]](method: str, rule: str) -> Callable[[F], F]:
    """Register a route on the shared router: every front door serves it (`<name>` is a path segment)."""
    ROUTES.append((re.compile("^" + re.sub(r"<\w+>", "[^/]+", rule) + "$"), method, rule))
    return router.route(rule, method)


def record_load(loaded: LoadedModel) -> None:
    metrics.add_metric(name="ModelLoadTime", unit=MetricUnit.Milliseconds, value=loaded.load_seconds * 1000)
    walk = getattr(loaded.predictor, "walk", "scikit-learn")  # a compiled forest's walk: native or numpy
    logger.info(
        "model loaded",
        extra={"model": loaded.identity, "load_ms": round(loaded.load_seconds * 1000, 1), "walk": walk},
    )
    if native_unavailable := getattr(loaded.predictor, "native_unavailable", None):
        metrics.add_metric(name="NativeWalkUnavailable", unit=MetricUnit.Count, value=1)
        logger.warning(
            "the native walker could not be loaded; the numpy walk serves", extra={"reason": native_unavailable}
        )


def record_refresh_failure(error: Exception) -> None:
    metrics.add_metric(name="ModelRefreshFailures", unit=MetricUnit.Count, value=1)
    logger.warning("model refresh failed", extra={"reason": type(error).__name__, "detail": str(error)})


def build_model_cache(config: FunctionConfig, store_opener: Callable[[str], ModelStore] = open_store) -> ModelCache:
    return ModelCache(
        lambda: store_opener(config.model_store),
        config.model_name,
        version=config.model_version,
        alias=config.model_alias,
        refresh_seconds=config.refresh_seconds,
        policy=LoadPolicy(
            allow_pickle=config.allow_pickle,
            verifier=KmsVerifier(config.signing_key) if config.signing_key else None,
        ),
        loader=tracer.capture_method(load_version, capture_response=False),
        on_load=record_load,
        on_refresh_failure=record_refresh_failure,
    )


def record_capture_failure(error: Exception) -> None:
    metrics.add_metric(name="CaptureFailures", unit=MetricUnit.Count, value=1)
    logger.warning("prediction not captured", extra={"reason": type(error).__name__, "detail": str(error)})


def build_capturer(config: FunctionConfig) -> Capturer:
    return Capturer(config.capture_sample_rate, config.capture_max_rows, on_failure=record_capture_failure)


# Read once per execution environment; a missing required setting fails the init loudly.
config = FunctionConfig.from_env()
models = build_model_cache(config)
capturer = build_capturer(config)


def load_before_snapshot() -> None:
    """SnapStart: load the model during the deployment's init, so restored instances start warm."""
    try:
        models.preload()
    except LambdaForestError as error:
        logger.warning("no model loaded before the snapshot", extra={"detail": str(error)})


def recheck_after_restore() -> None:
    """SnapStart: a snapshot may be old; re-check the alias on the next request."""
    models.expire()


try:  # the Lambda runtime provides snapshot_restore_py (Python 3.12+); without SnapStart the hooks never run
    from snapshot_restore_py import register_after_restore, register_before_snapshot

    register_before_snapshot(load_before_snapshot)
    register_after_restore(recheck_after_restore)
except ImportError:
    pass


@dataclass(frozen=True)
class Served:
    """A prediction and what it was made from, for a protocol to answer with."""

    manifest: Manifest
    rows: ValidatedRows
    result: Prediction
    explanations: list[dict[str, Any]] | None = None  # when the request asked for them


def serve(request: PredictRequest) -> Served:
    """Every protocol's prediction: THE validator on the request's rows, then the forest."""
    model = models.get()
    rows = model.manifest.schema.validate(request.instances, text=request.text, row_label=request.row_label)
    record_row_quality(rows)
    if request.explain is None:
        return Served(model.manifest, rows, run_prediction(model, rows.matrix, request.probabilities))
    model.explainer.check_budget(request.explain, len(rows.matrix), config.explain_seconds)
    result, explanations = run_explained_prediction(model, rows.matrix, request.probabilities, request.explain)
    return Served(model.manifest, rows, result, explanations)


def predict_request(
    max_rows: int, parse_json_body: Callable[[str | None, int], PredictRequest] = parse_predict_body
) -> PredictRequest:
    """The rows of a /predict or /invocations body: CSV, or JSON read by `parse_json_body`."""
    if csv_body.is_csv(content_type()):
        return csv_body.parse(request_body(), models.get().manifest.feature_names, max_rows)
    return parse_json_body(request_body(), max_rows)


# The native protocol, which also takes MLflow's bodies and CSV; the health checks.


@route("POST", "/predict")
def predict() -> Response:
    request = predict_request(config.max_batch_rows)
    served = serve(request)
    response = json_within_lambda_limit(
        predict_response(served.manifest, served.result, served.rows, request_id(), served.explanations),
        len(served.rows.matrix),
    )
    capture_prediction(request, served)
    return response


def capture_prediction(request: PredictRequest, served: Served) -> None:
    """Record a sampled request of any protocol for monitoring (shared/DESIGN.md section 6), in /predict's
    shape (predictions, probabilities, warnings, request_id); never fails or slows the answer."""
    if capturer.sampled():
        body = predict_response(served.manifest, served.result, served.rows, request_id())
        capturer.capture(
            request_id=body.get("request_id") or request_id(),
            response=body,
            features=served.manifest.feature_names,
            instances=request.instances,
            ids=request.ids,
            alias=None if config.model_version else config.model_alias,
            read_rows=functools.partial(served.manifest.schema.values_read, served.rows, request.instances)
            if request.text
            else None,
        )


@route("POST", "/feedback")
def feedback() -> dict[str, Any]:
    """Ground truth for predicted rows, recorded as label lines (shared/DESIGN.md section 6)."""
    labels = parse_feedback_body(request_body(), models.get().manifest, config.max_batch_rows)
    return {"accepted": capturer.record_labels(labels, request_id()), "request_id": request_id()}


# Lambda refuses a synchronous response over 6 MB, and API Gateway then answers a bare 502; the headers,
# status and the escaping of the body inside the response JSON take part of it.
LAMBDA_RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024
RESPONSE_ENVELOPE_BYTES = 2048


def json_within_lambda_limit(body: dict[str, Any], rows: int) -> Response:
    """`body` as a JSON response, or a 413 that says how many rows would fit when it is too large for Lambda."""
    text = orjson.dumps(body)
    size = len(text) + RESPONSE_ENVELOPE_BYTES
    if size > LAMBDA_RESPONSE_LIMIT_BYTES // 2:
        size = len(orjson.dumps(text.decode())) + RESPONSE_ENVELOPE_BYTES  # as a string in the response JSON
    if size > LAMBDA_RESPONSE_LIMIT_BYTES:
        fit = max(1, int(rows * (LAMBDA_RESPONSE_LIMIT_BYTES - RESPONSE_ENVELOPE_BYTES) / size))
        smaller = ' or "probabilities": false' if "probabilities" in body else ""
        if "explanations" in body:
            smaller += ' or without "explain"' if "probabilities" not in body else ', without "explain"'
        raise ResponseTooLarge(
            f"The answer to {rows} rows would be {size / 1e6:.1f} MB, over Lambda's 6 MB response limit; "
            f"send at most {fit} rows per request{smaller}."
        )
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=text.decode())


@route("GET", "/model")
def describe_model() -> dict[str, Any]:
    model = models.get()
    return {**model.manifest.public(), "explanations": model.explainer.describe()}


@route("GET", "/health")
@route("GET", "/ping")  # SageMaker's health check
def health() -> dict[str, Any]:
    current = models.current
    return health_response(current.identity if current else None)


# MLflow's scoring protocol on SageMaker's path.


@route("POST", "/invocations")
def invocations() -> Response:
    request = predict_request(config.max_batch_rows, parse_invocations_body)
    request = replace(request, probabilities=False)
    served = serve(request)
    response = json_within_lambda_limit({"predictions": served.result.predictions}, len(served.rows.matrix))
    capture_prediction(request, served)
    return response


# KServe's V1 protocol (imported on first use: most functions never see it).


@route("GET", "/v1/models")
def v1_models() -> dict[str, Any]:
    return {"models": [config.model_name]}


@route("GET", "/v1/models/<name>")
def v1_model(name: str) -> dict[str, Any]:
    if ":" in name:  # GET on a verb's path (model names have no colon): POST /v1/models/NAME:predict
        from lambda_forest.protocols import kserve_v1

        kserve_v1.split_target(name)
        raise MethodNotAllowed(f"GET is not allowed on /v1/models/{name}; use POST.", allowed=["POST"])
    check_model_name(name, config.model_name)
    models.get()
    return {"name": name, "ready": True}


@route("POST", "/v1/models/<target>")
def v1_predict(target: str) -> Response:
    from lambda_forest.protocols import kserve_v1

    name, _ = kserve_v1.split_target(target)
    check_model_name(name, config.model_name)
    payload = parse_json(request_body(), '{"instances": [[...]]}')
    check(payload, kserve_v1.PREDICT_REQUEST)
    request = kserve_v1.predict_request(payload, config.max_batch_rows)
    served = serve(request)
    response = json_within_lambda_limit(kserve_v1.predict_response(served.result), len(served.rows.matrix))
    capture_prediction(request, served)
    return response


# The Open Inference Protocol (KServe V2), imported on first use.


@route("GET", "/v2")
def v2_server() -> dict[str, Any]:
    from lambda_forest.protocols import open_inference

    return open_inference.SERVER


@route("GET", "/v2/health/live")
def v2_live() -> dict[str, Any]:
    return {"live": True}


@route("GET", "/v2/health/ready")
def v2_ready() -> dict[str, Any]:
    models.get()  # ready when the model loads; a 503 says why not
    return {"ready": True}


@route("GET", "/v2/models/<name>")
@route("GET", "/v2/models/<name>/versions/<version>")
def v2_model(name: str, version: str | None = None) -> dict[str, Any]:
    from lambda_forest.protocols import open_inference

    manifest = v2_manifest(name, version)
    return open_inference.model_metadata(manifest)


@route("GET", "/v2/models/<name>/ready")
@route("GET", "/v2/models/<name>/versions/<version>/ready")
def v2_model_ready(name: str, version: str | None = None) -> dict[str, Any]:
    v2_manifest(name, version)
    return {"name": name, "ready": True}


@route("POST", "/v2/models/<name>/infer")
@route("POST", "/v2/models/<name>/versions/<version>/infer")
def v2_infer(name: str, version: str | None = None) -> Response:
    from lambda_forest.protocols import open_inference

    manifest = v2_manifest(name, version)
    payload = parse_json(request_body(), '{"inputs": [{"name": ..., "shape": ..., "datatype": ..., "data": ...}]}')
    check(payload, open_inference.INFER_REQUEST)
    outputs = open_inference.requested_outputs(payload, manifest)
    request = open_inference.predict_request(
        payload, manifest.schema, config.max_batch_rows, probabilities=open_inference.PREDICT_PROBA in outputs
    )
    served = serve(request)
    answer = open_inference.infer_response(served.manifest, served.result, outputs, payload.get("id"))
    response = json_within_lambda_limit(answer, len(served.rows.matrix))
    capture_prediction(request, served)
    return response


@route("GET", "/openapi.json")
def openapi_document() -> dict[str, Any]:
    """Every route, with the served model's features filled in (the generic form when it cannot load)."""
    from lambda_forest import openapi

    try:
        manifest = models.get().manifest
    except ModelUnavailable:
        manifest = None
    return openapi.document(manifest, max_rows=config.max_batch_rows, model_name=config.model_name)


def v2_manifest(name: str, version: str | None) -> Manifest:
    """The served model's manifest, when the path names it (and its version, if it names one)."""
    from lambda_forest.protocols import open_inference

    check_model_name(name, config.model_name)
    manifest = models.get().manifest
    open_inference.check_version(version, manifest)
    return manifest


@tracer.capture_method(capture_response=False)
def run_prediction(model: LoadedModel, rows: Any, with_probabilities: bool) -> Prediction:
    started = time.perf_counter()
    result = model.predictor.predict(rows, with_probabilities)
    metrics.add_metric(
        name="PredictionLatency", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
    )
    metrics.add_metric(name="RowsPerRequest", unit=MetricUnit.Count, value=len(rows))
    return result


@tracer.capture_method(capture_response=False)
def run_explained_prediction(
    model: LoadedModel, rows: Any, with_probabilities: bool, options: ExplainOptions
) -> tuple[Prediction, list[dict[str, Any]]]:
    started = time.perf_counter()
    result, explained = model.explainer.predict_and_explain(model.predictor, rows, with_probabilities, options)
    explanations = model.explainer.to_json(explained, result.predictions)
    elapsed_ms = (time.perf_counter() - started) * 1000
    with single_metric(
        name="ExplanationLatency", unit=MetricUnit.Milliseconds, value=elapsed_ms, namespace=metrics.namespace
    ) as metric:
        metric.add_dimension(name="method", value=options.method)
    metrics.add_metric(name="RowsPerRequest", unit=MetricUnit.Count, value=len(rows))
    return result, explanations


def record_row_quality(rows: ValidatedRows) -> None:
    """Missing values and unknown categories, for requests that have any (a zero adds nothing to a sum and
    costs a clean request's time); by feature in the log (a metric per feature costs)."""
    if rows.missing or rows.unknown_categories:
        metrics.add_metric(name="MissingValues", unit=MetricUnit.Count, value=rows.missing_total)
        metrics.add_metric(name="UnknownCategories", unit=MetricUnit.Count, value=rows.unknown_total)
        logger.info("rows with gaps", extra={"missing": rows.missing, "unknown_categories": rows.unknown_categories})


def content_type() -> str | None:
    """The request's Content-Type (looked up in the raw headers: cheaper than a case-insensitive copy)."""
    headers = router.current_event.raw_event.get("headers") or {}
    found = headers.get("content-type") or headers.get("Content-Type")
    return found or next((value for key, value in headers.items() if key.lower() == "content-type"), None)


def request_body() -> str | None:
    """The body as text; API Gateway base64-encodes binary media types."""
    try:
        return router.current_event.decoded_body
    except (ValueError, UnicodeDecodeError):
        raise InvalidJson("The request body could not be decoded; expected UTF-8 JSON.") from None


@router.exception_handler(NotFoundError)
def route_not_found(_: Exception) -> Response:
    event = router.current_event
    path = event.path.rstrip("/") or "/"
    allowed = list(dict.fromkeys(method for pattern, method, _ in ROUTES if pattern.match(path)))
    if allowed:
        message = f"{event.http_method} is not allowed on {event.path}; use {', '.join(allowed)}."
        return reply_with_error(MethodNotAllowed(message, allowed=allowed))
    routes = ", ".join(f"{method} {rule}" for _, method, rule in ROUTES)
    return reply_with_error(RouteNotFound(f"No route {event.path}; the routes are {routes}."))


@router.exception_handler(LambdaForestError)
def known_error(error: LambdaForestError) -> Response:
    return reply_with_error(error)


@router.exception_handler(Exception)
def unexpected_error(error: Exception) -> Response:
    logger.exception("unexpected error")
    return reply_with_error(LambdaForestError("An unexpected error occurred; it was logged with the request id."))


def reply_with_error(error: LambdaForestError) -> Response:
    """The one place an error becomes a response: a JSON body with no internal detail."""
    with single_metric(name="Errors", unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as metric:
        metric.add_dimension(name="code", value=error.code)
    if error.status >= 500:
        logger.error("request failed", extra={"code": error.code, "reason": type(error).__name__, "detail": str(error)})
    else:
        logger.info("request refused", extra={"code": error.code, "error_message": error.message})
    headers: dict[str, str] = {}
    if isinstance(error, ModelUnavailable):
        headers["Retry-After"] = str(error.retry_after_seconds)
        # Why the model could not serve (IntegrityError, IncompatibleModel, StoreUnreachable...), for alarms.
        with single_metric(
            name="ModelUnavailable", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
        ) as metric:
            metric.add_dimension(name="reason", value=type(error).__name__)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allowed)
    return Response(
        status_code=error.status,
        content_type=content_types.APPLICATION_JSON,
        body=error_body(router.current_event.path, error, request_id()),
        headers=headers,
    )


def request_id() -> str | None:
    try:
        return router.current_event.request_context.request_id or router.lambda_context.aws_request_id
    except (AttributeError, KeyError):
        return None


@functools.cache
def resolver(door: str, cors_origins: tuple[str, ...]) -> ApiGatewayResolver:
    """The resolver of one front door, built on first use (after every route is registered)."""
    cors = (
        CORSConfig(
            allow_origin=cors_origins[0],
            extra_origins=list(cors_origins[1:]),
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=CORS_MAX_AGE_SECONDS,
        )
        if cors_origins
        else None
    )
    door_resolver = RESOLVERS[door](serializer=lambda body: orjson.dumps(body).decode(), cors=cors)
    door_resolver.include_router(router)
    return door_resolver


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The request id sits at requestContext.requestId in REST, HTTP API (2.0) and function URL events; read
    # directly, as a JMESPath correlation_id_path costs a tenth of a one-row request.
    logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
    door = front_door(event)
    response = resolver(door, config.cors_allow_origins).resolve(event, context)
    if config.cors_allow_origins and door == REST_API:
        vary_by_origin(response)
    return response


def vary_by_origin(response: dict[str, Any]) -> None:
    """Behind the REST API the function picks Access-Control-Allow-Origin from the caller's Origin (the HTTP
    API and function URLs answer CORS themselves), so every answer varies by it: a cache must not give one
    origin's answer, or a no-origin one, to another."""
    if "multiValueHeaders" in response:
        response["multiValueHeaders"]["Vary"] = ["Origin"]
    else:
        response.setdefault("headers", {})["Vary"] = "Origin"
