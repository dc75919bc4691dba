"""The scheduled monitor function: `python -m training monitor`'s report, daily, in the bucket and as metrics.

An EventBridge schedule invokes it. It reads the window's captures and labels, writes report.json and
report.html under `{store}/{name}/reports/{time}/`, and publishes CloudWatch metrics (embedded metric
format, through its log: no PutMetricData permission) for the version its alias serves:
`DriftStatus` and `QualityStatus` (0 ok, 1 warn, 2 alert: what the alarms watch), `FeatureDrift` by
feature and `PredictionDrift` (PSI), `LiveAccuracy` or `LiveRmse`, `MonitoredRows` and `LabelledRows`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_forest.config import MonitorConfig
from lambda_forest.drift import SEVERITY, worst
from lambda_forest.monitor_report import render_html
from lambda_forest.monitoring import build_report
from lambda_forest.store import ModelStore, open_store

logger = Logger()
metrics = Metrics()
config = MonitorConfig.from_env()


def current_version(report: dict[str, Any], alias: str) -> dict[str, Any] | None:
    """The version the alias serves, if it was captured; else the newest captured version."""
    versions = report["versions"]
    return next((part for part in versions if alias in part["aliases"]), versions[0] if versions else None)


def publish_metrics(report: dict[str, Any], alias: str) -> None:
    dimensions = {"model": report["model"]}
    metrics.set_default_dimensions(**dimensions)
    version = current_version(report, alias)
    if version is None or "features" not in version:
        metrics.add_metric(name="MonitoredRows", unit=MetricUnit.Count, value=0)
        return
    drift_status = worst([feature["status"] for feature in version["features"]] + [version["predictions"]["status"]])
    metrics.add_metric(name="DriftStatus", unit=MetricUnit.NoUnit, value=SEVERITY[drift_status])
    metrics.add_metric(name="QualityStatus", unit=MetricUnit.NoUnit, value=SEVERITY[version["quality"]["status"]])
    metrics.add_metric(name="MonitoredRows", unit=MetricUnit.Count, value=version["captured_rows"])
    metrics.add_metric(name="LabelledRows", unit=MetricUnit.Count, value=version["quality"].get("rows", 0))
    if version["predictions"].get("psi") is not None:
        metrics.add_metric(name="PredictionDrift", unit=MetricUnit.NoUnit, value=version["predictions"]["psi"])
    quality = version["quality"]
    for name, key in (("LiveAccuracy", "accuracy"), ("LiveRmse", "rmse")):
        if quality.get(key) is not None:
            metrics.add_metric(name=name, unit=MetricUnit.NoUnit, value=quality[key])
    for feature in version["features"]:
        if feature.get("psi") is None:
            continue
        with single_metric(
            name="FeatureDrift",
            unit=MetricUnit.NoUnit,
            value=feature["psi"],
            namespace=metrics.namespace,
            default_dimensions=dimensions,
        ) as metric:
            metric.add_dimension(name="feature", value=feature["name"][:250])


def run(store: ModelStore, settings: MonitorConfig, now: datetime) -> dict[str, Any]:
    """Build, store and publish one report; returns what the invocation answers."""
    report = build_report(store, settings.model_name, now - settings.window, now)
    files = {"report.json": json.dumps(report, indent=2).encode(), "report.html": render_html(report).encode()}
    keys = store.write_report(settings.model_name, f"{now:%Y%m%dT%H%M%SZ}", files)
    publish_metrics(report, settings.model_alias)
    summary = {
        "status": report["status"],
        "versions": [{"version": part["version"], "status": part["status"]} for part in report["versions"]],
        "captured_requests": report["read"]["captures"]["records"],
        "malformed_lines": report["read"]["captures"]["malformed"] + report["read"]["labels"]["malformed"],
        "report": [store.location(key) for key in keys],
    }
    logger.info("monitoring report written", extra=summary)
    return summary


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run(open_store(config.model_store), config, datetime.now(UTC))
