"""The scheduled monitor function: the report in the bucket (moto) and the metrics the alarms watch."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import numpy as np
import orjson
import pytest

from lambda_forest.config import MonitorConfig
from local_lambda.events import LocalContext
from tests.test_monitoring import NOW, VERSION, capture_lines, manifest_body, publish_manifest, write_captures


def emitted_metrics(output: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The EMF records printed by Powertools: {(metric, dimensions): value}."""
    found = {}
    for line in output.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        record = orjson.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            dimensions = tuple(sorted((name, record[name]) for name in directive["Dimensions"][0]))
            for metric in directive["Metrics"]:
                value = record[metric["Name"]]
                found[metric["Name"], dimensions] = value[0] if isinstance(value, list) else value
    return found


@pytest.fixture
def monitor_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    import monitor

    monkeypatch.setattr(monitor, "config", MonitorConfig("s3://unused", "loans", "live", timedelta(days=7)))
    return monitor


def test_a_run_stores_its_report_and_publishes_drift_metrics(
    s3_store: Any, monitor_module: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_manifest(s3_store, manifest_body())
    s3_store.set_alias("loans", "live", VERSION)
    write_captures(s3_store, capture_lines(np.random.default_rng(1), 500, income_shift=2.0, unknown_region_share=0.1))
    summary = monitor_module.run(s3_store, monitor_module.config, NOW)
    monitor_module.metrics.flush_metrics()
    assert summary["status"] == "alert" and summary["captured_requests"] == 50
    keys = s3_store._list("loans/reports/")
    assert sorted(key.rsplit("/", 1)[1] for key in keys) == ["report.html", "report.json"]
    assert summary["report"][0].startswith("s3://lambda-forest-test-models/models/loans/reports/")
    report = json.loads(s3_store._read(next(key for key in keys if key.endswith(".json"))))
    assert report["versions"][0]["version"] == VERSION

    metrics = emitted_metrics(capsys.readouterr().out)
    model = (("model", "loans"), ("service", "predict"))
    assert metrics["DriftStatus", model] == 2 and metrics["MonitoredRows", model] == 500
    assert metrics["QualityStatus", model] == 0  # no labels: nothing to judge
    assert metrics["PredictionDrift", model] >= 0
    income = metrics["FeatureDrift", (("feature", "income"), *model)]
    age = metrics["FeatureDrift", (("feature", "age"), *model)]
    assert income > 0.25 > 0.1 > age
    assert ("FeatureDrift", (("feature", "region"), *model)) in metrics


def test_a_run_without_captures_writes_a_report_and_says_nothing_was_monitored(
    s3_store: Any, monitor_module: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_manifest(s3_store, manifest_body())
    summary = monitor_module.run(s3_store, monitor_module.config, NOW)
    monitor_module.metrics.flush_metrics()
    assert summary["status"] == "no_data" and len(summary["report"]) == 2
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["MonitoredRows", (("model", "loans"), ("service", "predict"))] == 0
    assert not any(name == "DriftStatus" for name, _ in metrics)


def test_the_handler_runs_on_a_scheduled_event(
    s3_store: Any, monitor_module: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_manifest(s3_store, manifest_body())
    write_captures(s3_store, capture_lines(np.random.default_rng(2), 100), NOW)
    monkeypatch.setattr(monitor_module, "open_store", lambda _uri: s3_store)
    monkeypatch.setattr(monitor_module, "datetime", type("Frozen", (), {"now": staticmethod(lambda tz=None: NOW)}))
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "time": "2026-12-01T12:00:00Z"}
    answer = monitor_module.lambda_handler(event, LocalContext())
    assert answer["status"] == "ok" and answer["versions"] == [{"version": VERSION, "status": "ok"}]
    assert "DriftStatus" in capsys.readouterr().out


def test_monitor_window_is_read_from_the_environment() -> None:
    from lambda_forest.errors import ConfigError

    env = {"MODEL_STORE": "s3://b/models", "MODEL_NAME": "loans", "MONITOR_WINDOW": "36h"}
    assert MonitorConfig.from_env(env).window == timedelta(hours=36)
    assert MonitorConfig.from_env({**env, "MONITOR_WINDOW": ""}).window == timedelta(days=7)
    with pytest.raises(ConfigError, match="MONITOR_WINDOW"):
        MonitorConfig.from_env({**env, "MONITOR_WINDOW": "soon"})
