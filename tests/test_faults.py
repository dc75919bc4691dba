"""S3 faults on the model files (a fault-injecting proxy in front of moto's server): retries, then a 503
within the function's time budget, then recovery without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from lambda_forest.model_cache import LOAD_TIME_LIMIT_SECONDS, REFRESH_CHECK_TIME_LIMIT_SECONDS
from lambda_forest.store import S3_CONNECT_TIMEOUT_SECONDS, S3_READ_TIMEOUT_SECONDS, S3Store, make_s3_client
from local_lambda.fault_proxy import FaultProxy
from tests.conftest import load_event, publish_model

FUNCTION_TIMEOUT_SECONDS = 20  # template.yaml Globals.Function.Timeout
# The deadline, one attempt in flight and one retry back-off (lambda_forest.deadline).
WORST_FAILED_LOAD_SECONDS = LOAD_TIME_LIMIT_SECONDS + S3_CONNECT_TIMEOUT_SECONDS + S3_READ_TIMEOUT_SECONDS + 2


def test_the_worst_failed_load_fits_the_function_timeout() -> None:
    assert WORST_FAILED_LOAD_SECONDS < FUNCTION_TIMEOUT_SECONDS - 3  # time left to answer the 503


@pytest.fixture
def proxy(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", running.endpoint)
        yield running


@pytest.fixture
def through_proxy(handler: Any, trained_iris: Any, served_s3_store: Any, proxy: FaultProxy) -> Any:
    """The function reading a published iris model through the proxy."""
    publish_model(served_s3_store, trained_iris)
    return handler(S3Store(served_s3_store.bucket, "models", make_s3_client()))


def timed(invoke: Any) -> tuple[Any, float]:
    started = time.monotonic()
    reply = invoke(load_event("predict.json"))
    return reply, time.monotonic() - started


def test_a_few_throttled_reads_are_retried_and_the_request_succeeds(through_proxy: Any, proxy: FaultProxy) -> None:
    proxy.inject("slowdown", count=2)
    reply, _ = timed(through_proxy)
    assert reply.status == 200 and reply.body["predictions"] == ["setosa", "virginica"]
    assert proxy.requests["slowdown"] == 2


@pytest.mark.parametrize("kind", ["slowdown", "error"])
def test_a_persistent_s3_error_is_a_503_then_recovery_without_a_restart(
    through_proxy: Any, proxy: FaultProxy, kind: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy.inject(kind)
    reply, seconds = timed(through_proxy)
    assert (reply.status, reply.body["error"]["code"]) == (503, "model_unavailable")
    assert reply.headers["retry-after"] == "10"
    assert seconds < WORST_FAILED_LOAD_SECONDS
    assert proxy.requests[kind] == 3  # standard retries: three attempts, then the error
    assert '"reason":"StoreUnreachable"' in capsys.readouterr().out

    proxy.clear()
    reply, _ = timed(through_proxy)
    assert reply.status == 200 and reply.body["predictions"] == ["setosa", "virginica"]


@pytest.mark.slow  # waits out read timeouts: about 10 s
def test_a_stalled_connection_is_a_503_within_the_budget_then_recovery(through_proxy: Any, proxy: FaultProxy) -> None:
    proxy.inject("stall")
    reply, seconds = timed(through_proxy)
    assert (reply.status, reply.body["error"]["code"]) == (503, "model_unavailable")
    assert S3_READ_TIMEOUT_SECONDS <= seconds < WORST_FAILED_LOAD_SECONDS
    assert proxy.requests["stall"] >= 2  # the read timed out and was retried

    proxy.clear()
    reply, _ = timed(through_proxy)
    assert reply.status == 200


def test_a_warm_instance_keeps_serving_through_a_throttled_alias_check(
    handler: Any, trained_iris: Any, served_s3_store: Any, proxy: FaultProxy
) -> None:
    manifest = publish_model(served_s3_store, trained_iris)
    invoke = handler(S3Store(served_s3_store.bucket, "models", make_s3_client()), refresh_seconds=0.001)
    assert timed(invoke)[0].status == 200
    proxy.inject("slowdown", matches=lambda path: "/aliases/" in path)
    for _ in range(3):
        reply, seconds = timed(invoke)
        assert reply.status == 200 and reply.body["model"]["version"] == manifest.version
        assert seconds < REFRESH_CHECK_TIME_LIMIT_SECONDS + S3_CONNECT_TIMEOUT_SECONDS + S3_READ_TIMEOUT_SECONDS + 2
    assert proxy.requests["slowdown"] >= 3
