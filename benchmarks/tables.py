"""`python -m benchmarks.tables` (also run by `python -m benchmarks`): what mixed tables cost.

- Row validation (`FeatureSchema.validate`) of 10,000 rows: 50 numeric features (a model with `features`,
  and one published before them), the same rows as CSV text cells, and a mixed table (10 categorical
  features with 5-50 categories, 40 numeric, 5% missing values, about 2% unknown categories).
- A 10,000-row mixed request through the handler, in a fresh process per serving path: the compiled
  forest, and the scikit-learn Pipeline (`ALLOW_PICKLE=true`); with the validation and model shares.
The mixed model (100 trees on 20,000 rows) is trained once into benchmarks/.cache.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.models import CACHE

ROOT = Path(__file__).resolve().parent.parent
ROWS = 10_000
MIXED_ROWS, NUMERIC, CATEGORICAL, TREES = 20_000, 40, 10, 100
REPEATS = 11


def median_ms(run: Callable[[], Any], repeats: int = REPEATS) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def mixed_frame(rows: int, seed: int, unknown_share: float = 0.0) -> Any:
    """Numeric and categorical columns with missing values; `unknown_share` of categories never seen in training."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    score = np.zeros(rows)
    for index in range(CATEGORICAL):
        count = 5 + 5 * index
        codes = rng.integers(count, size=rows)
        values = np.array([f"v{code}" for code in codes], dtype=object)
        values[rng.random(rows) < unknown_share] = "never-seen"
        values[rng.random(rows) < 0.05] = None
        columns[f"c{index}"] = values
        score += (codes % 3 == 0) * (index % 4)
    for index in range(NUMERIC):
        values = rng.normal(size=rows)
        score += values * ((index % 7) - 3) / 3
        values[rng.random(rows) < 0.05] = np.nan
        columns[f"f{index}"] = values
    columns["label"] = np.where(score + rng.normal(size=rows) > np.median(score), "yes", "no")
    return pd.DataFrame(columns)


def prepare_mixed(store_root: Path = CACHE / "store") -> Any:
    """The mixed model, published for both serving paths (trained once; later runs reuse it)."""
    from lambda_forest.store import LocalStore
    from training.data import DataReport, Dataset
    from training.forest import ForestParams, build_artifact, publish, train
    from training.tables import TableOptions, decide_columns

    store = LocalStore(store_root)
    if all(store.read_alias(name, "live") for name in ("mixed-compiled", "mixed-sklearn")):
        return store
    from lambda_forest.features import FeatureSchema

    frame = mixed_frame(MIXED_ROWS, seed=0)
    features = [column.feature for column in decide_columns(frame, "label", TableOptions()) if column.feature]
    X = frame[[feature.name for feature in features]]
    y = frame["label"].to_numpy(dtype=object)
    data = Dataset(
        X, y, list(X.columns), "label", "classification", "synthetic:mixed", "-", FeatureSchema(features),
        report=DataReport(MIXED_ROWS, MIXED_ROWS),
    )  # fmt: skip
    print(f"training the mixed forest ({TREES} trees, {MIXED_ROWS} rows x {len(features)} features)", file=sys.stderr)
    model = train(data, ForestParams(n_estimators=TREES), progress=lambda message: None)
    for path in ("compiled", "sklearn"):
        manifest, files = build_artifact(f"mixed-{path}", model, compile=path == "compiled")
        publish(store, manifest, files)
        store.set_alias(manifest.name, "live", manifest.version)
    return store


def request_rows(schema: Any) -> list[list[Any]]:
    from training.forest import json_rows

    return json_rows(mixed_frame(ROWS, seed=1, unknown_share=0.02)[schema.names], schema)


def validation_figures() -> dict[str, float]:
    from lambda_forest.features import FeatureSchema
    from lambda_forest.manifest import Manifest
    from lambda_forest.store import LocalStore

    numbers = np.random.default_rng(0).normal(size=(ROWS, 50)).tolist()
    names = [f"f{index}" for index in range(50)]
    texts = [[repr(value) for value in row] for row in numbers]
    store = LocalStore(CACHE / "store")
    schema = Manifest.from_json(store.read_manifest("mixed-compiled", store.list_versions("mixed-compiled")[0])).schema
    mixed = request_rows(schema)
    return {
        "numeric": median_ms(lambda: FeatureSchema.numeric(names).validate(numbers)),
        "numeric_legacy": median_ms(lambda: FeatureSchema.from_manifest(names, None).validate(numbers)),
        "numeric_text": median_ms(lambda: FeatureSchema.numeric(names).validate(texts, text=True), 5),
        "mixed": median_ms(lambda: schema.validate(mixed)),
    }


def handler_figures(path: str) -> dict[str, float]:
    """A 10,000-row mixed request through the handler, in a fresh process (this module's --handler mode)."""
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "result.json"
        subprocess.run(  # this Python running this module: a fixed argument list  # nosec B603
            [sys.executable, "-m", "benchmarks.tables", "--handler", path, str(result)],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return json.loads(result.read_text())


def measure_handler(path: str, result_path: str) -> None:
    from benchmarks.in_process import import_function
    from local_lambda.events import LocalContext, json_event

    app = import_function(str(CACHE / "store"), f"mixed-{path}", ALLOW_PICKLE=str(path == "sklearn").lower())
    model = app.models.get()
    rows = request_rows(model.manifest.schema)
    event, context = json_event("POST", "/predict", {"instances": rows}), LocalContext()
    response = app.lambda_handler(event, context)
    assert response["statusCode"] == 200, response["body"][:500]
    validated = model.manifest.schema.validate(rows)
    figures = {
        "handler": median_ms(lambda: app.lambda_handler(event, context)),
        "validate": median_ms(lambda: model.manifest.schema.validate(rows)),
        "model": median_ms(lambda: model.predictor.predict(validated.matrix, True)),
        "warnings": len(json.loads(response["body"]).get("warnings", [])),
    }
    Path(result_path).write_text(json.dumps(figures))


def report() -> None:
    prepare_mixed()
    validation = validation_figures()
    compiled, pipeline = handler_figures("compiled"), handler_figures("sklearn")
    print(f"\nTables ({ROWS:,} rows per request):")
    print(
        f"- validation, 50 numeric features: {validation['numeric']:.1f} ms (a model published before `features`: "
        f"{validation['numeric_legacy']:.1f} ms); as CSV text cells: {validation['numeric_text']:.0f} ms"
    )
    print(
        f"- validation, mixed ({CATEGORICAL} categorical + {NUMERIC} numeric, 5% missing, ~2% unknown categories): "
        f"{validation['mixed']:.1f} ms"
    )
    for label, figures in (("compiled", compiled), ("scikit-learn Pipeline", pipeline)):
        print(
            f"- mixed request through the handler, {label}: {figures['handler']:.0f} ms "
            f"(validation {figures['validate']:.0f} ms, model {figures['model']:.0f} ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--handler", nargs=2, metavar=("PATH", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.handler:
        measure_handler(*args.handler)
    else:
        report()


if __name__ == "__main__":
    main()
