"""`python -m benchmarks.faults_and_load`: how the built function behaves under load and when S3 misbehaves.

All traffic stays on 127.0.0.1 and every loop is bounded. Needs `make build` first. Prints:

- a cold-start burst: N emulated functions (the `sam build` output under the Runtime Interface
  Emulator) started at the same moment against one moto S3 server, each answering its first request;
- S3 faults on the model files (a fault-injecting proxy in front of moto's server): a few throttles
  (retried, then 200), persistent `SlowDown`, persistent 500 and a stalled connection (each a 503 within
  the function's budget), then recovery on the same instance without a restart;
- a soak: one warm emulated function answering many requests: errors, p50/p99 and the function
  process's resident memory after the first request and at the end (target: growth under 5 MB);
- bodies at Lambda's 6 MB request limit through the emulator.

The tests (tests/test_load.py) run the same code with smaller counts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lambda_forest.store import S3Store
from local_lambda.emulator import BUILD_DIR, INVOKE_PATH, Emulator, layer_dir, local_environment
from local_lambda.events import json_event
from local_lambda.fault_proxy import FaultProxy

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint."""
    from moto.server import ThreadedMotoServer

    from local_lambda.emulator import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_store(endpoint: str) -> S3Store:
    """A new bucket on moto's server at `endpoint`, as an S3 store."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"lambda-forest-load-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    return S3Store(bucket, "models", client)


def function_rss_mb(emulator: Emulator) -> float:
    """Resident memory of the function's runtime process (the emulator's child running awslambdaric)."""
    assert emulator._process is not None
    parent = emulator._process.pid
    # Each thread lists the children it started; the emulator (Go) starts the runtime from any of its threads.
    tasks = Path(f"/proc/{parent}/task").iterdir()
    children = [pid for task in tasks for pid in (task / "children").read_text().split()]
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("the emulator has no runtime process yet (invoke it once first)")


class Invoker:
    """Invokes one emulator over a kept-alive loopback connection (the load loop's own cost stays small)."""

    def __init__(self, emulator: Emulator) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=emulator.timeout_s + 10)

    def __call__(self, event: bytes) -> dict[str, Any]:
        self.connection.request("POST", INVOKE_PATH, body=event, headers={"Content-Type": "application/json"})
        return json.loads(self.connection.getresponse().read())

    def close(self) -> None:
        self.connection.close()


def predict_event(rows: list[list[float]]) -> bytes:
    return json.dumps(json_event("POST", "/predict", {"instances": rows})).encode()


@dataclass
class Burst:
    instances: int
    total_s: float  # from the moment all were started to the last first answer
    first_answer_ms: list[float]
    answers: list[dict[str, Any]]


def cold_start_burst(
    environment: dict[str, str], instances: int, build_dir: Path = BUILD_DIR, imports_first: bool = False
) -> Burst:
    """Start `instances` emulated functions, then send each its first request at the same moment.

    With `imports_first`, each runtime first answers GET /health (its init: the imports, no model), so
    only the model loads start together: on a machine with fewer cores than instances, N imports at once
    would otherwise decide the timings.
    """
    # The emulator counts init inside the first invoke's timeout; Lambda gives init its own 10 s. On a small
    # machine, N inits at once share its cores, so the emulated timeout here is the sum of both.
    emulators = [Emulator(environment, build_dir=build_dir, timeout_s=30) for _ in range(instances)]
    try:
        for emulator in emulators:
            emulator.start()  # the runtime process starts; init (importing the handler) runs on first invoke
            if imports_first:
                emulator.invoke(json_event("GET", "/health", None))
        event = predict_event(IRIS_ROWS)
        answers: list[Any] = [None] * instances
        times = [0.0] * instances
        barrier = threading.Barrier(instances + 1)

        def first_request(index: int) -> None:
            invoke = Invoker(emulators[index])
            barrier.wait()
            started = time.perf_counter()
            try:
                answers[index] = invoke(event)
            finally:
                times[index] = (time.perf_counter() - started) * 1000
                invoke.close()

        threads = [threading.Thread(target=first_request, args=(index,)) for index in range(instances)]
        for thread in threads:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join(timeout=120)
        return Burst(instances, time.perf_counter() - started, times, answers)
    finally:
        for emulator in emulators:
            emulator.stop()


@dataclass
class Soak:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    rss_start_mb: float
    rss_end_mb: float


def soak(emulator: Emulator, requests: int, check: Callable[[dict[str, Any]], bool]) -> Soak:
    """`requests` invocations of one warm function, cycling through a few bodies; `check` judges each answer."""
    events = [predict_event(IRIS_ROWS[:1]), predict_event(IRIS_ROWS), predict_event(IRIS_ROWS * 30)]
    invoke = Invoker(emulator)
    try:
        if not check(invoke(events[0])):
            raise RuntimeError("the first request failed")
        rss_start = function_rss_mb(emulator)
        samples = np.empty(requests)
        errors = 0
        started = time.perf_counter()
        for index in range(requests):
            begun = time.perf_counter()
            answer = invoke(events[index % len(events)])
            samples[index] = time.perf_counter() - begun
            errors += not check(answer)
        seconds = time.perf_counter() - started
        rss_end = function_rss_mb(emulator)
    finally:
        invoke.close()
    p50, p99 = np.percentile(samples * 1000, [50, 99])
    return Soak(requests, errors, seconds, float(p50), float(p99), rss_start, rss_end)


def answers_iris(answer: dict[str, Any]) -> bool:
    """A 200 whose predictions are iris labels, one per row."""
    if answer.get("statusCode") != 200:
        return False
    body = json.loads(answer["body"])
    return set(body["predictions"]) <= {"setosa", "versicolor", "virginica"} and len(body["probabilities"]) == len(
        body["predictions"]
    )


@dataclass
class FaultOutcome:
    scenario: str
    status: int
    seconds: float
    faulty_answers: int  # how many requests the proxy answered with the fault (attempts, retries included)
    recovered: bool  # the next request on the same instance, fault cleared, answered 200


FAULTS = {
    "2 x SlowDown, then OK": ("slowdown", 2),
    "SlowDown, persistent": ("slowdown", None),
    "500 InternalError, persistent": ("error", None),
    "stalled connection": ("stall", None),
}


def fault_scenarios(
    proxy: FaultProxy, emulator: Emulator, scenarios: tuple[str, ...] = tuple(FAULTS)
) -> list[FaultOutcome]:
    """Each scenario hits the first model load of a cold instance; the fault is then cleared and the same
    instance asked again (a failed load is never cached, so it recovers without a restart)."""
    outcomes = []
    event = predict_event(IRIS_ROWS)
    for scenario in scenarios:
        kind, count = FAULTS[scenario]
        with emulator_fresh(emulator):
            invoke = Invoker(emulator)
            proxy.requests.clear()
            proxy.inject(kind, count=count)  # type: ignore[arg-type]
            started = time.perf_counter()
            answer = invoke(event)
            seconds = time.perf_counter() - started
            faulty = proxy.requests[kind]
            proxy.clear()
            recovered = answers_iris(invoke(event))
            invoke.close()
        outcomes.append(FaultOutcome(scenario, answer.get("statusCode", 0), seconds, faulty, recovered))
    return outcomes


@contextmanager
def emulator_fresh(emulator: Emulator) -> Iterator[None]:
    """A cold function instance for the block (a restarted emulator): the fault hits the first model load."""
    emulator.stop()
    emulator.start()
    yield


def payload_limits(emulator: Emulator) -> list[tuple[str, int, int | None, str]]:
    """(case, body bytes, status, error code) for bodies around Lambda's request limit, through the emulator."""
    cases = []
    row = "[5.1,3.5,1.4,0.2]"
    long_digits = "[5.1" + "0" * 145 + ",3.5" + "0" * 145 + ",1.4" + "0" * 145 + ",0.2" + "0" * 145 + "]"
    for case, rows in (
        ("10,000 rows, 145-digit numbers (answered exactly)", [long_digits] * 10_000),
        ("340,000 short rows (over MAX_BATCH_ROWS)", [row] * 340_000),
        ("400,000 short rows (over Lambda's 6 MB)", [row] * 400_000),
    ):
        body = '{"instances": [' + ",".join(rows) + "]}"
        event = json_event("POST", "/predict", None) | {"body": body}
        try:
            answer = emulator.invoke(event)
            status = answer.get("statusCode")
            if "body" in answer:
                code = json.loads(answer["body"]).get("error", {}).get("code", "")
            else:  # the runtime's own error payload: the function never ran
                code = f"runtime error {answer.get('errorType')}: {str(answer.get('errorMessage'))[:80]}"
        except Exception as error:  # the emulator itself refuses what Lambda would refuse
            status, code = None, f"refused: {str(error)[:80]}"
        cases.append((case, len(body), status, code))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=8, help="emulated functions cold-starting at once")
    parser.add_argument("--requests", type=int, default=100_000, help="requests to one warm function")
    args = parser.parse_args()
    # moto's server takes any credentials; never a real account's (nothing here talks to AWS).
    fake = "testing"  # not a secret: the dummy credentials moto accepts
    os.environ.update(AWS_ACCESS_KEY_ID=fake, AWS_SECRET_ACCESS_KEY=fake, AWS_DEFAULT_REGION="us-east-1")
    for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(variable, None)
    if not layer_dir(BUILD_DIR).exists():
        sys.exit("no build found: run `make build` first")

    from training.data import load_builtin
    from training.forest import ForestParams, build_artifact, publish, train

    trained = train(load_builtin("iris"), ForestParams(n_estimators=100), progress=lambda _: None)
    print(f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}\n")
    with moto_s3() as endpoint:
        store = s3_store(endpoint)
        manifest, files = build_artifact("iris", trained)
        publish(store, manifest, files)
        store.set_alias("iris", "live", manifest.version)
        quiet = {"POWERTOOLS_LOG_LEVEL": "WARNING", "AWS_ENDPOINT_URL_S3": endpoint}
        environment = local_environment(store.uri, "iris", **quiet)

        print(f"## {args.instances} instances at once, one moto S3 server\n")
        for label, imports_first in (("whole cold starts (init + model load)", False), ("model loads only", True)):
            burst = cold_start_burst(environment, args.instances, imports_first=imports_first)
            correct = sum(answers_iris(answer or {}) for answer in burst.answers)
            failure = next((answer for answer in burst.answers if not answers_iris(answer or {})), None)
            print(
                f"- {label}: {correct} of {burst.instances} first requests answered correctly; all done in "
                f"{burst.total_s * 1000:.0f} ms; each: median {statistics.median(burst.first_answer_ms):.0f} ms, "
                f"max {max(burst.first_answer_ms):.0f} ms" + (f"; a failure: {str(failure)[:200]}" if failure else "")
            )
        print()

        with FaultProxy(endpoint) as proxy:
            faulty_environment = local_environment(store.uri, "iris", **quiet | {"AWS_ENDPOINT_URL_S3": proxy.endpoint})
            with Emulator(faulty_environment) as emulator:
                outcomes = fault_scenarios(proxy, emulator)
        print("## S3 faults on the model files (function timeout 20 s)\n")
        print(
            "| scenario | status | cold instance's first answer, s | faulty S3 answers | next request, fault cleared |"
        )
        print("|---|---:|---:|---:|---|")
        for outcome in outcomes:
            recovery = "200, same instance" if outcome.recovered else "FAILED"
            print(
                f"| {outcome.scenario} | {outcome.status} | {outcome.seconds:.1f} | {outcome.faulty_answers} | "
                f"{recovery} |"
            )

        with Emulator(environment) as emulator:
            result = soak(emulator, args.requests, answers_iris)
            limits = payload_limits(emulator)
        print(f"\n## One warm function, {result.requests:,} requests (1, 3 and 90 rows in turn)\n")
        print(f"- errors: {result.errors}; {result.seconds:.0f} s, {result.requests / result.seconds:.0f} requests/s")
        print(f"- latency through the emulator: p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms")
        print(
            f"- function process RSS: {result.rss_start_mb:.1f} MB after the first request, "
            f"{result.rss_end_mb:.1f} MB at the end ({result.rss_end_mb - result.rss_start_mb:+.1f} MB; target < 5 MB)"
        )
        print("\n## Bodies around Lambda's 6 MB request limit, through the emulator\n")
        for case, size, status, code in limits:
            print(f"- {case}: {size / 1e6:.2f} MB -> {status} {code}")


if __name__ == "__main__":
    main()
