"""The local twin of the CloudWatch Logs subscription filters and Amazon Data Firehose.

In AWS the function's capture and label lines go from its log group, through a subscription filter
per kind, to a Firehose stream that writes them under `{store}/{name}/captures/` or `labels/` by hour.
Locally the function logs to the emulator's log file; `RecordShipper` reads what is new in it, keeps
the lines each filter would keep (`lambda_forest.capture.record_directory`) and writes them to the
local store in the same layout, so `python -m training monitor` finds them.
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from pathlib import Path

from lambda_forest.capture import record_directory
from lambda_forest.errors import LambdaForestError
from lambda_forest.store import ModelStore

SHIP_EVERY_SECONDS = 1.0


class RecordShipper:
    """Copies capture and label lines from a log file into a store; `ship()` is safe to call from any thread."""

    def __init__(self, log_path: Path, store: ModelStore, name: str) -> None:
        self.log_path = log_path
        self.store = store
        self.name = name
        self.shipped = 0
        self._offset = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def ship(self) -> int:
        """Write the complete lines logged since the last call; returns how many records went to the store."""
        with self._lock:
            try:
                with self.log_path.open("rb") as log:
                    log.seek(self._offset)
                    data = log.read()
            except FileNotFoundError:
                return 0
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next call
            batches: dict[str, list[bytes]] = defaultdict(list)
            for line in complete.splitlines():
                directory = record_directory(line)
                if directory:
                    batches[directory].append(line)
            for directory, lines in batches.items():
                self.store.write_records(self.name, directory, lines)
            self._offset += len(complete)  # only once written: a failed write is retried, as Firehose retries
            count = sum(map(len, batches.values()))
            self.shipped += count
            return count

    def ship_or_warn(self) -> int:
        """`ship()`, saying on stderr (not raising) when the store refuses; the lines wait for the next try."""
        try:
            return self.ship()
        except LambdaForestError as error:
            print(f"warning: captured lines not recorded yet: {error}", file=sys.stderr, flush=True)
            return 0

    def start(self) -> RecordShipper:
        """Ship in the background every `SHIP_EVERY_SECONDS`, as Firehose's buffer does (there: minutes)."""
        self._thread = threading.Thread(target=self._run, name="record-shipper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.ship_or_warn()

    def _run(self) -> None:
        while not self._stopped.wait(SHIP_EVERY_SECONDS):
            self.ship_or_warn()
