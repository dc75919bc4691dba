"""`python -m training score --on aws`: start the stack's BatchScore state machine and follow it to the end.

Progress comes from the execution and its Distributed Map runs (items succeeded / failed / total); the
result is the run's `_summary.json`. A failed execution's error is shown as its message alone.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from lambda_forest import batch
from lambda_forest.errors import ConfigError, InvalidInput, LambdaForestError
from lambda_forest.objects import open_output

STATE_MACHINE_OUTPUT = "BatchScoreStateMachineArn"
POLL_SECONDS = 5.0
FINISHED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class BatchRunFailed(LambdaForestError):
    """The state machine's execution ended in failure."""


def execution_input(request: batch.ScoreRequest) -> dict[str, Any]:
    """The state machine's input (what its Plan state passes to `ScoreRequest.from_event`)."""
    if not request.input.startswith("s3://") or not request.output.startswith("s3://"):
        raise InvalidInput(
            "--on aws reads and writes S3: upload the input under the stack's BatchInputUri and give an "
            "s3:// output under its BatchOutputUri (`aws s3 cp FILE s3://...`)."
        )
    body = {key: value for key, value in asdict(request).items() if value is not None}
    if request.model_version:
        body.pop("model_alias", None)
    return body


def state_machine_arn(given: str | None, stack: str | None, cloudformation: Any = None) -> str:
    """The ARN given, else the stack's BatchScoreStateMachineArn output."""
    if given:
        return given
    if not stack:
        raise ConfigError(
            "--on aws needs the state machine: --state-machine ARN, --stack NAME, or $LAMBDA_FOREST_STATE_MACHINE."
        )
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = cloudformation or boto3.client("cloudformation")
    try:
        outputs = client.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    except (ClientError, BotoCoreError) as error:
        raise ConfigError(f"Cannot read the outputs of stack {stack}: {error}") from None
    for output in outputs:
        if output["OutputKey"] == STATE_MACHINE_OUTPUT:
            return str(output["OutputValue"])
    raise ConfigError(f"Stack {stack} has no {STATE_MACHINE_OUTPUT} output; deploy this version of template.yaml.")


def start(request: batch.ScoreRequest, arn: str, client: Any) -> str:
    """Start an execution; returns its ARN."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = f"score-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    try:
        started = client.start_execution(stateMachineArn=arn, name=name, input=json.dumps(execution_input(request)))
    except (ClientError, BotoCoreError) as error:
        raise ConfigError(f"Cannot start the BatchScore state machine {arn}: {error}") from None
    return str(started["executionArn"])


def follow(
    execution_arn: str,
    client: Any,
    progress: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = POLL_SECONDS,
) -> dict[str, Any]:
    """Wait for the execution to finish, reporting each Map run's items as they change."""
    last = ""
    while True:
        execution = client.describe_execution(executionArn=execution_arn)
        line = _progress_line(client, execution_arn, execution["status"])
        if line != last:
            progress(line)
            last = line
        if execution["status"] in FINISHED:
            return execution
        sleep(poll_seconds)


def _progress_line(client: Any, execution_arn: str, status: str) -> str:
    parts = [status.lower()]
    runs = client.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    for number, run in enumerate(sorted(runs, key=lambda r: str(r.get("startDate", "")))):
        counts = client.describe_map_run(mapRunArn=run["mapRunArn"]).get("itemCounts", {})
        step = ("scan", "score")[min(number, 1)]
        done, total = counts.get("succeeded", 0), counts.get("total", 0)
        text = f"{step} {done}/{total}"
        if counts.get("running"):
            text += f" ({counts['running']} running)"
        if counts.get("failed"):
            text += f" {counts['failed']} failed"
        parts.append(text)
    return ": ".join(parts[:1]) + (" - " + ", ".join(parts[1:]) if parts[1:] else "")


def score_on_aws(
    request: batch.ScoreRequest,
    arn: str,
    progress: Callable[[str], None],
    client: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> batch.Summary:
    """Start, follow and summarise one run on AWS."""
    if client is None:
        import boto3

        client = boto3.client("stepfunctions")
    execution_arn = start(request, arn, client)
    progress(f"started {execution_arn}")
    execution = follow(execution_arn, client, progress, sleep)
    summary_body = open_output(request.output).get(batch.SUMMARY_FILE)
    if execution["status"] != "SUCCEEDED" and (summary_body is None or execution.get("error") != "ChunksFailed"):
        raise BatchRunFailed(
            f"The batch run {execution['status'].lower()}: {_failure_message(execution)}",
            detail=execution_arn,
        )
    if summary_body is None:
        raise BatchRunFailed(f"The batch run finished but wrote no {batch.SUMMARY_FILE}.", detail=execution_arn)
    return batch.Summary(**json.loads(summary_body))


def _failure_message(execution: dict[str, Any]) -> str:
    cause = execution.get("cause") or ""
    try:
        body = json.loads(cause)
        message = body.get("errorMessage") or cause
        kind = body.get("errorType") or execution.get("error", "")
    except (ValueError, AttributeError):
        message, kind = cause, execution.get("error", "")
    return f"{message} ({kind})" if kind else str(message or "no cause given")
