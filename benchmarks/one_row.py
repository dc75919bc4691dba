"""One-row request latency of one build of the function, in a fresh process (run by `benchmarks.compare`).

    python -m benchmarks.one_row CODE_DIR STORE NAME EVENT.json REQUESTS

Imports the function from CODE_DIR before anything else of this project (so another commit's function
and its `lambda_forest` load, not this tree's), warms it up, and prints the per-request milliseconds of
REQUESTS invocations with the event in EVENT.json as one JSON list.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks.in_process import import_function


def main(code_dir: str, store: str, name: str, event_path: str, requests: str) -> None:
    app = import_function(store, name, Path(code_dir))
    from local_lambda.context import LocalContext

    event, context = json.loads(Path(event_path).read_text()), LocalContext()
    for _ in range(50):
        assert app.lambda_handler(event, context)["statusCode"] == 200
    samples = []
    for _ in range(int(requests)):
        started = time.perf_counter()
        app.lambda_handler(event, context)
        samples.append((time.perf_counter() - started) * 1000)
    sys.stdout.flush()
    print(json.dumps(samples))


if __name__ == "__main__":
    main(*sys.argv[1:6])
