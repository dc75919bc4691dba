"""`python -m benchmarks.compare [--base REF]`: this tree's function against another commit's, in one run.

Both functions are built the way `sam build` builds them (functions/predict/Makefile) and share this
machine's built layer, so only the function's code differs. Measured on the iris forest (compiled):
- cold start: fresh emulated functions (Runtime Interface Emulator), alternating base and head: the init
  (INIT REPORT) and the first one-row `/predict` (init + model load + prediction);
- warm one-row `/predict` inside the handler: fresh processes, alternating, many requests each;
- this tree's warm one-row requests through each front door's event and in each protocol's shape.
Alternating keeps a shared machine's load from favouring either side; the ratios are head / base.
Needs `make build` (the layer) first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from benchmarks.in_process import percentile
from benchmarks.models import CACHE, prepare
from lambda_forest.front_doors import FUNCTION_URL, HTTP_API, REST_API
from local_lambda.emulator import BUILD_DIR, FUNCTION, Emulator, layer_dir, local_environment
from local_lambda.events import front_door_event, json_event

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_SOURCE = "functions/predict"
ROW = [[5.1, 3.5, 1.4, 0.2]]
MODEL = "iris-compiled"


def build_function(source: Path, build_dir: Path) -> Path:
    """Build the function in `source` (a functions/predict directory) into `build_dir` as `sam build` does,
    beside this machine's built layer."""
    artifacts = build_dir / FUNCTION
    artifacts.mkdir(parents=True)
    subprocess.run(  # make from PATH, as `sam build` runs it; a fixed argument list  # nosec B603, B607
        ["make", "-s", "-f", str(source / "Makefile"), f"build-{FUNCTION}", f"ARTIFACTS_DIR={artifacts}"],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    for layer in (layer_dir(BUILD_DIR), layer_dir(BUILD_DIR, lean=True)):
        if layer.exists():
            (build_dir / layer.parent.name).mkdir()
            (build_dir / layer.parent.name / layer.name).symlink_to(layer)
    return build_dir


def checkout_function(ref: str, into: Path) -> Path:
    """The functions/predict directory of commit `ref`, extracted into `into`."""
    # git from PATH; `ref` is the developer's own --base, passed as one argument, never to a shell.
    archive = subprocess.run(["git", "archive", ref, FUNCTION_SOURCE], cwd=ROOT, check=True, capture_output=True)  # nosec B603, B607
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / FUNCTION_SOURCE


def cold_start(build_dir: Path, store: str) -> tuple[float, float]:
    """Init ms (INIT REPORT) and ms to the first one-row answer of a fresh emulated function."""
    environment = local_environment(store, MODEL, POWERTOOLS_LOG_LEVEL="WARNING")
    with Emulator(environment, build_dir=build_dir) as emulator:
        started = time.perf_counter()
        response = emulator.invoke(json_event("POST", "/predict", {"instances": ROW}))
        first = (time.perf_counter() - started) * 1000
        assert response.get("statusCode") == 200, response
        return emulator.init_duration_ms() or float("nan"), first


def warm(code_dir: Path, store: str, event: dict[str, Any], requests: int) -> list[float]:
    """Per-request ms of one-row `event` through the handler of the function in `code_dir` (fresh process)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as event_file:
        json.dump(event, event_file)
        event_file.flush()
        command = [sys.executable, "-m", "benchmarks.one_row", str(code_dir), store, MODEL, event_file.name]
        # This Python running benchmarks.one_row: a fixed argument list.
        output = subprocess.run([*command, str(requests)], cwd=ROOT, check=True, capture_output=True, text=True)  # nosec B603
    return json.loads(output.stdout.strip().splitlines()[-1])


def one_row_events() -> dict[str, dict[str, Any]]:
    """One row in every shape this tree's function reads: each front door, each protocol."""
    names = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    row = ROW[0]

    def post(path: str, body: Any, content_type: str = "application/json", door: str = REST_API) -> dict[str, Any]:
        raw = body if isinstance(body, str) else json.dumps(body)
        return front_door_event(door, "POST", path, {"Content-Type": content_type}, raw.encode())

    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}
    return {
        "/predict instances, REST API": post("/predict", {"instances": ROW}),
        "/predict instances, HTTP API": post("/predict", {"instances": ROW}, door=HTTP_API),
        "/predict instances, function URL": post("/predict", {"instances": ROW}, door=FUNCTION_URL),
        "/predict MLflow dataframe_split": post("/predict", {"dataframe_split": {"columns": names, "data": ROW}}),
        "/predict CSV with header": post(
            "/predict", ",".join(names) + "\n" + ",".join(map(str, row)) + "\n", "text/csv"
        ),
        "/invocations MLflow dataframe_records": post(
            "/invocations", {"dataframe_records": [dict(zip(names, row, strict=True))]}
        ),
        "KServe V1 :predict": post(f"/v1/models/{MODEL}:predict", {"instances": ROW}),
        "Open Inference V2 infer": post(f"/v2/models/{MODEL}/infer", {"inputs": [tensor]}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="main", help="the commit to compare against (default %(default)s)")
    parser.add_argument("--head", help="the commit to compare (default: this working tree)")
    parser.add_argument("--cold-starts", type=int, default=15, help="fresh functions per side")
    parser.add_argument("--rounds", type=int, default=7, help="fresh warm processes per side")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per warm process")
    args = parser.parse_args()
    if not layer_dir(BUILD_DIR).exists():
        sys.exit("no build found: run `make build` first")

    [iris] = prepare(CACHE / "store", labels=("iris",))
    store = iris.store.uri
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        builds = {
            "base": build_function(checkout_function(args.base, scratch_dir / "base-src"), scratch_dir / "base"),
            "head": build_function(
                checkout_function(args.head, scratch_dir / "head-src") if args.head else ROOT / FUNCTION_SOURCE,
                scratch_dir / "head",
            ),
        }
        figures: dict[str, dict[str, list[float]]] = {side: {"init": [], "cold": [], "warm": []} for side in builds}
        print(f"cold starts: {args.cold_starts} per side, alternating", file=sys.stderr, flush=True)
        for _ in range(args.cold_starts):
            for side, build_dir in builds.items():
                init, first = cold_start(build_dir, store)
                figures[side]["init"].append(init)
                figures[side]["cold"].append(first)
        print(f"warm: {args.rounds} processes x {args.requests} requests per side", file=sys.stderr, flush=True)
        per_round: dict[str, list[float]] = {side: [] for side in builds}
        event = json_event("POST", "/predict", {"instances": ROW})
        for _ in range(args.rounds):
            for side, build_dir in builds.items():
                samples = warm(build_dir / FUNCTION, store, event, args.requests)
                figures[side]["warm"].extend(samples)
                per_round[side].append(statistics.median(samples))
        shapes = {}
        if not args.head:  # this tree's function reads every shape
            print("warm, this tree: one row in every shape", file=sys.stderr, flush=True)
            for label, shape_event in one_row_events().items():
                shapes[label] = warm(builds["head"] / FUNCTION, store, shape_event, args.requests)
    report(args.base, args.head or "this tree", figures, per_round, shapes)


def report(
    base: str,
    head: str,
    figures: dict[str, dict[str, list[float]]],
    per_round: dict[str, list[float]],
    shapes: dict[str, list[float]],
) -> None:
    def row(label: str, base_value: float, head_value: float, digits: int) -> str:
        ratio = head_value / base_value
        return f"| {label} | {base_value:.{digits}f} | {head_value:.{digits}f} | {ratio:.3f}x |"

    b, h = figures["base"], figures["head"]
    print(f"\n{head} against {base} (iris, compiled forest, REST API event; medians)\n")
    print(f"| measure | {base} | {head} | ratio |")
    print("|---|---:|---:|---:|")
    print(row("init ms", statistics.median(b["init"]), statistics.median(h["init"]), 1))
    print(
        row(
            "cold start ms (init + first 1-row /predict)", statistics.median(b["cold"]), statistics.median(h["cold"]), 1
        )
    )
    print(row("warm 1-row /predict p50 ms", statistics.median(b["warm"]), statistics.median(h["warm"]), 4))
    print(row("warm 1-row /predict p99 ms", percentile(b["warm"], 0.99), percentile(h["warm"], 0.99), 4))
    rounds = ", ".join(f"{x:.4f}/{y:.4f}" for x, y in zip(per_round["base"], per_round["head"], strict=True))
    print(f"\nwarm p50 per process pair (base/head): {rounds}")
    if shapes:
        print("\nThis tree, warm one-row requests by front door and protocol:\n")
        print("| request | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        for label, samples in shapes.items():
            print(f"| {label} | {statistics.median(samples):.4f} | {percentile(samples, 0.99):.4f} |")


if __name__ == "__main__":
    main()
