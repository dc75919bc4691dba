"""`python -m benchmarks.batch`: batch scoring throughput per worker, Lambda GB-seconds and cost per million rows.

One worker's work, measured in a fresh process per model, in CPU seconds (a worker at 1769 MB has one
vCPU to itself; the wall time on this shared machine is printed beside): a CSV file (the model's features plus an id
column) is scanned and its chunk scored by the same `lambda_forest.batch` code the ScoreChunk function
runs, reading and writing local files (on Lambda the reads are S3 Range GETs of 8 MB, about 90 MB/s per
worker, which the scan and the CSV parse overlap poorly: see "S3 read" in the table). From rows per
second follow GB-seconds per million rows at `BatchMemorySize` (1769 MB, one vCPU), the cost per million
rows and the time for 100 million rows at a given concurrency (formula and prices in PRICES and the README).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MEMORY_MB = 1769
S3_MB_PER_SECOND = 90.0  # one worker's sequential ranged GETs, the commonly observed figure; not measured here
# us-east-1 list prices, checked 2026-12-01 (AWS Lambda, Step Functions and S3 pricing pages).
PRICES = {
    "lambda_gb_second_x86": 0.0000166667,
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "standard_transition": 0.025 / 1000,  # score map: a child workflow per chunk, about 4 transitions each
    "s3_get": 0.0004 / 1000,
    "s3_put": 0.005 / 1000,
}
TRANSITIONS_PER_CHUNK = 4
BENCH_ROWS = {"iris": 400_000, "large": 40_000}


def write_input(path: Path, feature_names: list[str], X: np.ndarray) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", *feature_names])
        for index, row in enumerate(X.tolist()):
            writer.writerow([f"row-{index}", *row])


def measure_worker(store_uri: str, name: str, input_path: str) -> dict[str, Any]:
    """One worker: plan, scan and score the whole file as one chunk, in this (fresh) process."""
    from lambda_forest import batch
    from lambda_forest.objects import LocalInput, LocalOutput
    from lambda_forest.store import open_store
    from lambda_forest.table_files import format_of

    store = open_store(store_uri)
    source = LocalInput(Path(input_path))
    with tempfile.TemporaryDirectory() as scratch:
        output = LocalOutput(Path(scratch))
        request = batch.ScoreRequest(input_path, scratch, name, id_column="id", chunk_bytes=source.size)
        run = batch.plan(request, store, source, output, detect_format=format_of)
        # CPU time of this process: what a worker with one vCPU of its own spends (the machine that measures
        # may be shared; the wall time is reported beside it).
        started, wall = time.process_time(), time.perf_counter()
        for byte_range in batch.read_ranges(output):
            batch.scan(run, byte_range, source, output)
        [chunk] = batch.index(run, output)
        scanned = time.process_time()
        model = batch.model_for(run, store)
        loaded = time.process_time()
        result = batch.score(run, chunk, batch.text_records(source), output, model)
        scored = time.process_time()
        wall = time.perf_counter() - wall
    return {
        "rows": chunk.rows,
        "mb": source.size / 1e6,
        "scan_s": scanned - started,
        "load_s": loaded - scanned,
        "score_s": scored - loaded,
        "wall_s": wall,
        "scored": result.scored,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the forking parent's peak over)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def project(figures: dict[str, Any], concurrency: int, chunk_mb: float) -> dict[str, float]:
    """Per million rows: GB-seconds, cost; and the wall time for 100 million rows at `concurrency`."""
    seconds_per_row = (figures["scan_s"] + figures["score_s"]) / figures["rows"]
    s3_seconds_per_row = 2 * figures["mb"] / S3_MB_PER_SECOND / figures["rows"]  # read twice: scan, score
    worker_seconds_per_million = 1e6 * (seconds_per_row + s3_seconds_per_row)
    gb_seconds = worker_seconds_per_million * MEMORY_MB / 1024
    rows_per_chunk = figures["rows"] * chunk_mb / figures["mb"]
    chunks_per_million = 1e6 / rows_per_chunk
    requests = chunks_per_million * (
        2 * PRICES["lambda_request"]  # a scan and a score invocation per chunk
        + TRANSITIONS_PER_CHUNK * PRICES["standard_transition"]
        + (2 * chunk_mb / 8 + 2) * PRICES["s3_get"]  # 8 MB ranged GETs twice, the run file twice
        + 2 * PRICES["s3_put"]  # the part and a scan result
    )
    chunk_s = rows_per_chunk * (seconds_per_row + s3_seconds_per_row)
    waves = math.ceil(math.ceil(100e6 / rows_per_chunk) / concurrency)  # fewer chunks than workers: one wave
    return {
        "rows_per_s": 1 / seconds_per_row,
        "rows_per_s_with_s3": 1e6 / worker_seconds_per_million,
        "gb_s_per_million": gb_seconds,
        "usd_per_million_x86": gb_seconds * PRICES["lambda_gb_second_x86"] + requests,
        "usd_per_million_arm64": gb_seconds * PRICES["lambda_gb_second_arm64"] + requests,
        # Each wave of `concurrency` workers scores one chunk apiece (scan time is in seconds_per_row).
        "hundred_million_minutes": waves * chunk_s / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=100, help="workers at once for the 100M-row figure")
    parser.add_argument("--chunk-mb", type=float, default=64, help="chunk size assumed for per-chunk costs")
    parser.add_argument("--worker", nargs=3, metavar=("STORE", "NAME", "INPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_worker(*args.worker)))
        return

    from benchmarks.models import prepare

    lines = []
    for model in prepare():
        rows = BENCH_ROWS[model.label]
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "input.csv"
            write_input(path, _feature_names(model), np.resize(model.rows, (rows, model.rows.shape[1])))
            print(f"measuring one batch worker on {model.label} ({rows} rows)", file=sys.stderr, flush=True)
            result = subprocess.run(  # this Python running benchmarks.batch --worker: a fixed argument list  # nosec B603
                [
                    sys.executable,
                    "-m",
                    "benchmarks.batch",
                    "--worker",
                    model.store.uri,
                    model.name("compiled"),
                    str(path),
                ],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            )
        figures = json.loads(result.stdout)
        lines.append((model.label, figures, project(figures, args.concurrency, args.chunk_mb)))
    report(lines, args.concurrency, args.chunk_mb)


def _feature_names(model: Any) -> list[str]:
    from lambda_forest.manifest import Manifest

    name = model.name("compiled")
    return Manifest.from_json(model.store.read_manifest(name, model.store.list_versions(name)[0])).feature_names


def report(lines: list[tuple[str, dict[str, Any], dict[str, float]]], concurrency: int, chunk_mb: float) -> None:
    from benchmarks.__main__ import machine

    print(f"\nMachine: {machine()}\n")
    print(
        "| model | rows | CSV MB | scan MB/s | rows/s per worker | with S3 reads | "
        f"GB-s per 1M rows ({MEMORY_MB} MB) | $ per 1M rows x86 / arm64 | "
        f"100M rows at {concurrency} workers | peak MB | wall s here |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, figures, projected in lines:
        cells = [
            label,
            f"{figures['rows']:,}",
            f"{figures['mb']:.0f}",
            f"{figures['mb'] / figures['scan_s']:.0f}",
            f"{projected['rows_per_s']:,.0f}",
            f"{projected['rows_per_s_with_s3']:,.0f}",
            f"{projected['gb_s_per_million']:.0f}",
            f"{projected['usd_per_million_x86']:.4f} / {projected['usd_per_million_arm64']:.4f}",
            f"{projected['hundred_million_minutes']:.1f} min",
            f"{figures['peak_rss_mb']:.0f}",
            f"{figures['wall_s']:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        f"\nChunks of {chunk_mb:g} MB; S3 reads at {S3_MB_PER_SECOND:g} MB/s per worker (assumed), the file read twice "
        "(scan, score). Costs add Lambda requests, Step Functions transitions and S3 requests per chunk."
    )


if __name__ == "__main__":
    main()
