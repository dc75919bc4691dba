"""The function imported into a benchmark's own process, and the statistics the benchmarks share.

Imports nothing of this project, so a benchmark can load another commit's function (and its
`lambda_forest`) before anything else of this tree.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

FUNCTION_DIR = Path(__file__).resolve().parent.parent / "functions" / "predict"


def import_function(store: str, name: str, code_dir: Path = FUNCTION_DIR, **settings: str) -> ModuleType:
    """Import the function's `app` from `code_dir`, serving model `name` from `store` (and more `settings`),
    quiet and untraced."""
    os.environ.update(
        MODEL_STORE=store,
        MODEL_NAME=name,
        POWERTOOLS_SERVICE_NAME="bench",
        POWERTOOLS_METRICS_NAMESPACE="Bench",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="WARNING",
        LAMBDA_TASK_ROOT=str(code_dir),  # as on Lambda (the X-Ray SDK then skips its sampling machinery)
        **settings,
    )
    sys.path.insert(0, str(code_dir))
    import app

    if not Path(app.__file__).resolve().is_relative_to(code_dir.resolve()):
        raise RuntimeError(f"imported {app.__file__}, not the function in {code_dir}")
    return app


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
