"""`python -m benchmarks` (or `make bench`): cold start, warm latency, memory and sizes for each serving path.

Serving paths: `sklearn` (model.joblib, full layer), and the compiled forest (forest.npz) walked by `numpy`
(NATIVE_WALKER=false) or by the `native` walker (full or lean layer), for the iris forest and a large one
(100 trees, 100,000 rows x 50 features). Cold starts run the `sam build` output under the Runtime
Interface Emulator in fresh processes, with the store on local disk and on moto's S3 server (boto3
client creation included), beside the floor: a fresh Python importing numpy, creating an S3 client and
making two GETs. Warm figures come from the handler called in a fresh process per model. Prints Markdown
tables with ratios and the targets, then what mixed tables cost (`benchmarks.tables`); needs
`make build` first.
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
from local_lambda.emulator import BUILD_DIR, RUNTIME_DIR, Emulator, ensure_runtime, layer_dir, local_environment
from local_lambda.events import json_event

ROOT = Path(__file__).resolve().parent.parent
# (serving path, lean layer): which file serves and how it is walked.
CONFIGURATIONS = (("sklearn", False), ("numpy", False), ("native", False), ("native", True))
STORE_NAME = {"sklearn": "sklearn", "numpy": "compiled", "native": "compiled"}
PATH_SETTINGS = {"sklearn": {"ALLOW_PICKLE": "true"}, "numpy": {"NATIVE_WALKER": "false"}, "native": {}}
BUCKET, PREFIX = "lambda-forest-bench", "models"
# Targets of the native-walker issue: model alone on 10,000 rows, against scikit-learn in the same run.
TARGETS = {("iris", 1): 0.6, ("large", 1): 0.4, ("iris", 2): 0.35, ("large", 2): 0.2}
FLOOR = """
import sys
import numpy, boto3
s3 = boto3.client("s3")
for key in sys.argv[2:]:
    s3.get_object(Bucket=sys.argv[1], Key=key)["Body"].read()
"""


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


def cold_start(model: BenchModel, path: str, lean: bool, store_uri: str, repeats: int) -> dict[str, float]:
    """Median init (INIT REPORT) and first response (init + first invoke) of fresh emulated functions."""
    event = json_event("POST", "/predict", {"instances": model.rows[:1].tolist()})
    inits, firsts = [], []
    for _ in range(repeats):
        environment = local_environment(
            store_uri, model.name(STORE_NAME[path]), POWERTOOLS_LOG_LEVEL="WARNING", **PATH_SETTINGS[path]
        )
        with Emulator(environment, lean=lean) as emulator:
            started = time.perf_counter()
            response = emulator.invoke(event)
            firsts.append((time.perf_counter() - started) * 1000)
            if response.get("statusCode") != 200:
                raise RuntimeError(f"the emulated function did not answer 200: {response}")
            inits.append(emulator.init_duration_ms() or float("nan"))
    return {"init_ms": statistics.median(inits), "cold_ms": statistics.median(firsts)}


def floor_ms(model: BenchModel, repeats: int) -> float:
    """A fresh Python (the lean layer's numpy, the runtime's boto3) importing numpy, creating an S3 client
    and GETting the alias and the compiled forest: the least any S3-backed serving path could take."""
    store = model.store
    name = model.name("compiled")
    version = store.list_versions(name)[0]
    keys = [f"{PREFIX}/{name}/aliases/live.json", f"{PREFIX}/{name}/versions/{version}/forest.npz"]
    env = {
        **local_environment(f"s3://{BUCKET}/{PREFIX}", name),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(map(str, (layer_dir(BUILD_DIR, lean=True), ensure_runtime(RUNTIME_DIR)))),
    }
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        # This Python with a fixed program and the bench store's keys.
        subprocess.run([sys.executable, "-S", "-c", FLOOR, BUCKET, *keys], env=env, check=True)  # nosec B603
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


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
                model.name(STORE_NAME[path]),
                str(rows_file),
                str(result_file),
            ],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, **PATH_SETTINGS[path]},
        )
        return json.loads(result_file.read_text())


class S3Bench:
    """The benchmark's store copied into a bucket on moto's S3 server (on loopback), for S3 cold starts."""

    def __init__(self, store_root: Path) -> None:
        from moto.server import ThreadedMotoServer

        from local_lambda.emulator import free_port

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.store_root = store_root

    def __enter__(self) -> str:
        import boto3

        self.server.start()
        os.environ.update(
            AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{self.port}",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",  # moto's server takes any credentials  # nosec B106
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
        )
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for path in self.store_root.rglob("*"):
            if path.is_file() and not path.name.endswith(".lock"):
                s3.upload_file(str(path), BUCKET, f"{PREFIX}/{path.relative_to(self.store_root).as_posix()}")
        return f"s3://{BUCKET}/{PREFIX}"

    def __exit__(self, *_: Any) -> None:
        self.server.stop()
        os.environ.pop("AWS_ENDPOINT_URL_S3", None)


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
    floors: dict[str, float] = {}
    with S3Bench(models[0].store.root) as s3_uri:
        for model in models:
            print(f"measuring the floor for {model.label}", file=sys.stderr, flush=True)
            floors[model.label] = floor_ms(model, args.repeats)
            for path, lean in CONFIGURATIONS:
                print(f"measuring {model.label} {path}{' (lean layer)' if lean else ''}", file=sys.stderr, flush=True)
                local = cold_start(model, path, lean, model.store.uri, args.repeats)
                s3 = cold_start(model, path, lean, s3_uri, args.repeats)
                figures = {"model": model.label, "path": path, "lean": lean, **local, "s3_cold_ms": s3["cold_ms"]}
                if not lean:
                    figures.update(warm(model, path))
                rows.append(figures)
    report(models, rows, floors)
    tables.report()  # row validation and a 10,000-row mixed request


def load_average() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def report(models: list[BenchModel], rows: list[dict[str, Any]], floors: dict[str, float]) -> None:
    def find(model: str, path: str, lean: bool = False) -> dict[str, Any]:
        return next(r for r in rows if r["model"] == model and r["path"] == path and r["lean"] == lean)

    print(f"\nMachine: {machine()}; load average at the end {load_average()}\n")
    print(
        "| model | path | layer | init ms | cold start ms | cold vs sklearn | cold, S3 store ms | S3 vs floor | "
        "1 row p50 / p99 ms | 100 rows p50 ms | 10k rows p50 ms | peak MB |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base = find(r["model"], "sklearn")
        cells = [
            r["model"],
            r["path"],
            "lean" if r["lean"] else "full",
            f"{r['init_ms']:.0f}",
            f"{r['cold_ms']:.0f}",
            f"{r['cold_ms'] / base['cold_ms']:.2f}x",
            f"{r['s3_cold_ms']:.0f}",
            f"{r['s3_cold_ms'] / floors[r['model']]:.2f}x",
        ]
        if "handler_ms" in r:
            h = r["handler_ms"]
            cells += [
                f"{h['1']['p50']:.3f} / {h['1']['p99']:.3f}",
                f"{h['100']['p50']:.2f}",
                f"{h['10000']['p50']:.0f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
        else:
            cells += ["", "", "", ""]
        print("| " + " | ".join(cells) + " |")
    for model in models:
        print(f"\nFloor, {model.label} (python + numpy + an S3 client + two GETs): {floors[model.label]:.0f} ms")

    print("\nThe model alone on 10,000 rows, ms (ratio to scikit-learn's predict_proba; target in brackets):\n")
    print("| model | sklearn | numpy walk | native, 1 thread | native, 2 threads | threads chosen |")
    print("|---|---:|---:|---:|---:|---:|")
    for model in models:
        sk = find(model.label, "sklearn")["model_10k_ms"]["sklearn"]
        walks = find(model.label, "numpy")["model_10k_ms"]
        native = find(model.label, "native")
        cells = [model.label, f"{sk:.1f}", f"{walks['numpy']:.1f} ({walks['numpy'] / sk:.2f}x)"]
        for threads in (1, 2):
            ms = native["model_10k_ms"][f"native {threads}"]
            cells.append(f"{ms:.1f} ({ms / sk:.2f}x) [{TARGETS[(model.label, threads)]}x]")
        cells.append(str(native["threads"]))
        print("| " + " | ".join(cells) + " |")

    print("\nNative walk by batch size, 1 vs 2 threads, ms (where a second thread starts to pay):\n")
    sizes = list(find(models[0].label, "native")["thread_sweep"])
    print("| model | " + " | ".join(f"{size} rows" for size in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for model in models:
        sweep = find(model.label, "native")["thread_sweep"]
        cells = [f"{sweep[size]['1']:.3f} / {sweep[size]['2']:.3f}" for size in sizes]
        print(f"| {model.label} | " + " | ".join(cells) + " |")

    print("\nTargets:")
    for model in models:
        sk, nu, na = (find(model.label, path) for path in ("sklearn", "numpy", "native"))
        print(
            f"- {model.label}: 1-row handler p50 {na['handler_ms']['1']['p50']:.3f} ms (numpy walk "
            f"{nu['handler_ms']['1']['p50']:.3f}, sklearn {sk['handler_ms']['1']['p50']:.3f}) [iris <= 0.1 ms]; "
            f"S3 cold start {na['s3_cold_ms'] / floors[model.label]:.2f}x the floor (lean layer "
            f"{find(model.label, 'native', True)['s3_cold_ms'] / floors[model.label]:.2f}x) [<= 1.3x]; "
            f"handler 10k {na['handler_ms']['10000']['p50'] / sk['handler_ms']['10000']['p50']:.2f}x sklearn's"
        )
    print("\nOne row inside the handler, median us per step (the rest is Powertools and the event):")
    for r in rows:
        if "one_row_us" in r:
            parts = r["one_row_us"]
            own = sum(parts[step] for step in ("parse", "validate", "predict", "respond"))
            print(
                f"- {r['model']} {r['path']}: parse {parts['parse']:.1f}, validate {parts['validate']:.1f}, "
                f"predict {parts['predict']:.1f}, respond {parts['respond']:.1f} (together {own:.1f}); "
                f"the whole handler {parts['handler']:.1f}, so routing, logging, metrics and tracing "
                f"{parts['handler'] - own:.1f}"
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
