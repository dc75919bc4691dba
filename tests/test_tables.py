"""Real tables end to end: a mixed CSV with blanks -> training -> model.joblib and the API agree exactly."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from lambda_forest.manifest import Manifest
from lambda_forest.store import open_store
from tests.conftest import api_event, publish_model
from training.cli import main
from training.forest import ForestParams, json_rows, table_of, train
from training.tables import TableOptions, load_table

ROWS = 300


def mixed_frame(seed: int = 0) -> pd.DataFrame:
    """A loans-like table: text and integer categories, blanks in numeric and text columns, an id, two targets."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "west"], ROWS).astype(object)
    region[rng.random(ROWS) < 0.1] = None
    income = rng.normal(50_000, 15_000, ROWS).round(2)
    employment = rng.choice(["contract", "permanent", "self"], ROWS).astype(object)
    employment[rng.random(ROWS) < 0.1] = None
    cylinders = rng.choice([4, 6, 8], ROWS)
    owner = rng.random(ROWS) < 0.5
    score = (income / 10_000 + (region == "south") * 2 - (employment == "contract") * 1.5 + cylinders / 4).astype(float)
    income[rng.random(ROWS) < 0.1] = np.nan
    outcome = np.where(score + rng.normal(0, 0.5, ROWS) > np.nanmedian(score), "repaid", "defaulted").astype(object)
    outcome[:5] = None  # rows without a target: dropped and counted
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{index:05d}" for index in range(ROWS)],
            "region": region,
            "income": income,
            "employment": employment,
            "cylinders": cylinders,
            "owner": owner,
            "outcome": outcome,
            "amount": (score * 1000 + rng.normal(0, 100, ROWS)).round(2),
        }
    )
    return pd.concat([frame, frame.iloc[[10, 11]]], ignore_index=True)  # two duplicate rows


@pytest.fixture(scope="module")
def mixed_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tables") / "loans.csv"
    mixed_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained_loans(mixed_csv: Path) -> Any:
    data = load_table(str(mixed_csv), "outcome", options=TableOptions(categorical=("cylinders",), drop=("amount",)))
    return train(data, ForestParams(n_estimators=12, n_jobs=1), progress=lambda _: None)


@pytest.fixture(scope="module")
def trained_amounts(mixed_csv: Path) -> Any:
    data = load_table(str(mixed_csv), "amount", options=TableOptions(categorical=("cylinders",), drop=("outcome",)))
    return train(data, ForestParams(n_estimators=8, max_depth=8, n_jobs=1), progress=lambda _: None)


def test_columns_get_their_types_and_the_report_counts_rows(trained_loans: Any) -> None:
    data = trained_loans.data
    types = {feature.name: feature.type for feature in data.features.features}
    assert types == {
        "region": "categorical",
        "income": "numeric",
        "employment": "categorical",
        "cylinders": "categorical",
        "owner": "categorical",
    }
    categories = {feature.name: feature.categories for feature in data.features.categorical}
    assert categories["cylinders"] == ("4", "6", "8") and categories["owner"] == ("False", "True")
    assert data.excluded_columns == [
        {"name": "customer_id", "reason": "identifier-like: 300 distinct values in 302 rows"},
        {"name": "amount", "reason": "dropped with --drop"},
    ]
    assert data.report.to_dict() == {"rows_read": 302, "rows_used": 297, "rows_without_target": 5, "duplicate_rows": 2}


def data_scientists_model(store: Any, manifest: Manifest) -> Any:
    """model.joblib as a data scientist loads it (one thread, so its sums run in a fixed order)."""
    model = joblib.load(io.BytesIO(store.read_file(manifest.name, manifest.version, "model.joblib")))
    model[-1].n_jobs = None
    return model


def request_rows(trained: Any) -> list[Any]:
    """Hold-out rows as a client sends them, list- and object-shaped, plus unknown categories and nulls."""
    schema = trained.data.features
    rows: list[Any] = json_rows(trained.holdout_X, schema)
    rows += [
        ["east", 51_000.0, "retired", 6, False],
        [None, None, None, None, None],
        ["north", 48_000.5, "permanent", 12, True],
        {"region": "south", "income": 70_000, "employment": "self", "cylinders": "8", "owner": True},
    ]
    return rows


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "joblib"])
def test_api_answers_exactly_what_model_joblib_answers_on_raw_rows(
    handler: Any, local_store: Any, trained_loans: Any, compiled: bool
) -> None:
    manifest = publish_model(local_store, trained_loans, name="loans", compile=compiled)
    model = data_scientists_model(local_store, manifest)
    schema = trained_loans.data.features
    rows = request_rows(trained_loans)
    invoke = handler(local_store, name="loans", allow_pickle=not compiled)
    reply = invoke(api_event("POST", "/predict", {"instances": rows}))
    assert reply.status == 200, reply.body
    as_lists = [row if isinstance(row, list) else [row[name] for name in schema.names] for row in rows]
    raw = table_of(as_lists, schema, trained_loans.holdout_X)
    assert reply.body["predictions"] == model.predict(raw).tolist()
    assert np.array_equal(np.array(reply.body["probabilities"]), model.predict_proba(raw))
    warned = {(w["row"], w["feature"]) for w in reply.body["warnings"]}
    n = len(json_rows(trained_loans.holdout_X, schema))
    assert warned == {(n, "region"), (n, "employment"), (n + 2, "cylinders")}


def test_a_data_scientists_dataframe_and_the_api_agree(
    handler: Any, local_store: Any, trained_loans: Any, mixed_csv: Path
) -> None:
    manifest = publish_model(local_store, trained_loans, name="loans")
    model = data_scientists_model(local_store, manifest)
    table = pd.read_csv(mixed_csv)[manifest.feature_names]  # what the data scientist has: the file, as pandas reads it
    rows = json_rows(table, trained_loans.data.features)
    reply = handler(local_store, name="loans")(api_event("POST", "/predict", {"instances": rows}))
    assert reply.body["predictions"] == model.predict(table).tolist()
    assert np.array_equal(np.array(reply.body["probabilities"]), model.predict_proba(table))
    assert "warnings" not in reply.body


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "joblib"])
def test_regressor_values_are_exact_too(handler: Any, local_store: Any, trained_amounts: Any, compiled: bool) -> None:
    manifest = publish_model(local_store, trained_amounts, name="amounts", compile=compiled)
    model = data_scientists_model(local_store, manifest)
    rows = request_rows(trained_amounts)
    invoke = handler(local_store, name="amounts", allow_pickle=not compiled)
    reply = invoke(api_event("POST", "/predict", {"instances": rows}))
    schema = trained_amounts.data.features
    as_lists = [row if isinstance(row, list) else [row[name] for name in schema.names] for row in rows]
    assert reply.body["predictions"] == model.predict(table_of(as_lists, schema, trained_amounts.holdout_X)).tolist()
    assert "classes" not in reply.body


def test_model_route_shows_the_feature_schema(handler: Any, local_store: Any, trained_loans: Any) -> None:
    publish_model(local_store, trained_loans, name="loans")
    body = handler(local_store, name="loans")(api_event("GET", "/model")).body
    region = body["features"][0]
    assert region["name"] == "region" and region["type"] == "categorical"
    assert region["categories"] == ["north", "south", "west"] and region["missing_allowed"] is True
    assert 0 < region["missing_rate"] < 0.2
    assert not {"bins", "stats", "frequencies"} & {key for feature in body["features"] for key in feature}
    assert set(body["importances"]) == set(body["feature_names"])


def test_manifest_records_features_report_and_importances(local_store: Any, trained_loans: Any) -> None:
    manifest = publish_model(local_store, trained_loans, name="loans")
    body = json.loads(local_store.read_manifest("loans", manifest.version))
    income = next(feature for feature in body["features"] if feature["name"] == "income")
    assert income["type"] == "numeric" and 0 < income["missing_rate"] < 0.2
    assert len(income["bins"]["edges"]) == 11 and sum(income["bins"]["counts"]) == round(
        297 * (1 - income["missing_rate"])
    )
    region = body["features"][0]
    assert sum(region["frequencies"].values()) + region["missing_rate"] == pytest.approx(1.0, abs=1e-5)
    assert body["model_object"] == "sklearn.pipeline.Pipeline" and body["estimator"] == "RandomForestClassifier"
    assert body["data_report"]["rows_without_target"] == 5
    assert [entry["name"] for entry in body["excluded_columns"]] == ["customer_id", "amount"]
    assert list(body["importances"]) == sorted(body["importances"], key=lambda name: -body["importances"][name])


def test_training_from_the_command_line_prints_the_data_report(capsys: Any, tmp_path: Path, mixed_csv: Path) -> None:
    store = str(tmp_path / "store")
    table = ["--csv", str(mixed_csv), "--target", "outcome", "--categorical", "cylinders", "--drop", "amount"]
    code = main(["--store", store, "train", *table, "--trees", "5", "--n-jobs", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "data: 302 rows read, 297 used, 5 without a target ('outcome') dropped; 2 duplicate rows" in err
    assert "excluded customer_id: identifier-like: 300 distinct values in 302 rows" in err
    assert open_store(store).list_versions("loans")
