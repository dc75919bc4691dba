"""The built function under load and S3 faults, through the Runtime Interface Emulator (benchmarks.faults_and_load
with smaller counts): every cold start of a burst answers correctly, a warm instance answers every request,
S3 faults end in a 503 and then recover on the same instance, bodies past Lambda's limit never break it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.faults_and_load import (
    IRIS_ROWS,
    answers_iris,
    cold_start_burst,
    fault_scenarios,
    payload_limits,
    soak,
)
from local_lambda.emulator import Emulator, local_environment
from local_lambda.events import json_event
from local_lambda.fault_proxy import FaultProxy
from tests.conftest import publish_model

pytestmark = pytest.mark.slow

BURST = 8
SOAK_REQUESTS = 1_000  # the benchmark sends 100,000 (minutes); this keeps CI to seconds


@pytest.fixture
def s3_iris(trained_iris: Any, served_s3_store: Any, moto_server: Any) -> Iterator[tuple[Any, str]]:
    publish_model(served_s3_store, trained_iris)
    yield served_s3_store, moto_server.endpoint


def test_eight_instances_loading_at_once_from_one_store_all_answer_correctly(
    build_dir: Path, s3_iris: Any, trained_iris: Any
) -> None:
    store, endpoint = s3_iris
    environment = local_environment(store.uri, "iris", POWERTOOLS_LOG_LEVEL="WARNING", AWS_ENDPOINT_URL_S3=endpoint)
    # Eight imports at once on a 2-core machine shared with other work can outlast a timeout; the model
    # loads are what meet at the store, so they start together (the benchmark times whole cold starts).
    burst = cold_start_burst(environment, BURST, build_dir, imports_first=True)
    print(f"\n{BURST} first model loads at once: {burst.total_s * 1000:.0f} ms in all")
    expected = trained_iris.estimator.predict(np.array(IRIS_ROWS)).tolist()
    for answer in burst.answers:
        assert answer is not None and answer["statusCode"] == 200, answer
        body = json.loads(answer["body"])
        assert body["predictions"] == expected
        assert np.array_equal(
            np.array(body["probabilities"]), trained_iris.estimator.predict_proba(np.array(IRIS_ROWS))
        )


def test_a_warm_instance_answers_every_request(build_dir: Path, s3_iris: Any) -> None:
    store, endpoint = s3_iris
    environment = local_environment(store.uri, "iris", POWERTOOLS_LOG_LEVEL="WARNING", AWS_ENDPOINT_URL_S3=endpoint)
    with Emulator(environment, build_dir=build_dir) as emulator:
        result = soak(emulator, SOAK_REQUESTS, answers_iris)
    print(
        f"\n{result.requests} requests: p50 {result.p50_ms:.2f} ms, "
        f"RSS {result.rss_start_mb:.1f} -> {result.rss_end_mb:.1f} MB"
    )
    assert result.errors == 0
    assert result.rss_start_mb > 10  # it measured the function's process, not nothing


def test_s3_faults_through_the_emulator_end_in_a_503_then_recover(build_dir: Path, s3_iris: Any) -> None:
    store, endpoint = s3_iris
    with FaultProxy(endpoint) as proxy:
        environment = local_environment(
            store.uri, "iris", POWERTOOLS_LOG_LEVEL="WARNING", AWS_ENDPOINT_URL_S3=proxy.endpoint
        )
        with Emulator(environment, build_dir=build_dir) as emulator:
            outcomes = fault_scenarios(proxy, emulator, ("2 x SlowDown, then OK", "500 InternalError, persistent"))
    retried, failed = outcomes
    assert (retried.status, retried.faulty_answers, retried.recovered) == (200, 2, True)
    assert (failed.status, failed.faulty_answers, failed.recovered) == (503, 3, True)


def test_bodies_around_lambdas_payload_limit_never_break_the_function(build_dir: Path, iris_local: Any) -> None:
    with Emulator(local_environment(iris_local.uri, "iris"), build_dir=build_dir) as emulator:
        cases = payload_limits(emulator)
        after = emulator.invoke(json_event("POST", "/predict", {"instances": IRIS_ROWS}))
    exact, too_many, too_big = cases
    assert exact[2] == 200
    assert (too_many[2], too_many[3]) == (413, "too_many_instances")
    assert too_big[1] > 6 * 1024 * 1024 and too_big[2] is None  # the emulator, like Lambda, refuses it unread
    assert after["statusCode"] == 200  # and the function goes on answering


@pytest.fixture
def iris_local(local_store: Any, trained_iris: Any) -> Any:
    publish_model(local_store, trained_iris)
    return local_store
