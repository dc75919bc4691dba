"""One time limit for every AWS call of an operation (a model load), retries included.

botocore bounds each attempt (connect and read timeouts) and retries throttles, 5xx answers and
timeouts, but nothing bounds the whole: a load reads the alias, the manifest, its signature (a KMS call)
and the forest, and each may retry. So the clients this package makes check a shared deadline before
every attempt (botocore's `before-send` event); past it, the call fails at once, the load fails with a
503, and the function answers well within its own timeout instead of being killed by Lambda (which
API Gateway would turn into a bare 502).

Worst case of a load: its limit, plus one attempt already in flight (connect + read timeout), plus one
retry back-off already sleeping (botocore's standard mode sleeps at most 2 s before the third attempt).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.client import BaseClient


class OutOfTime(Exception):
    """The operation's deadline passed before this attempt; callers turn it into their own error."""


_local = threading.local()


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """AWS calls in this block (on this thread) give up once `seconds` have passed; nested limits keep the sooner."""
    outer = getattr(_local, "deadline", None)
    deadline = time.monotonic() + seconds
    _local.deadline = deadline if outer is None else min(outer, deadline)
    try:
        yield
    finally:
        _local.deadline = outer


def remaining() -> float | None:
    deadline = getattr(_local, "deadline", None)
    return None if deadline is None else deadline - time.monotonic()


def _check(**_: Any) -> None:
    left = remaining()
    if left is not None and left <= 0:
        raise OutOfTime(f"the time limit passed {-left:.1f} s ago")


def bounded(client: BaseClient) -> BaseClient:
    """Make every attempt of `client` honour `time_limit`."""
    client.meta.events.register("before-send", _check, unique_id="lambda-forest-deadline")
    return client
