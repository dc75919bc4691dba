"""The BatchScore state machine's two functions, built with the predict function (same code, same layer).

    BatchPlan   plan_handler:  {"step": "plan" | "index" | "summarize", ...}  one invocation per run step
    ScoreChunk  chunk_handler: {"step": "scan" | "score", ...}                one invocation per Map item

Each step is one call into `lambda_forest.batch`; the event shapes are the state machine's (template.yaml).
Errors keep their lambda-forest class name as the Lambda error type, which the state machine's Retry and
Catch match: `StoreUnreachable` (S3 throttling, timeouts) is retried, a bad input is not.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_forest import batch
from lambda_forest.chunks import ByteRange, Chunk
from lambda_forest.config import BatchConfig
from lambda_forest.errors import InvalidInput
from lambda_forest.model_cache import LoadPolicy
from lambda_forest.objects import OutputLocation, batch_s3_client, open_input, open_output, split_s3_uri
from lambda_forest.signing import KmsVerifier
from lambda_forest.store import ModelStore, open_store
from lambda_forest.table_files import format_of

logger = Logger()
metrics = Metrics()

config = BatchConfig.from_env()
# Made on first use and kept for the execution environment's life (a client costs about 0.1 s).
_store: ModelStore | None = None
_s3: Any = None
_policy: LoadPolicy | None = None


def load_policy() -> LoadPolicy:
    """The API's rules for what may be served: no pickle unless ALLOW_PICKLE, signatures when a key is set."""
    global _policy
    if _policy is None:
        verifier = KmsVerifier(config.signing_key) if config.signing_key else None
        _policy = LoadPolicy(allow_pickle=config.allow_pickle, verifier=verifier)
    return _policy


def model_store() -> ModelStore:
    global _store
    if _store is None:
        _store = open_store(config.model_store)
    return _store


def s3() -> Any:
    global _s3
    if _s3 is None:
        _s3 = batch_s3_client()
    return _s3


def within(uri: str, prefix: str, what: str) -> str:
    """Refuse, with a clear message, a location the functions' IAM role may not touch anyway."""
    if not uri.startswith("s3://"):
        raise InvalidInput(f"The {what} {uri!r} is not an S3 URI; the batch functions read and write S3.")
    if not (uri.rstrip("/") + "/").startswith(prefix.rstrip("/") + "/"):
        raise InvalidInput(f"The {what} {uri} is outside {prefix}, which is where this stack may {what.split()[0]}.")
    return uri


def output_of(event: dict[str, Any]) -> OutputLocation:
    return open_output(within(event["output"], config.output_prefix, "output prefix"), s3())


def run_of(output: OutputLocation) -> batch.Run:
    """The output's planned run, its input checked again: whoever can write the output prefix could
    otherwise point a run's later steps at any object the role may read."""
    planned = batch.read_run(output)
    within(planned.input, config.input_prefix, "input file")
    return planned


# BatchPlan


def plan_step(event: dict[str, Any]) -> dict[str, Any]:
    request = batch.ScoreRequest.from_event(event.get("request") or {})
    if request.model_name != config.model_name:
        raise InvalidInput(f"This stack scores model {config.model_name}, not {request.model_name}.")
    format_of(request.input, request.input_format)  # a format we cannot read is refused before any I/O
    source = open_input(within(request.input, config.input_prefix, "input file"), s3())
    output = open_output(within(request.output, config.output_prefix, "output prefix"), s3())
    run = batch.plan(request, model_store(), source, output, detect_format=format_of, policy=load_policy())
    bucket, prefix = split_s3_uri(output.uri)
    logger.info("planned", extra={"run": run.id, "input": run.input, "model_version": run.model_version})
    return {
        "output": output.uri,
        "bucket": bucket,
        "prefix": prefix,
        "ranges_key": f"{prefix}/{batch.RANGES_FILE}",
        "chunks_key": f"{prefix}/{batch.CHUNKS_FILE}",
        "run": run.id,
        "model": {"name": run.model_name, "version": run.model_version},
        "concurrency": request.concurrency or config.concurrency,
    }


def index_step(event: dict[str, Any]) -> dict[str, Any]:
    output = output_of(event)
    chunks = batch.index(run_of(output), output)
    return {"chunks": len(chunks), "rows": sum(chunk.rows for chunk in chunks)}


def summarize_step(event: dict[str, Any]) -> dict[str, Any]:
    output = output_of(event)
    run = run_of(output)
    failures = batch.map_failures(output, event.get("results"))
    summary = batch.summarize(run, output, started_at=event.get("started_at"), failures=failures)
    metrics.add_metric(name="BatchRows", unit=MetricUnit.Count, value=summary.rows)
    metrics.add_metric(name="BatchFailedChunks", unit=MetricUnit.Count, value=len(summary.failed_chunks))
    logger.info("summarized", extra={"run": run.id, "status": summary.status, "rows": summary.rows})
    return {
        "status": summary.status,
        "rows": summary.rows,
        "scored": summary.scored,
        "errors": summary.errors,
        "failed_chunks": len(summary.failed_chunks),
        "summary": output.child(batch.SUMMARY_FILE),
    }


# ScoreChunk


def scan_step(event: dict[str, Any]) -> dict[str, Any]:
    output = output_of(event)
    run = run_of(output)
    byte_range = ByteRange(int(event["range"]["start"]), int(event["range"]["end"]))
    batch.scan(run, byte_range, open_input(run.input, s3()), output)
    return {"start": byte_range.start}


def score_step(event: dict[str, Any]) -> dict[str, Any]:
    output = output_of(event)
    run = run_of(output)
    chunk = Chunk.from_dict(event["chunk"])
    model = batch.model_for(run, model_store(), load_policy())
    result = batch.score(run, chunk, batch.text_records(open_input(run.input, s3())), output, model)
    if not result.skipped:
        metrics.add_metric(name="BatchRowsScored", unit=MetricUnit.Count, value=result.scored)
        metrics.add_metric(name="BatchRowErrors", unit=MetricUnit.Count, value=result.errors)
        metrics.add_metric(name="BatchChunkTime", unit=MetricUnit.Seconds, value=result.seconds)
    logger.info("chunk scored", extra={"run": run.id, **result.to_dict()})
    return result.to_dict()


PLAN_STEPS = {"plan": plan_step, "index": index_step, "summarize": summarize_step}
CHUNK_STEPS = {"scan": scan_step, "score": score_step}


def dispatch(steps: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    step = event.get("step")
    if step not in steps:
        raise InvalidInput(f"Unknown step {step!r}; this function runs {', '.join(steps)}.")
    return steps[step](event)


@logger.inject_lambda_context
@metrics.log_metrics
def plan_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dispatch(PLAN_STEPS, event)


@logger.inject_lambda_context
@metrics.log_metrics
def chunk_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dispatch(CHUNK_STEPS, event)
