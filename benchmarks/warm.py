"""Warm latency inside the handler, raw model speed and peak memory for one model, in a fresh process.

    python -m benchmarks.warm STORE NAME ROWS.npy RESULT.json

Run by `python -m benchmarks`; stdout (the function's logs and metrics) is not read.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.in_process import import_function, percentile

BATCHES = {1: 300, 100: 100, 10_000: 10}  # rows per request: timed repetitions
EXPLAIN_METHODS = ("path", "shap")
EXPLAIN_REPEATS = {1: 50, 100: 10, 10_000: 3}
# An explanation measured directly is skipped when one run would take longer than this (estimated).
EXPLAIN_MAX_SECONDS = 20.0
THREAD_SWEEP = (64, 128, 256, 512, 1024, 2048)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def capture_cost(app: Any, rows: np.ndarray, context: Any) -> dict[str, Any]:
    """What capturing costs a request: the capture alone (1 and 100 rows), and the 1-row handler with and
    without it, interleaved so both see the same machine. The line goes to stdout, as in Lambda."""
    from local_lambda.events import json_event

    capturer = app.capturer
    features = app.models.get().manifest.feature_names
    figures: dict[str, Any] = {}
    for size in (1, 100):
        instances = rows[:size].tolist()
        response = json.loads(
            app.lambda_handler(json_event("POST", "/predict", {"instances": instances}), context)["body"]
        )
        samples = []
        for _ in range(500):
            started = time.perf_counter()
            capturer.capture(
                request_id=response["request_id"], response=response, features=features, instances=instances
            )
            samples.append((time.perf_counter() - started) * 1e6)
        figures[f"capture_{size}_us"] = statistics.median(samples)
    event = json_event("POST", "/predict", {"instances": rows[:1].tolist()})
    timings: dict[bool, list[float]] = {False: [], True: []}
    rate = capturer.sample_rate
    for index in range(600):
        capturer.sample_rate = float(index % 2)
        started = time.perf_counter()
        app.lambda_handler(event, context)
        timings[bool(index % 2)].append((time.perf_counter() - started) * 1000)
    capturer.sample_rate = rate
    figures["handler_1_ms"] = {"off": statistics.median(timings[False]), "on": statistics.median(timings[True])}
    return figures


def one_row_parts(app: Any, rows: np.ndarray, context: Any) -> dict[str, float]:
    """Where a one-row request's time goes, median microseconds of each step interleaved: the steps the
    handler's own code runs (parse the body, validate the row, predict, shape and serialise the answer) and
    the whole handler; the rest is Powertools (routing, logging, metrics, tracing) and the front door's event."""
    from local_lambda.events import json_event

    payload = {"instances": rows[:1].tolist()}
    body, event = json.dumps(payload), json_event("POST", "/predict", payload)
    model = app.models.get()
    instances = app.parse_predict_body(body, 1).instances
    validated = model.manifest.schema.validate(instances)
    result = model.predictor.predict(validated.matrix, True)
    steps: dict[str, Callable[[], object]] = {
        "parse": lambda: app.parse_predict_body(body, 1),
        "validate": lambda: model.manifest.schema.validate(instances),
        "predict": lambda: model.predictor.predict(validated.matrix, True),
        "respond": lambda: app.json_within_lambda_limit(
            app.predict_response(model.manifest, result, validated, "request-id"), 1
        ),
        "handler": lambda: app.lambda_handler(event, context),
    }
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(2000):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            samples[name].append((time.perf_counter() - started) * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def median_ms(run: Callable[[], object], repetitions: int = 11) -> float:
    """The median of `repetitions` timed runs, after one untimed."""
    run()
    timings = []
    for _ in range(repetitions):
        started = time.perf_counter()
        run()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def model_alone(predictor: Any, batch: np.ndarray) -> dict[str, float]:
    """The model alone on a batch: scikit-learn's predict_proba, or each walk of the compiled forest
    (the native one on one thread and on two)."""
    if hasattr(predictor, "estimator"):
        return {"sklearn": median_ms(lambda: predictor.estimator.predict_proba(batch))}
    figures = {"numpy": median_ms(lambda: predictor.mean_output(batch, "numpy"))}
    if predictor.native is not None:
        X = np.ascontiguousarray(batch, dtype=np.float32)
        for threads in (1, 2):
            figures[f"native {threads}"] = median_ms(lambda threads=threads: predictor.native.mean_output(X, threads))
    return figures


def thread_sweep(predictor: Any, rows: np.ndarray) -> dict[int, dict[str, float]]:
    """Native walk milliseconds on one and two threads by batch size: where a second thread starts to pay."""
    sweep = {}
    for size in THREAD_SWEEP:
        X = np.ascontiguousarray(rows[:size], dtype=np.float32)
        sweep[size] = {str(t): median_ms(lambda X=X, t=t: predictor.native.mean_output(X, t), 31) for t in (1, 2)}
    return sweep


def main(store: str, name: str, rows_path: str, result_path: str) -> None:
    # ALLOW_PICKLE: the sklearn path's versions have no compiled forest
    app = import_function(store, name, ALLOW_PICKLE="true")
    from local_lambda.events import LocalContext, json_event

    rows = np.load(rows_path)
    context = LocalContext()
    result: dict[str, Any] = {"handler_ms": {}}
    for size, repetitions in BATCHES.items():
        event = json_event("POST", "/predict", {"instances": rows[:size].tolist()})
        for _ in range(3):
            if app.lambda_handler(event, context)["statusCode"] != 200:
                raise RuntimeError(f"{name}: the handler did not answer 200 to {size} rows")
        samples = []
        for _ in range(repetitions):
            started = time.perf_counter()
            app.lambda_handler(event, context)
            samples.append((time.perf_counter() - started) * 1000)
        result["handler_ms"][size] = {"p50": statistics.median(samples), "p99": percentile(samples, 0.99)}

    result["capture"] = capture_cost(app, rows, context)
    result["one_row_us"] = one_row_parts(app, rows, context)

    predictor = app.models.get().predictor
    batch = rows[:10_000]
    result["walk"] = getattr(predictor, "walk", "sklearn")
    result["model_10k_ms"] = model_alone(predictor, batch)
    if result["walk"] == "native":
        result["threads"] = predictor.native.threads_for(len(batch))
        result["thread_sweep"] = thread_sweep(predictor, rows)
    result["explain"] = explain_costs(app, rows, context)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(result_path).write_text(json.dumps(result))


# Timed runs of one measurement stop short of `repeats` once they would take longer than this (slow SHAP).
TIMED_SECONDS = 5.0


def timed(action: Any, repeats: int) -> float:
    """Median milliseconds of `action()` over `repeats` runs (after one untimed run that also sizes them)."""
    return timed_alternately([action], repeats)[0]


def timed_alternately(actions: list[Any], repeats: int) -> list[float]:
    """Median milliseconds of each action, run in turn `repeats` times (after one untimed round that also sizes
    them), so that a loaded machine slows each alike and their ratio holds."""
    started = time.perf_counter()
    for action in actions:
        action()
    first_ms = (time.perf_counter() - started) * 1000
    samples: list[list[float]] = [[] for _ in actions]
    for _ in range(max(1, min(repeats, int(TIMED_SECONDS * 1000 / max(first_ms, 1e-3))))):
        for action, timings in zip(actions, samples, strict=True):
            started = time.perf_counter()
            action()
            timings.append((time.perf_counter() - started) * 1000)
    return [statistics.median(timings) for timings in samples]


def explain_costs(app: Any, rows: np.ndarray, context: Any) -> dict[str, Any]:
    """Per method and batch size: the handler with and without explanations, and the engine alone.

    Engine alone: the prediction (walk and sum, as the handler predicts) against prediction plus
    explanation of the predicted class. Requests over the function's budget are answered 400: the
    handler figure is then missing and the engine figure, when affordable, still measured.
    """
    from lambda_forest.explain import ExplainOptions
    from local_lambda.events import json_event

    model = app.models.get()
    predictor, explainer = model.predictor, model.explainer
    costs: dict[str, Any] = {}
    for method in EXPLAIN_METHODS:
        options = ExplainOptions(method)
        per_row_ms = None
        for size, repeats in EXPLAIN_REPEATS.items():
            batch = rows[:size]
            entry: dict[str, Any] = {}
            plain_event = json_event("POST", "/predict", {"instances": batch.tolist()})
            event = json_event("POST", "/predict", {"instances": batch.tolist(), "explain": method})
            response = app.lambda_handler(event, context)  # the first Tree SHAP request also builds the paths
            status = response["statusCode"]
            if status == 200:
                entry["handler_ms"], entry["plain_handler_ms"] = timed_alternately(
                    [
                        lambda event=event: app.lambda_handler(event, context),
                        lambda event=plain_event: app.lambda_handler(event, context),
                    ],
                    repeats,
                )
            else:
                entry["status"] = status
                entry["refused"] = json.loads(response["body"])["error"]["message"]

            def predict(batch: np.ndarray = batch) -> None:
                predictor.predict(batch, True)

            def explain(batch: np.ndarray = batch, options: ExplainOptions = options) -> None:
                explainer.predict_and_explain(predictor, batch, True, options)

            if per_row_ms is not None and per_row_ms * size > EXPLAIN_MAX_SECONDS * 1000:
                entry["predict_ms"] = timed(predict, repeats)
                entry["estimated_ms"] = per_row_ms * size
            else:
                affordable = repeats if size < 10_000 or method == "path" else 1
                entry["predict_ms"], entry["explain_ms"] = timed_alternately([predict, explain], affordable)
                per_row_ms = entry["explain_ms"] / size  # from the largest batch measured so far
            costs.setdefault(method, {})[str(size)] = entry
    return costs


if __name__ == "__main__":
    main(*sys.argv[1:5])
