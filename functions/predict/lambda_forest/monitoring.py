"""The model monitor: captured predictions and labels in a window, compared with what training saw.

`build_report` reads `captures/` and `labels/` (shared/DESIGN.md section 6), groups the captured rows
by model version and, for each version against its own manifest, reports:

- input drift per feature (`lambda_forest.drift`): PSI over the frozen training bins or categories,
  with missing and unknown buckets, the normalised Wasserstein distance (numeric) or Jensen-Shannon
  distance (categorical), missing- and unknown-rate changes and the unknown values seen;
- output drift: predicted class shares, or the regression output's bins, against the hold-out's;
- live quality where labels joined on `row_id`: accuracy, macro F1, log loss, or RMSE and MAE, with
  row counts, against the hold-out metrics, and by day.

The report is a JSON-ready dict; its `status` is the worst of its parts (ok, warn, alert) and
`exit_code` maps it to 0, 1, 2. Used by `python -m training monitor` and by the scheduled monitor
function, so numpy and the standard library only.
"""

from __future__ import annotations

import math
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from lambda_forest import drift
from lambda_forest.capture import LABEL, PREDICTION, parse_record, timestamp
from lambda_forest.errors import LambdaForestError
from lambda_forest.features import FeatureSchema, category_text
from lambda_forest.manifest import Manifest
from lambda_forest.schema import label_checker
from lambda_forest.store import CAPTURES, LABELS, ModelStore

REPORT_FORMAT = 1
NUMERIC, CATEGORICAL = "numeric", "categorical"
UNKNOWN_VALUES_SHOWN = 10
# Time series group by the prefix of an ISO time: 2026-12-01T10 (an hour) or 2026-12-01 (a day).
HOUR, DAY = 13, 10
PERIOD_NAMES = {HOUR: "hour", DAY: "day"}
HOURLY_UP_TO = timedelta(days=2)  # windows up to this long are shown by hour
PROGRESS_EVERY_SECONDS = 2.0

Progress = Callable[[str], None]


@dataclass
class ReadCounts:
    """What reading one kind of record found."""

    files: int = 0
    lines: int = 0
    records: int = 0
    malformed: int = 0  # not JSON, not a record of this kind, or missing its fields
    unreadable_files: int = 0  # not gzip or text (a broken upload)
    outside_window: int = 0
    other_models: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def read_records(
    store: ModelStore,
    name: str,
    directory: str,
    kind: str,
    since: datetime,
    until: datetime,
    counts: ReadCounts,
    progress: Progress | None = None,
    fits: Callable[[dict[str, Any]], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """The well-formed records of `kind` in the window (that `fits`, when given); the rest is counted, never raised."""
    keys = store.list_records(name, directory, since, until)
    started = last_said = time.monotonic()
    low, high = timestamp(since), timestamp(until)
    for index, key in enumerate(keys, 1):
        counts.files += 1
        try:
            lines = store.read_records(key).splitlines()
        except (OSError, EOFError, zlib.error):  # a truncated or corrupt gzip file
            counts.unreadable_files += 1
            continue
        for line in lines:
            if not line.strip():
                continue
            counts.lines += 1
            record = parse_record(line)
            if record is None or record["kind"] != kind or not _well_formed(record):
                counts.malformed += 1
                continue
            if not low <= record["time"] <= high:
                counts.outside_window += 1
                continue
            if kind == PREDICTION and record["model"]["name"] != name:
                counts.other_models += 1
                continue
            if fits is not None and not fits(record):
                counts.malformed += 1
                continue
            counts.records += 1
            yield record
        now = time.monotonic()
        if progress and now - last_said >= PROGRESS_EVERY_SECONDS:
            last_said = now
            progress(
                f"reading {directory}: {index} of {len(keys)} files, {counts.records:,} records, {now - started:.0f} s"
            )


def _well_formed(record: dict[str, Any]) -> bool:
    if not isinstance(record.get("time"), str):
        return False
    if record["kind"] == LABEL:
        return isinstance(record.get("row_id"), str) and "label" in record
    model, rows, ids, predictions = (record.get(key) for key in ("model", "rows", "row_ids", "predictions"))
    probabilities = record.get("probabilities")
    row_count = record.get("row_count", len(rows) if isinstance(rows, list) else 0)
    return (
        isinstance(model, dict)
        and isinstance(model.get("name"), str)
        and isinstance(model.get("version"), str)
        and isinstance(record.get("features"), list)
        and isinstance(rows, list)
        and isinstance(ids, list)
        and isinstance(predictions, list)
        and len(rows) == len(ids) == len(predictions)
        and all(isinstance(row, list) and len(row) == len(record["features"]) for row in rows)
        and all(isinstance(row_id, str) for row_id in ids)
        and type(row_count) is int
        and row_count >= len(rows)
        and (probabilities is None or (isinstance(probabilities, list) and len(probabilities) == len(rows)))
    )


@dataclass
class VersionManifest:
    """A captured version's manifest, what checks its records, or why there is none."""

    manifest: Manifest | None
    error: str | None = None
    schema: FeatureSchema | None = None
    check_label: Callable[[Any, str], Any] | None = None  # a class, or a regressor's number (schema.label_checker)

    @classmethod
    def read(cls, store: ModelStore, name: str, version: str) -> VersionManifest:
        try:
            manifest = Manifest.from_json(store.read_manifest(name, version))
        except LambdaForestError as error:
            return cls(None, error.message)
        return cls(manifest, None, manifest.schema, label_checker(manifest))

    def fits(self, record: dict[str, Any]) -> bool:
        """Whether a capture could have come from this version: its columns, kinds of value and answers.

        Rows are checked by THE row validator, predictions by the rules /feedback applies to labels.
        A version without a manifest checks nothing: it is reported unavailable.
        """
        if self.manifest is None or self.schema is None:
            return True
        if record["features"] != self.manifest.feature_names:
            return False
        try:
            if self.manifest.features is not None:  # older manifests describe no kinds of value to check
                self.schema.validate(record["rows"])
            for prediction in record["predictions"]:
                self.label(prediction)
        except LambdaForestError:
            return False
        probabilities = record.get("probabilities")
        if probabilities is None:
            return True
        width = len(self.manifest.classes or [])
        return self.manifest.is_classifier and all(
            type(row) is list and len(row) == width and all(type(value) in (int, float) for value in row)
            for row in probabilities
        )

    def label(self, value: Any) -> Any:
        assert self.check_label is not None
        return self.check_label(value, "label")

    def usable_label(self, value: Any) -> bool:
        try:
            self.label(value)
        except LambdaForestError:
            return False
        return True


@dataclass
class Traffic:
    """The captured rows of one model version."""

    version: str
    features: list[str] | None = None
    requests: int = 0
    request_rows: int = 0  # rows the requests held; more than the captured ones when a batch was capped
    rows: list[list[Any]] = field(default_factory=list)
    row_ids: list[str] = field(default_factory=list)
    times: list[str] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    probabilities: list[list[float] | None] = field(default_factory=list)
    mismatched_features: int = 0

    def add(self, record: dict[str, Any]) -> None:
        if self.features is None:
            self.features = record["features"]
        elif record["features"] != self.features:
            self.mismatched_features += 1
            return
        self.requests += 1
        self.request_rows += int(record.get("row_count") or len(record["rows"]))
        self.rows.extend(record["rows"])
        self.row_ids.extend(record["row_ids"])
        self.times.extend([record["time"]] * len(record["rows"]))
        self.predictions.extend(record["predictions"])
        probabilities = record.get("probabilities")
        self.probabilities.extend(probabilities if probabilities is not None else [None] * len(record["rows"]))

    def column(self, feature: str) -> list[Any]:
        index = (self.features or []).index(feature)
        return [row[index] for row in self.rows]


def build_report(
    store: ModelStore,
    name: str,
    since: datetime,
    until: datetime | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The monitoring report of model `name` over [since, until] (until: now)."""
    until = (until or datetime.now(UTC)).astimezone(UTC)
    since = since.astimezone(UTC)
    capture_counts, label_counts = ReadCounts(), ReadCounts()
    traffic: dict[str, Traffic] = {}
    manifests: dict[str, VersionManifest] = {}

    def fits(record: dict[str, Any]) -> bool:
        version = record["model"]["version"]
        if version not in manifests:
            manifests[version] = VersionManifest.read(store, name, version)
        return manifests[version].fits(record)

    for record in read_records(store, name, CAPTURES, PREDICTION, since, until, capture_counts, progress, fits):
        version = record["model"]["version"]
        traffic.setdefault(version, Traffic(version)).add(record)
    labels: dict[str, tuple[str, Any]] = {}
    # Ground truth comes later than the predictions it is for: every label since the window began counts.
    labels_until = max(until, datetime.now(UTC)) + timedelta(days=1)
    for record in read_records(store, name, LABELS, LABEL, since, labels_until, label_counts, progress):
        known = labels.get(record["row_id"])
        if known is None or record["time"] >= known[0]:  # the latest label of a row wins
            labels[record["row_id"]] = (record["time"], record["label"])
    aliases = _aliases_by_version(store, name)
    period = HOUR if until - since <= HOURLY_UP_TO else DAY
    versions = [
        version_report(manifests[version], traffic[version], labels, aliases.get(version, []), period)
        for version in sorted(traffic, reverse=True)
    ]
    captured_ids = {row_id for part in traffic.values() for row_id in part.row_ids}
    report = {
        "format": REPORT_FORMAT,
        "model": name,
        "store": store.uri,
        "generated_at": timestamp(datetime.now(UTC)),
        "window": {"since": timestamp(since), "until": timestamp(until)},
        "period": PERIOD_NAMES[period],
        "thresholds": thresholds(),
        "read": {"captures": capture_counts.to_dict(), "labels": label_counts.to_dict()},
        "labels": {
            "distinct_rows": len(labels),
            "joined": sum(1 for row_id in labels if row_id in captured_ids),
            "unmatched": sum(1 for row_id in labels if row_id not in captured_ids),
        },
        "versions": versions,
    }
    report["status"] = drift.worst([part["status"] for part in versions]) if versions else "no_data"
    return report


def thresholds() -> dict[str, Any]:
    return {
        "psi_warn": drift.PSI_WARN,
        "psi_alert": drift.PSI_ALERT,
        "js_warn": drift.JS_WARN,
        "min_rows": drift.MIN_ROWS,
        "false_alarm_rate": drift.FALSE_ALARM_RATE,
        "accuracy_drop_warn": drift.ACCURACY_DROP_WARN,
        "accuracy_drop_alert": drift.ACCURACY_DROP_ALERT,
        "rmse_ratio_warn": drift.RMSE_RATIO_WARN,
        "rmse_ratio_alert": drift.RMSE_RATIO_ALERT,
    }


def exit_code(report: dict[str, Any]) -> int:
    """0 ok (or nothing to judge), 1 warn, 2 alert: for gating a retrain in CI."""
    return drift.SEVERITY.get(report["status"], 0)


def _aliases_by_version(store: ModelStore, name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    try:
        for alias, record in store.list_aliases(name).items():
            found[record.version].append(alias)
    except LambdaForestError:
        pass  # aliases only label the report
    return found


def version_report(
    found: VersionManifest,
    traffic: Traffic,
    labels: dict[str, tuple[str, Any]],
    aliases: list[str],
    period: int = DAY,
) -> dict[str, Any]:
    part: dict[str, Any] = {
        "version": traffic.version,
        "aliases": aliases,
        "requests": traffic.requests,
        "request_rows": traffic.request_rows,
        "captured_rows": len(traffic.rows),
        "first_seen": min(traffic.times, default=None),
        "last_seen": max(traffic.times, default=None),
        "traffic_over_time": _by_period(traffic.times, period),
    }
    if traffic.mismatched_features:
        part["mismatched_captures"] = traffic.mismatched_features
    if found.manifest is None:
        part.update(status=drift.UNAVAILABLE, error=f"no manifest to compare with: {found.error}")
        return part
    manifest = found.manifest.to_dict()
    features = manifest_features(manifest)
    alpha = drift.FALSE_ALARM_RATE / (len(features) + 1)
    by_name = {feature["name"]: feature for feature in features}
    part["features"] = [
        feature_drift(by_name[feature], traffic.column(feature), manifest, alpha)
        for feature in traffic.features or []
        if feature in by_name
    ]
    part["predictions"] = prediction_drift(traffic, manifest, alpha)
    usable = {row_id: label for row_id, label in labels.items() if found.usable_label(label[1])}
    part["quality"] = live_quality(traffic, usable, manifest, alpha, period)
    part["task"] = manifest["task"]
    part["status"] = drift.worst(
        [feature["status"] for feature in part["features"]] + [part["predictions"]["status"], part["quality"]["status"]]
    )
    return part


def manifest_features(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's `features`; for one published before they existed, numeric features with stats only."""
    if manifest.get("features"):
        return manifest["features"]
    stats = manifest.get("feature_stats") or {}
    return [{"name": name, "type": NUMERIC, "stats": stats.get(name, {})} for name in manifest["feature_names"]]


def _training_rows(manifest: dict[str, Any]) -> float:
    report = manifest.get("data_report") or {}
    return float(report.get("rows_used") or (manifest.get("training_data") or {}).get("rows") or 0)


def feature_drift(feature: dict[str, Any], values: list[Any], manifest: dict[str, Any], alpha: float) -> dict[str, Any]:
    if feature.get("type") == CATEGORICAL:
        return _categorical_drift(feature, values, manifest, alpha)
    return _numeric_drift(feature, values, manifest, alpha)


def _numeric_drift(
    feature: dict[str, Any], values: list[Any], manifest: dict[str, Any], alpha: float
) -> dict[str, Any]:
    numbers = np.array(
        [float(value) if type(value) in (int, float) else math.nan for value in values],
        dtype=np.float64,
    )
    present = numbers[~np.isnan(numbers)]
    stats = feature.get("stats") or {}
    result: dict[str, Any] = {
        "name": feature["name"],
        "type": NUMERIC,
        "rows": len(values),
        "missing_rate": {
            "training": feature.get("missing_rate"),
            "live": _rate(len(values) - len(present), len(values)),
        },
        "live_stats": drift.summary_stats(present),
        "training_stats": stats,
    }
    if stats.get("std"):
        result["mean_shift_in_std"] = (
            _round((float(present.mean()) - stats["mean"]) / stats["std"]) if len(present) else None
        )
    if "min" in stats and len(present):
        result["outside_training_range"] = _rate(
            int(np.sum((present < stats["min"]) | (present > stats["max"]))), len(present)
        )
    bins = feature.get("bins") or {}
    if not bins.get("counts"):
        result.update(status=drift.UNAVAILABLE, note="no frozen training bins in this manifest (published before them)")
        return result
    missing_rate = float(feature.get("missing_rate") or 0.0)
    training_rows = sum(bins["counts"]) / (1 - missing_rate) if missing_rate < 1 else _training_rows(manifest)
    bucketing = drift.numeric_bucketing(numbers, bins["edges"], bins["counts"], missing_rate, training_rows)
    result.update(bucketing.summary(alpha), edges=bins["edges"])
    if len(present) and stats.get("std"):
        distance = drift.wasserstein_to_bins(present, bins["edges"], bins["counts"])
        result["wasserstein_norm"] = _round(distance / stats["std"])
    return result


def _categorical_drift(
    feature: dict[str, Any], values: list[Any], manifest: dict[str, Any], alpha: float
) -> dict[str, Any]:
    categories = [str(category) for category in feature.get("categories", [])]
    known = set(categories)
    counts: Counter[str] = Counter()
    unknown_values: Counter[str] = Counter()
    missing = 0
    for value in values:
        if value is None:
            missing += 1
            continue
        text = category_text(value)
        if text in known:
            counts[text] += 1
        else:
            unknown_values[text] += 1
    unknown = sum(unknown_values.values())
    missing_rate = float(feature.get("missing_rate") or 0.0)
    bucketing = drift.categorical_bucketing(
        counts, categories, feature.get("frequencies") or {}, missing_rate, _training_rows(manifest), missing, unknown
    )
    result: dict[str, Any] = {
        "name": feature["name"],
        "type": CATEGORICAL,
        "missing_rate": {"training": missing_rate, "live": _rate(missing, len(values))},
        "unknown_rate": {"training": 0.0, "live": _rate(unknown, len(values))},
        "unknown_values": [
            {"value": value[:80], "count": count} for value, count in unknown_values.most_common(UNKNOWN_VALUES_SHOWN)
        ],
    }
    if not _training_rows(manifest) or not feature.get("frequencies"):
        result.update(rows=len(values), status=drift.UNAVAILABLE, note="no training frequencies in this manifest")
        return result
    result.update(bucketing.summary(alpha))
    if len(values):
        result["js_distance"] = _round(drift.js_distance(bucketing.training, bucketing.live))
        result["js_noise"] = _round(drift.js_noise(result["psi_noise"]))
        if result["status"] == drift.OK and result["js_distance"] >= max(drift.JS_WARN, result["js_noise"]):
            result["status"] = drift.WARN
    return result


def prediction_drift(traffic: Traffic, manifest: dict[str, Any], alpha: float) -> dict[str, Any]:
    baseline = manifest.get("prediction_baseline")
    if manifest["task"] == "classification":
        classes = [str(value) for value in manifest.get("classes") or []]
        live = Counter(str(value) for value in traffic.predictions)
        result: dict[str, Any] = {"rows": len(traffic.predictions), "live_shares": _shares(live, classes)}
        if not baseline:
            result.update(status=drift.UNAVAILABLE, note="no hold-out prediction shares in this manifest")
            return result
        training = np.array([float(baseline["class_shares"].get(label, 0.0)) for label in classes]) * baseline["rows"]
        bucketing = drift.Bucketing(classes, training, np.array([float(live[label]) for label in classes]))
        return result | bucketing.summary(alpha)
    numbers = np.array([float(value) for value in traffic.predictions], dtype=np.float64)
    result = {"rows": len(numbers), "live_stats": drift.summary_stats(numbers)}
    if not baseline:
        result.update(status=drift.UNAVAILABLE, note="no hold-out prediction bins in this manifest")
        return result
    bins = baseline["bins"]
    bucketing = drift.numeric_bucketing(numbers, bins["edges"], bins["counts"], 0.0, float(sum(bins["counts"])))
    summary = bucketing.summary(alpha)
    summary["buckets"], summary["training_shares"], summary["live_shares"] = (
        summary["buckets"][:-1],
        summary["training_shares"][:-1],
        summary["live_shares"][:-1],
    )
    result |= summary | {"training_stats": baseline.get("stats", {})}
    if len(numbers) and baseline.get("stats", {}).get("std"):
        result["wasserstein_norm"] = _round(
            drift.wasserstein_to_bins(numbers, bins["edges"], bins["counts"]) / baseline["stats"]["std"]
        )
    return result


def live_quality(
    traffic: Traffic, labels: dict[str, tuple[str, Any]], manifest: dict[str, Any], alpha: float, period: int = DAY
) -> dict[str, Any]:
    joined = [index for index, row_id in enumerate(traffic.row_ids) if row_id in labels]
    truth = [labels[traffic.row_ids[index]][1] for index in joined]
    predicted = [traffic.predictions[index] for index in joined]
    holdout = manifest.get("metrics") or {}
    if not joined:
        return {"status": drift.INSUFFICIENT, "rows": 0, "note": "no labels for these rows"}
    if manifest["task"] == "classification":
        probabilities = [traffic.probabilities[index] for index in joined]
        live = drift.classification_quality(truth, predicted, probabilities, manifest.get("classes") or [])
        status = drift.accuracy_status(live["accuracy"], holdout.get("accuracy"), live["rows"], alpha)
        over_time = _quality_by_period(traffic, joined, truth, predicted, _accuracy_only, period)
    else:
        numbers = [float(value) for value in truth]
        live = drift.regression_quality(numbers, [float(value) for value in predicted])
        status = drift.rmse_status(live["rmse"], holdout.get("rmse"), live["rows"], alpha)
        over_time = _quality_by_period(traffic, joined, numbers, predicted, drift.regression_quality, period)
    return {
        "status": status,
        **live,
        "holdout": {key: holdout[key] for key in ("accuracy", "f1_macro", "rmse", "mae") if key in holdout},
        "over_time": over_time,
    }


def _accuracy_only(truth: list[Any], predicted: list[Any]) -> dict[str, Any]:
    return drift.classification_quality(truth, predicted, [None] * len(truth), [])


def _quality_by_period(
    traffic: Traffic,
    joined: list[int],
    truth: list[Any],
    predicted: list[Any],
    measure: Callable[..., dict[str, Any]],
    period: int,
) -> list[dict[str, Any]]:
    """Quality per hour or day of capture (`period`: the length of the time's prefix that names it)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for position, index in enumerate(joined):
        groups[traffic.times[index][:period]].append(position)
    return [
        {"period": name} | measure([truth[p] for p in positions], [predicted[p] for p in positions])
        for name, positions in sorted(groups.items())
    ]


def _by_period(times: list[str], period: int) -> list[dict[str, Any]]:
    return [{"period": name, "rows": rows} for name, rows in sorted(Counter(time[:period] for time in times).items())]


def _shares(counts: Counter[str], labels: list[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {label: round(counts[label] / total, 6) if total else 0.0 for label in labels}


def _rate(count: int, total: int) -> float | None:
    return round(count / total, 6) if total else None


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)
