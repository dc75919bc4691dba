"""`python -m benchmarks` (or `make bench`): cold start, warm latency, memory and sizes for each serving path.

Serving paths: `sklearn` (model.joblib, full layer) and `compiled` (forest.npz, full or lean layer), for
the iris forest and a large one (100 trees, 100,000 rows x 50 features). Cold starts run the `sam build`
output under the Runtime Interface Emulator in fresh processes; warm figures come from the handler
called in a fresh process per model. Prints a Markdown table with ratios, then what mixed tables cost
(`benchmarks.tables`); needs `make build` first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import tables
from benchmarks.models import BenchModel, prepare
from local_lambda.emulator import BUILD_DIR, Emulator, layer_dir, local_environment
from local_lambda.events import json_event

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory_gb:.0f} GiB, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, numpy {metadata.version('numpy')}, "
        f"scikit-learn {metadata.version('scikit-learn')}"
    )


def cold_start(model: BenchModel, path: str, lean: bool, repeats: int) -> dict[str, float]:
    """Median init (INIT REPORT) and first response (init + first invoke) of fresh emulated functions."""
    event = json_event("POST", "/predict", {"instances": model.rows[:1].tolist()})
    inits, firsts = [], []
    for _ in range(repeats):
        environment = local_environment(
            model.store.uri,
            model.name(path),
            POWERTOOLS_LOG_LEVEL="WARNING",
            ALLOW_PICKLE=str(path == "sklearn").lower(),
        )
        with Emulator(environment, lean=lean) as emulator:
            started = time.perf_counter()
            response = emulator.invoke(event)
            firsts.append((time.perf_counter() - started) * 1000)
            if response.get("statusCode") != 200:
                raise RuntimeError(f"the emulated function did not answer 200: {response}")
            inits.append(emulator.init_duration_ms() or float("nan"))
    return {"init_ms": statistics.median(inits), "cold_ms": statistics.median(firsts)}


def warm(model: BenchModel, path: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        rows_file, result_file = Path(scratch) / "rows.npy", Path(scratch) / "result.json"
        np.save(rows_file, np.resize(model.rows, (10_000, model.rows.shape[1])))
        subprocess.run(  # this Python running benchmarks.warm: a fixed argument list  # nosec B603
            [
                sys.executable,
                "-m",
                "benchmarks.warm",
                model.store.uri,
                model.name(path),
                str(rows_file),
                str(result_file),
            ],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return json.loads(result_file.read_text())


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def artifact_mb(model: BenchModel, path: str, filename: str) -> float:
    store = model.store
    version = store.list_versions(model.name(path))[0]
    return len(store.read_file(model.name(path), version, filename)) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="fresh cold starts per configuration")
    args = parser.parse_args()
    if not layer_dir(BUILD_DIR).exists() or not layer_dir(BUILD_DIR, lean=True).exists():
        sys.exit("no build found: run `make build` first")

    models = prepare()
    rows: list[dict[str, Any]] = []
    for model in models:
        for path, lean in (("sklearn", False), ("compiled", False), ("compiled", True)):
            label = f"{model.label} {path}{' (lean layer)' if lean else ''}"
            print(f"measuring {label}", file=sys.stderr, flush=True)
            figures = {"model": model.label, "path": path, "lean": lean, **cold_start(model, path, lean, args.repeats)}
            if not lean:
                figures.update(warm(model, path))
            rows.append(figures)
    report(models, rows)
    tables.report()  # row validation and a 10,000-row mixed request


def report(models: list[BenchModel], rows: list[dict[str, Any]]) -> None:
    def find(model: str, path: str, lean: bool = False) -> dict[str, Any]:
        return next(r for r in rows if r["model"] == model and r["path"] == path and r["lean"] == lean)

    print(f"\nMachine: {machine()}\n")
    print(
        "| model | path | layer | init ms | cold start ms | cold vs sklearn | 1 row p50 / p99 ms | "
        "100 rows p50 ms | 10k rows p50 ms | model alone 10k ms | peak MB |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base = find(r["model"], "sklearn")
        ratio = r["cold_ms"] / base["cold_ms"]
        cells = [
            r["model"],
            r["path"],
            "lean" if r["lean"] else "full",
            f"{r['init_ms']:.0f}",
            f"{r['cold_ms']:.0f}",
            f"{ratio:.2f}x",
        ]
        if "handler_ms" in r:
            h = r["handler_ms"]
            cells += [
                f"{h['1']['p50']:.2f} / {h['1']['p99']:.2f}",
                f"{h['100']['p50']:.2f}",
                f"{h['10000']['p50']:.0f}",
                f"{r['model_10k_ms']:.0f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
        else:
            cells += ["", "", "", "", ""]
        print("| " + " | ".join(cells) + " |")

    print("\nRatios, compiled vs sklearn (targets in brackets):")
    for model in models:
        sk, co = find(model.label, "sklearn"), find(model.label, "compiled")
        lean = find(model.label, "compiled", lean=True)
        print(
            f"- {model.label}: cold start {co['cold_ms'] / sk['cold_ms']:.2f}x, lean layer "
            f"{lean['cold_ms'] / sk['cold_ms']:.2f}x [<= 0.4x]; "
            f"1-row handler p50 {sk['handler_ms']['1']['p50'] / co['handler_ms']['1']['p50']:.1f}x faster [>= 10x]; "
            f"10k rows, model alone {co['model_10k_ms'] / sk['model_10k_ms']:.2f}x the time [<= 1x]; "
            f"handler 10k {co['handler_ms']['10000']['p50'] / sk['handler_ms']['10000']['p50']:.2f}x"
        )
    print("\nCapture (CAPTURE_SAMPLE_RATE=1; the line goes to stdout, as in Lambda) [< 0.1 ms at 1 row]:")
    for r in rows:
        if "capture" in r:
            c = r["capture"]
            print(
                f"- {r['model']} {r['path']}: the capture alone {c['capture_1_us']:.0f} us at 1 row, "
                f"{c['capture_100_us']:.0f} us at 100 rows; 1-row handler p50 {c['handler_1_ms']['on']:.3f} ms "
                f"with capture, {c['handler_1_ms']['off']:.3f} ms without"
            )
    report_explanations(rows)
    print("\nSizes:")
    print(
        f"- layers (this architecture): full {size_mb(layer_dir(BUILD_DIR)):.1f} MB, "
        f"lean {size_mb(layer_dir(BUILD_DIR, lean=True)):.1f} MB [< 60 MB]; function "
        f"{size_mb(BUILD_DIR / 'PredictFunction'):.2f} MB"
    )
    for model in models:
        print(
            f"- {model.label}: model.joblib {artifact_mb(model, 'sklearn', 'model.joblib'):.2f} MB, "
            f"forest.npz {artifact_mb(model, 'compiled', 'forest.npz'):.2f} MB"
        )


def report_explanations(rows: list[dict[str, Any]]) -> None:
    """Explanation cost per model, serving path, method and batch size (engine: prediction + explanation)."""
    print(
        '\nExplanations of the predicted class (`"explain": METHOD`). Engine: the prediction alone, then '
        "prediction plus explanation, in ms, and their ratio; handler: the whole request, with and without:"
    )
    print("\n| model | path | method | rows | predict ms | predict + explain ms | ratio | handler ms | vs plain |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for method, sizes in r.get("explain", {}).items():
            for size, e in sizes.items():
                if "explain_ms" in e:
                    explained, ratio = f"{e['explain_ms']:.2f}", f"{e['explain_ms'] / e['predict_ms']:.2f}x"
                else:
                    explained, ratio = f"~{e['estimated_ms'] / 1000:.0f} s (estimated)", ""
                handler = f"{e['handler_ms']:.2f}" if "handler_ms" in e else f"{e.get('status', 400)} (refused)"
                versus = f"{e['handler_ms'] / e['plain_handler_ms']:.2f}x" if "handler_ms" in e else ""
                predicted = f"{e['predict_ms']:.2f}"
                print(
                    "| "
                    + " | ".join([r["model"], r["path"], method, size, predicted, explained, ratio, handler, versus])
                    + " |"
                )
    for r in rows:
        for method, sizes in r.get("explain", {}).items():
            refusal = next((e["refused"] for e in sizes.values() if "refused" in e), None)
            if refusal:
                print(f"- {r['model']} {r['path']} {method}: {refusal}")
    print(
        "- Targets: path contributions under 2x the prediction's time (engine ratio, compiled path); "
        "Tree SHAP on one iris row under 5 ms (engine, compiled)."
    )


if __name__ == "__main__":
    main()
