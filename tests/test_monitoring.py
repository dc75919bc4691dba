"""The monitor on synthetic captures of known drift and known accuracy, on both kinds of store."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from lambda_forest import drift
from lambda_forest.capture import label_line, timestamp
from lambda_forest.config import parse_window
from lambda_forest.monitor_report import render_html, render_text
from lambda_forest.monitoring import build_report, exit_code
from lambda_forest.store import CAPTURES, LABELS
from training.cli import main

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
VERSION = "20261120T100000Z-0123abcd"
TRAINING_ROWS = 2000
FEATURES = ["income", "age", "region"]
REGIONS = {"north": 0.5, "south": 0.3, "west": 0.2}


def training_table(rng: np.random.Generator, rows: int = TRAINING_ROWS) -> dict[str, np.ndarray]:
    return {
        "income": rng.normal(50_000, 10_000, rows),
        "age": rng.normal(40, 12, rows),
        "region": rng.choice(list(REGIONS), rows, p=list(REGIONS.values())),
    }


def frozen_bins(values: np.ndarray) -> dict[str, list[float]]:
    edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)))
    counts, _ = np.histogram(values, bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def stats(values: np.ndarray) -> dict[str, float]:
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
    }


def manifest_body(task: str = "classification", with_features: bool = True) -> dict[str, Any]:
    """A manifest as training writes it (shared/DESIGN.md section 2); the monitor reads no model file."""
    table = training_table(np.random.default_rng(0))
    body: dict[str, Any] = {
        "format": 1,
        "name": "loans",
        "version": VERSION,
        "created_at": "2026-11-20T10:00:00Z",
        "task": task,
        "estimator": "RandomForestClassifier" if task == "classification" else "RandomForestRegressor",
        "params": {},
        "target": "outcome",
        "feature_names": FEATURES,
        "metrics": {"accuracy": 0.9, "f1_macro": 0.88} if task == "classification" else {"rmse": 10.0, "mae": 8.0},
        "training_data": {"source": "synthetic", "rows": TRAINING_ROWS, "sha256": "0" * 64},
        "feature_stats": {name: stats(table[name]) for name in ("income", "age")},
        "artifact": {"file": "model.joblib", "sha256": "0" * 64, "bytes": 1},
        "runtime": {},
    }
    if task == "classification":
        body["classes"] = ["no", "yes"]
        body["prediction_baseline"] = {"rows": 400, "class_shares": {"no": 0.7, "yes": 0.3}}
    else:
        holdout = np.random.default_rng(1).normal(100, 20, 400)
        body["prediction_baseline"] = {"rows": 400, "stats": stats(holdout), "bins": frozen_bins(holdout)}
    if with_features:
        body["features"] = [
            {
                "name": "income",
                "type": "numeric",
                "missing_rate": 0.0,
                "stats": stats(table["income"]),
                "bins": frozen_bins(table["income"]),
            },
            {
                "name": "age",
                "type": "numeric",
                "missing_rate": 0.0,
                "stats": stats(table["age"]),
                "bins": frozen_bins(table["age"]),
            },
            {
                "name": "region",
                "type": "categorical",
                "categories": list(REGIONS),
                "missing_rate": 0.0,
                "frequencies": REGIONS,
            },
        ]
        body["data_report"] = {"rows_read": TRAINING_ROWS, "rows_used": TRAINING_ROWS}
    return body


def publish_manifest(store: Any, body: dict[str, Any]) -> None:
    store.publish(body["name"], body["version"], {}, json.dumps(body).encode())


def capture_lines(
    rng: np.random.Generator,
    rows: int,
    *,
    income_shift: float = 0.0,
    unknown_region_share: float = 0.0,
    predictions: list[Any] | None = None,
    start: datetime = NOW - timedelta(days=2),
    per_request: int = 10,
    version: str = VERSION,
) -> list[bytes]:
    """Capture lines of `rows` rows drawn like the training data, with the drift asked for."""
    table = training_table(rng, rows)
    income = table["income"] + income_shift * 10_000
    regions = table["region"].astype(object)
    regions[rng.random(rows) < unknown_region_share] = "east"
    predicted = predictions if predictions is not None else list(rng.choice(["no", "yes"], rows, p=[0.7, 0.3]))
    classify = all(isinstance(value, str) for value in predicted)  # a regressor's captures have no probabilities
    lines = []
    for first in range(0, rows, per_request):
        batch = range(first, min(first + per_request, rows))
        when = start + timedelta(minutes=first)
        lines.append(
            orjson.dumps(
                {
                    "kind": "prediction",
                    "request_id": f"req-{first}",
                    "time": timestamp(when),
                    "model": {"name": "loans", "version": version},
                    "alias": "live",
                    "features": FEATURES,
                    "rows": [[float(income[i]), float(table["age"][i]), regions[i]] for i in batch],
                    "row_ids": [f"row-{i}" for i in batch],
                    "row_count": len(batch),
                    "predictions": [predicted[i] for i in batch],
                    "probabilities": [[0.8, 0.2] if predicted[i] == "no" else [0.3, 0.7] for i in batch]
                    if classify
                    else None,
                    "warnings": [],
                }
            )
        )
    return lines


def write_captures(store: Any, lines: list[bytes], when: datetime = NOW - timedelta(days=2)) -> None:
    store.write_records("loans", CAPTURES, lines, when)


def report_of(store: Any, days: int = 7) -> dict[str, Any]:
    return build_report(store, "loans", NOW - timedelta(days=days), NOW)


def by_feature(version: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {feature["name"]: feature for feature in version["features"]}


def test_known_drift_is_found_and_unchanged_features_are_not(store: Any) -> None:
    publish_manifest(store, manifest_body())
    write_captures(store, capture_lines(np.random.default_rng(5), 1000, income_shift=1.5, unknown_region_share=0.1))
    report = report_of(store)
    [version] = report["versions"]
    features = by_feature(version)
    assert features["income"]["psi"] > drift.PSI_ALERT and features["income"]["status"] == "alert"
    assert features["income"]["wasserstein_norm"] > 1.0
    assert features["age"]["psi"] < drift.PSI_WARN and features["age"]["status"] == "ok"
    region = features["region"]
    assert region["unknown_rate"]["live"] == pytest.approx(0.1, abs=0.03)
    assert region["unknown_values"][0]["value"] == "east"
    assert region["buckets"][-1] == drift.UNKNOWN and region["live_shares"][-1] > 0.05
    assert region["status"] in ("warn", "alert")
    assert (report["status"], exit_code(report)) == ("alert", 2)


def test_traffic_drawn_like_the_training_data_does_not_warn(store: Any) -> None:
    publish_manifest(store, manifest_body())
    for seed in range(3):  # several independent windows: none may warn
        start = NOW - timedelta(days=2 * seed + 2)
        write_captures(store, capture_lines(np.random.default_rng(100 + seed), 300, start=start), start)
        report = build_report(store, "loans", start, start + timedelta(days=1))
        [version] = report["versions"]
        assert all(feature["status"] == "ok" for feature in version["features"]), by_feature(version)
        assert version["predictions"]["status"] == "ok"
        assert exit_code(report) == 0


def test_a_small_window_is_reported_but_never_judged(store: Any) -> None:
    publish_manifest(store, manifest_body())
    write_captures(store, capture_lines(np.random.default_rng(2), drift.MIN_ROWS - 10, income_shift=3.0))
    report = report_of(store)
    income = by_feature(report["versions"][0])["income"]
    assert income["psi"] > drift.PSI_ALERT and income["status"] == "insufficient"
    assert exit_code(report) == 0


def test_output_drift_compares_predicted_class_shares_with_the_holdouts(store: Any) -> None:
    publish_manifest(store, manifest_body())
    write_captures(store, capture_lines(np.random.default_rng(3), 600, predictions=["yes"] * 500 + ["no"] * 100))
    predictions = report_of(store)["versions"][0]["predictions"]
    assert predictions["buckets"] == ["no", "yes"] and predictions["training_shares"] == [0.7, 0.3]
    assert predictions["live_shares"] == pytest.approx([1 / 6, 5 / 6], abs=1e-6)
    assert predictions["psi"] > drift.PSI_ALERT and predictions["status"] == "alert"


def labels_for(lines: list[bytes], truth: Any, when: datetime = NOW) -> list[bytes]:
    """Label lines for every captured row: `truth(row_index, prediction)` gives the label."""
    labelled = []
    for line in lines:
        record = orjson.loads(line)
        for row_id, predicted in zip(record["row_ids"], record["predictions"], strict=True):
            labelled.append(label_line(row_id, truth(int(row_id.split("-")[1]), predicted), timestamp(when)))
    return labelled


def test_live_accuracy_with_row_counts_against_the_holdout(store: Any) -> None:
    publish_manifest(store, manifest_body())
    lines = capture_lines(np.random.default_rng(4), 400)
    write_captures(store, lines)
    # 300 of 400 labels agree with the prediction: accuracy 0.75 against a hold-out 0.9.
    labels = labels_for(lines, lambda row, predicted: predicted if row % 4 else ("yes" if predicted == "no" else "no"))
    store.write_records("loans", LABELS, [*labels, label_line("nobody", "yes", timestamp(NOW))], NOW)
    report = report_of(store)
    quality = report["versions"][0]["quality"]
    assert quality["rows"] == 400 and quality["accuracy"] == 0.75
    assert 0 < quality["f1_macro"] < 1 and quality["log_loss"] > 0 and quality["log_loss_rows"] == 400
    assert quality["holdout"]["accuracy"] == 0.9 and quality["status"] == "alert"
    assert report["labels"] == {"distinct_rows": 401, "joined": 400, "unmatched": 1}
    assert sum(period["rows"] for period in quality["over_time"]) == 400
    assert report["period"] == "day" and len(quality["over_time"][0]["period"]) == len("2026-11-29")


def test_the_latest_label_of_a_row_wins_and_labels_may_come_after_the_window(store: Any) -> None:
    publish_manifest(store, manifest_body())
    lines = capture_lines(np.random.default_rng(4), 100)
    write_captures(store, lines)
    first, corrected = NOW + timedelta(hours=1), NOW + timedelta(hours=2)  # after the window's end
    wrong = labels_for(lines, lambda row, predicted: "yes" if predicted == "no" else "no", first)
    store.write_records("loans", LABELS, labels_for(lines, lambda row, predicted: predicted, corrected), corrected)
    store.write_records("loans", LABELS, wrong, first)
    assert report_of(store)["versions"][0]["quality"]["accuracy"] == 1.0


def test_regression_quality_is_rmse_and_mae(store: Any) -> None:
    publish_manifest(store, manifest_body("regression"))
    rng = np.random.default_rng(6)
    predicted = rng.normal(100, 20, 200).tolist()
    lines = capture_lines(rng, 200, predictions=predicted)
    write_captures(store, lines)
    store.write_records("loans", LABELS, labels_for(lines, lambda row, value: value + (3.0 if row % 2 else -3.0)), NOW)
    version = report_of(store)["versions"][0]
    quality = version["quality"]
    assert quality["rows"] == 200 and quality["rmse"] == pytest.approx(3.0) and quality["mae"] == pytest.approx(3.0)
    assert quality["status"] == "ok"  # 3.0 against a hold-out RMSE of 10
    predictions = version["predictions"]  # drawn like the hold-out's: under the noise floor of 200 vs 400 rows
    assert predictions["status"] == "ok" and predictions["psi"] < predictions["psi_noise"]


def test_malformed_lines_and_unreadable_files_are_skipped_and_counted(store: Any) -> None:
    publish_manifest(store, manifest_body())
    good = capture_lines(np.random.default_rng(7), 100)
    broken = [b"{not json", b'{"kind": "prediction", "time": "2026-11-29T10:00:00.000Z"}', b"\xff\xfe", b""]
    write_captures(store, good[:5] + broken + good[5:])
    store._create(f"loans/captures/{NOW - timedelta(days=1):%Y/%m/%d/%H}/firehose-1.jsonl.gz", b"\x1f\x8b" + b"cut")
    report = report_of(store)
    read = report["read"]["captures"]
    assert (read["records"], read["malformed"], read["unreadable_files"]) == (10, 3, 1)
    assert report["versions"][0]["captured_rows"] == 100
    assert "skipped 3 malformed line(s), 1 unreadable file(s)" in render_text(report)


def a_capture(**changes: Any) -> bytes:
    record = {
        "kind": "prediction",
        "request_id": "odd",
        "time": timestamp(NOW - timedelta(days=2)),
        "model": {"name": "loans", "version": VERSION},
        "alias": "live",
        "features": FEATURES,
        "rows": [[50_000.0, 40.0, "north"]],
        "row_ids": ["odd-0"],
        "row_count": 1,
        "predictions": ["no"],
        "probabilities": [[0.8, 0.2]],
        "warnings": [],
    }
    return orjson.dumps(record | changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"features": ["income", "age"], "rows": [[50_000.0, 40.0]]},  # another model's columns
        {"rows": [[{"a": 1}, 40.0, "north"]]},  # an object for a number
        {"rows": [["50000", 40.0, "north"]]},  # text for a number
        {"rows": [[50_000.0, 40.0, ["north"]]]},  # a list for a category
        {"predictions": ["maybe"]},  # not a class of the model
        {"probabilities": [[0.5]]},  # not one per class
        {"row_ids": [7]},
        {"row_count": "many"},
    ],
    ids=["features", "object", "text", "list", "class", "probabilities", "row-id", "row-count"],
)
def test_a_capture_that_does_not_fit_its_versions_manifest_is_skipped_and_counted(
    store: Any, changes: dict[str, Any]
) -> None:
    publish_manifest(store, manifest_body())
    write_captures(store, [a_capture(**changes), *capture_lines(np.random.default_rng(7), 200, income_shift=2.0)])
    report = report_of(store)
    assert (report["read"]["captures"]["records"], report["read"]["captures"]["malformed"]) == (20, 1)
    [version] = report["versions"]
    assert version["captured_rows"] == 200 and version["status"] == "alert"  # the odd line hides nothing


def test_a_regressors_odd_predictions_and_labels_are_skipped(store: Any) -> None:
    publish_manifest(store, manifest_body("regression"))
    values = np.random.default_rng(1).normal(100, 20, 100).tolist()
    lines = capture_lines(np.random.default_rng(7), 100, predictions=values)
    write_captures(store, [a_capture(predictions=["high"], probabilities=None), *lines])
    truth = [*labels_for(lines, lambda row, predicted: predicted), label_line("row-3", "high", timestamp(NOW))]
    store.write_records("loans", LABELS, truth, NOW)
    report = report_of(store)
    assert report["read"]["captures"]["malformed"] == 1
    [version] = report["versions"]
    assert version["quality"]["rows"] == 99 and version["quality"]["rmse"] == 0.0


def test_firehose_objects_are_read_gzipped_by_hour(store: Any) -> None:
    publish_manifest(store, manifest_body())
    lines = capture_lines(np.random.default_rng(8), 60)
    hour = NOW - timedelta(hours=5)
    key = f"loans/captures/{hour:%Y/%m/%d/%H}/lambda-forest-captures-1-{hour:%Y-%m-%d-%H-%M-%S}-abc.jsonl.gz"
    store._create(key, gzip.compress(b"\n".join(lines) + b"\n"))
    assert report_of(store)["versions"][0]["captured_rows"] == 60


def test_the_window_reads_only_its_own_hours(store: Any) -> None:
    publish_manifest(store, manifest_body())
    write_captures(
        store, capture_lines(np.random.default_rng(9), 50, start=NOW - timedelta(days=20)), NOW - timedelta(days=20)
    )
    recent = capture_lines(np.random.default_rng(9), 70, start=NOW - timedelta(hours=3))
    write_captures(store, recent, NOW - timedelta(hours=3))
    report = report_of(store, days=1)
    assert report["read"]["captures"]["files"] == 1 and report["versions"][0]["captured_rows"] == 70


def test_no_captures_says_so_and_is_not_a_failure(store: Any) -> None:
    publish_manifest(store, manifest_body())
    report = report_of(store)
    assert (report["status"], report["versions"], exit_code(report)) == ("no_data", [], 0)
    assert "no captured predictions in this window" in render_text(report)


def test_a_manifest_without_features_still_gets_what_can_be_said(store: Any) -> None:
    publish_manifest(store, manifest_body(with_features=False))
    write_captures(store, capture_lines(np.random.default_rng(10), 200, income_shift=2.0))
    income = by_feature(report_of(store)["versions"][0])["income"]
    assert income["status"] == "unavailable" and "no frozen training bins" in income["note"]
    assert income["mean_shift_in_std"] == pytest.approx(2.0, abs=0.3)
    assert income["outside_training_range"] >= 0


def test_each_version_is_judged_against_its_own_manifest(store: Any) -> None:
    publish_manifest(store, manifest_body())
    other = manifest_body() | {"version": "20261125T100000Z-0badf00d"}
    publish_manifest(store, other)
    store.set_alias("loans", "live", other["version"])
    write_captures(store, capture_lines(np.random.default_rng(11), 100, income_shift=2.0))
    write_captures(store, capture_lines(np.random.default_rng(12), 100, version=other["version"]))
    first, second = report_of(store)["versions"]
    assert (first["version"], first["aliases"], first["status"]) == (other["version"], ["live"], "ok")
    assert (second["version"], second["status"]) == (VERSION, "alert")


def test_html_report_has_a_plot_per_feature_and_quality_over_time(store: Any) -> None:
    publish_manifest(store, manifest_body())
    lines = capture_lines(np.random.default_rng(13), 200, income_shift=1.0, unknown_region_share=0.1)
    write_captures(store, lines)
    store.write_records("loans", LABELS, labels_for(lines, lambda row, predicted: predicted), NOW)
    page = render_html(report_of(store))
    assert page.startswith("<!doctype html>") and page.count("<svg") >= len(FEATURES) + 2
    assert "income: PSI" in page and "live accuracy" in page and "east" in page
    assert "<script" not in page  # self-contained and static


def test_odd_values_keep_the_report_readable(store: Any) -> None:
    publish_manifest(store, manifest_body())
    lines = capture_lines(np.random.default_rng(13), 200, unknown_region_share=0.1)
    long_value = "an unknown region " + "x" * 200
    odd = [[3.0e38, 40.0, long_value], [50_000.0, 41.0, "<b>east</b>"]]
    write_captures(
        store,
        [*lines, a_capture(rows=odd, row_ids=["o-1", "o-2"], row_count=2, predictions=["no"] * 2, probabilities=None)],
    )
    report = report_of(store)
    text, page = render_text(report), render_html(report)
    income = next(line for line in text.splitlines() if line.strip().startswith("income"))
    assert len(income) < 130 and "e+" in income  # a huge distance in a few characters, not 36 digits
    assert long_value not in text and long_value not in page and "an unknown region" in page  # cut short
    assert "&amp;" not in page and "\u00d7" in page  # counts read "east \u00d711", not "&times;11"
    assert "<b>east</b>" not in page and "&lt;b&gt;east&lt;/b&gt;" in page  # a caller's value is text, never markup
    assert "(missing)" in page  # the missing bucket is named under its bar in a feature's histogram


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("36h", timedelta(hours=36)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_windows_read_like_people_write_them(text: str, expected: timedelta) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize("text", ["7", "d", "-1d", "7y", "nand"])
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a window"):
        parse_window(text)


def test_psi_statistics_agree_with_scipy() -> None:
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2

    p, q = [0.2, 0.5, 0.3, 0.0], [0.1, 0.4, 0.3, 0.2]
    assert drift.js_distance(p, q) == pytest.approx(jensenshannon(p, q), rel=1e-12)
    for dof in (3, 9, 30):
        assert drift.chi2_quantile(0.99, dof) == pytest.approx(chi2.ppf(0.99, dof), rel=0.01)
    assert drift.psi([100, 100], [100, 100]) == 0.0


def test_wasserstein_to_bins_tracks_scipys_on_shifted_data() -> None:
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(0)
    training = rng.normal(size=5000)
    bins = frozen_bins(training)
    assert drift.wasserstein_to_bins(training, bins["edges"], bins["counts"]) == pytest.approx(0.0, abs=1e-9)
    for shift in (0.5, 2.0):
        live = rng.normal(shift, 1, 5000)
        ours = drift.wasserstein_to_bins(live, bins["edges"], bins["counts"])
        assert ours == pytest.approx(wasserstein_distance(live, training), rel=0.25)


# The command line.


def test_monitor_command_prints_a_summary_writes_html_and_exits_by_status(
    local_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_manifest(local_store, manifest_body())
    write_captures(local_store, capture_lines(np.random.default_rng(14), 400, income_shift=2.0), datetime.now(UTC))
    html_path = tmp_path / "report.html"
    code = main(["--store", str(local_store.root), "monitor", "--name", "loans", "--html", str(html_path)])
    out = capsys.readouterr()
    assert code == 2
    assert "version " + VERSION in out.out and "income" in out.out and "alert" in out.out
    assert html_path.read_text().startswith("<!doctype html>") and f"HTML report: {html_path}" in out.err

    assert main(["--store", str(local_store.root), "monitor", "--name", "loans", "--json", "--no-html", "--save"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "alert" and report["versions"][0]["captured_rows"] == 400
    saved = local_store._list("loans/reports/")
    assert sorted(key.rsplit("/", 1)[1] for key in saved) == ["report.html", "report.json"]


def test_monitor_command_without_captures_exits_0(local_store: Any, capsys: pytest.CaptureFixture[str]) -> None:
    publish_manifest(local_store, manifest_body())
    assert main(["--store", str(local_store.root), "monitor", "--name", "loans", "--since", "24h"]) == 0
    assert "no captured predictions in this window" in capsys.readouterr().out


def test_monitor_command_errors_have_their_own_exit_code(local_store: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--store", str(local_store.root), "monitor", "--name", "nothing"]) == 4
    assert capsys.readouterr().err.startswith("error: Model nothing has no published versions")
    publish_manifest(local_store, manifest_body())
    assert (
        main(
            [
                "--store",
                str(local_store.root),
                "monitor",
                "--name",
                "loans",
                "--since",
                "2026-12-02",
                "--until",
                "2026-12-01",
            ]
        )
        == 4
    )


@pytest.mark.parametrize(
    "arguments", [["--name", "loans", "--since", "3x"], ["--since", "7d"], ["--name", "loans", "--bogus"]]
)
def test_a_monitor_command_line_mistake_is_not_read_as_an_alert(
    local_store: Any, capsys: pytest.CaptureFixture[str], arguments: list[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--store", str(local_store.root), "monitor", *arguments])
    assert stopped.value.code == 4  # argparse's own 2 would gate a CI run as "alert"
    assert "error:" in capsys.readouterr().err


def test_labels_upload_records_a_checked_csv(
    local_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_manifest(local_store, manifest_body())
    local_store.set_alias("loans", "live", VERSION)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("id,label\nrow-1,yes\nrow-2, no\n\n")
    assert main(["--store", str(local_store.root), "labels", "upload", str(csv_file), "--name", "loans"]) == 0
    assert "recorded 2 label(s) in 1 file(s)" in capsys.readouterr().out
    [key] = local_store.list_records("loans", LABELS)
    records = [orjson.loads(line) for line in local_store.read_records(key).splitlines()]
    assert [(r["kind"], r["row_id"], r["label"]) for r in records] == [
        ("label", "row-1", "yes"),
        ("label", "row-2", "no"),
    ]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("id,label\nrow-1,yes\nrow-2,maybe\n", "labels.csv line 3: the label is 'maybe', not a class of this model"),
        ("row,truth\nrow-1,yes\n", "must start with the header row id,label"),
        ("id,label\nrow-1\n", "line 2 has 1 cells; expected 2"),
        ("id,label\n,yes\n", "line 2: the id is an empty string"),
        ("id,label\n", "has no labels after its header row"),
    ],
)
def test_a_bad_label_file_records_nothing(
    local_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, words: str
) -> None:
    publish_manifest(local_store, manifest_body())
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(content)
    assert main(["--store", str(local_store.root), "labels", "upload", str(csv_file), "--name", "loans"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err
    assert local_store.list_records("loans", LABELS) == []


def test_a_regressors_label_file_takes_numbers(local_store: Any, tmp_path: Path) -> None:
    publish_manifest(local_store, manifest_body("regression"))
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("id,label\na,151.5\nb,high\n")
    assert main(["--store", str(local_store.root), "labels", "upload", str(csv_file), "--name", "loans"]) == 1
    csv_file.write_text("id,label\na,151.5\nb,75\n")
    assert main(["--store", str(local_store.root), "labels", "upload", str(csv_file), "--name", "loans"]) == 0
    [key] = local_store.list_records("loans", LABELS)
    assert [orjson.loads(line)["label"] for line in local_store.read_records(key).splitlines()] == [151.5, 75.0]


def test_monitor_reports_progress_on_long_reads(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import lambda_forest.monitoring as monitoring

    monkeypatch.setattr(monitoring, "PROGRESS_EVERY_SECONDS", 0.0)
    publish_manifest(store, manifest_body())
    for day in range(3):
        write_captures(store, capture_lines(np.random.default_rng(day), 20), NOW - timedelta(days=day + 1))
    said: list[str] = []
    build_report(store, "loans", NOW - timedelta(days=7), NOW, progress=said.append)
    assert any(message.startswith("reading captures: 3 of 3 files, 6 records") for message in said)


def test_reports_are_written_under_reports_and_never_overwritten(store: Any) -> None:
    keys = store.write_report("loans", "20261201T120000Z", {"report.json": b"{}"})
    assert keys == ["loans/reports/20261201T120000Z/report.json"]
    from lambda_forest.errors import StoreError

    with pytest.raises(StoreError):
        store.write_report("loans", "20261201T120000Z", {"report.json": b"{}"})


# On a real mixed-table model (issue 9's features), end to end through the handler.


# `trained_loans` (tests/conftest.py): the loans-like table's classifier.


def ship(invoke: Any, store: Any, name: str) -> None:
    """What the subscription filters and Firehose do with the function's lines."""
    from lambda_forest.capture import record_directory

    for directory in (CAPTURES, LABELS):
        lines = [line for line in invoke.lines if record_directory(line) == directory]
        if lines:
            store.write_records(name, directory, lines)
    invoke.lines.clear()


def loan_rows(rng: np.random.Generator, count: int, income_shift: float = 0.0, east: float = 0.0) -> list[dict]:
    from tests.conftest import mixed_frame

    frame = mixed_frame(seed=int(rng.integers(1000)))
    frame = frame.sample(count, replace=True, random_state=int(rng.integers(1000)))
    rows = []
    for record in frame.to_dict("records"):
        income = None if record["income"] != record["income"] else record["income"] + income_shift * 15_000
        region = "east" if rng.random() < east else record["region"]
        rows.append(
            {
                "region": None if region != region else region,
                "income": income,
                "employment": None if record["employment"] != record["employment"] else record["employment"],
                "cylinders": int(record["cylinders"]),
                "owner": bool(record["owner"]),
            }
        )
    return rows


def test_a_trained_mixed_model_end_to_end(handler: Any, local_store: Any, trained_loans: Any) -> None:
    from tests.conftest import api_event, publish_model

    manifest = publish_model(local_store, trained_loans, name="loans")
    assert manifest.prediction_baseline["rows"] == len(trained_loans.holdout_y)
    invoke = handler(local_store, name="loans", capture_sample_rate=1.0)
    rng = np.random.default_rng(0)
    for batch in range(4):
        rows = loan_rows(rng, 100, income_shift=2.0, east=0.15)
        ids = [f"b{batch}-{index}" for index in range(len(rows))]
        reply = invoke(api_event("POST", "/predict", {"instances": rows, "ids": ids}))
        assert reply.status == 200 and any(w["code"] == "unknown_category" for w in reply.body["warnings"])
        labels = [{"id": row_id, "label": label} for row_id, label in zip(ids, reply.body["predictions"], strict=True)]
        assert invoke(api_event("POST", "/feedback", {"labels": labels})).status == 200
    ship(invoke, local_store, "loans")
    report = build_report(local_store, "loans", datetime.now(UTC) - timedelta(hours=1))
    [version] = report["versions"]
    features = by_feature(version)
    assert set(features) == set(manifest.feature_names)
    assert features["income"]["status"] == "alert" and features["income"]["psi"] > drift.PSI_ALERT
    region = features["region"]
    assert region["unknown_values"][0]["value"] == "east" and region["unknown_rate"]["live"] > 0.05
    assert region["missing_rate"]["training"] > 0  # the training share of missing regions, from the manifest
    assert features["cylinders"]["type"] == "categorical" and features["cylinders"]["unknown_rate"]["live"] == 0
    assert version["predictions"]["buckets"] == [str(label) for label in manifest.classes]
    assert version["quality"]["rows"] == 400 and version["quality"]["accuracy"] == 1.0  # labelled as predicted


def test_a_trained_mixed_model_on_its_own_kind_of_rows_does_not_warn(
    handler: Any, local_store: Any, trained_loans: Any
) -> None:
    from tests.conftest import api_event, publish_model

    publish_model(local_store, trained_loans, name="loans")
    invoke = handler(local_store, name="loans", capture_sample_rate=1.0)
    rng = np.random.default_rng(1)
    for _ in range(3):
        assert invoke(api_event("POST", "/predict", {"instances": loan_rows(rng, 100)})).status == 200
    ship(invoke, local_store, "loans")
    [version] = build_report(local_store, "loans", datetime.now(UTC) - timedelta(hours=1))["versions"]
    assert {feature["name"]: feature["status"] for feature in version["features"]} == dict.fromkeys(
        (feature["name"] for feature in version["features"]), "ok"
    )


def csv_body(rows: list[dict[str, Any]], names: list[str]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([["" if row[name] is None else row[name] for name in names] for row in rows])
    return out.getvalue()


def test_rows_sent_as_csv_are_monitored_like_the_same_rows_in_json(
    handler: Any, local_store: Any, trained_loans: Any, tmp_path: Path
) -> None:
    from lambda_forest.store import LocalStore
    from local_lambda.events import proxy_event
    from tests.conftest import api_event, publish_model

    json_store, csv_store = local_store, LocalStore(tmp_path / "csv-store")
    rows = loan_rows(np.random.default_rng(2), 200, east=0.1)
    names = list(trained_loans.data.feature_names)
    for store in (json_store, csv_store):
        publish_model(store, trained_loans, name="loans")
        invoke = handler(store, name="loans", capture_sample_rate=1.0)
        if store is json_store:
            event = api_event("POST", "/predict", {"instances": rows})
        else:
            event = proxy_event("POST", "/predict", {"Content-Type": "text/csv"}, csv_body(rows, names).encode())
        assert invoke(event).status == 200
        ship(invoke, store, "loans")
    since = datetime.now(UTC) - timedelta(hours=1)
    [from_json] = build_report(json_store, "loans", since)["versions"]
    [from_csv] = build_report(csv_store, "loans", since)["versions"]
    assert from_csv["features"] == from_json["features"]  # text cells read as the model read them, not as missing
    assert by_feature(from_csv)["income"]["missing_rate"]["live"] < 0.2
    assert by_feature(from_csv)["region"]["unknown_values"][0]["value"] == "east"
