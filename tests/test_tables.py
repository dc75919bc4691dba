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
from tests.conftest import api_event, data_scientists_model, publish_model, request_rows
from training.cli import main
from training.forest import json_rows, table_of


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


# Every way a table can be unusable: one line, a non-zero exit, nothing published.


def write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def lines(header: str, rows: list[str]) -> str:
    return "\n".join([header, *rows]) + "\n"


def bad_tables(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    ids = write(tmp_path / "ids.csv", lines("customer,label", [f"c{i},{'ab'[i % 2]}" for i in range(40)]))
    single = write(tmp_path / "single.csv", lines("x,label", [f"{i},same" for i in range(20)]))
    many = write(tmp_path / "many.csv", lines("city,label", [f"city{i % 1500},{'ab'[i % 2]}" for i in range(3000)]))
    dates = write(
        tmp_path / "dates.csv", lines("day,x,label", [f"2024-01-{1 + i % 28:02d},{i},{'ab'[i % 2]}" for i in range(30)])
    )
    mixed = write(
        tmp_path / "mixed.csv", lines("age,label", [f"{'unknown' if i == 3 else i},{'ab'[i % 2]}" for i in range(30)])
    )
    semicolon = write(tmp_path / "semi.csv", lines("x;label", [f"{i};{'ab'[i % 2]}" for i in range(20)]))
    latin = write(
        tmp_path / "latin.csv", lines("town,label", [f"Orléans,{'ab'[i % 2]}" for i in range(20)]).encode("latin-1")
    )
    ragged = write(tmp_path / "ragged.csv", lines("x,label", ["1,a", "2,b,3", "3,a"]))
    not_parquet = write(tmp_path / "fake.parquet", lines("x,label", ["1,a", "2,b"]))
    broken_parquet = write(tmp_path / "broken.parquet", b"PAR1" + b"\x00" * 64 + b"PAR1")
    text_target = write(tmp_path / "text.csv", lines("x,label", [f"{i},{'ab'[i % 2]}" for i in range(20)]))
    no_target = write(tmp_path / "none.csv", lines("x,label", [f"{i}," for i in range(20)]))
    empty = write(tmp_path / "empty.csv", "")
    header_only = write(tmp_path / "header.csv", "x,label\n")
    twice = write(tmp_path / "twice.csv", lines("x,x,label", ["1,2,a"] * 20))
    train = ["train", "--target", "label"]
    return {
        "no usable feature": ([*train, "--csv", ids], "has no usable feature column (customer: identifier-like"),
        "one class": ([*train, "--csv", single], "has a single class (same)"),
        "thousands of categories": (
            [*train, "--csv", many],
            "'city' has 1500 distinct values, more than --max-categories 1000",
        ),
        "dates": ([*train, "--csv", dates], "Column 'day' holds dates (e.g. '2024-01-01')"),
        "numbers and text": ([*train, "--csv", mixed], "Column 'age' mixes numbers and text (e.g. 'unknown')"),
        "another delimiter": (
            [*train, "--csv", semicolon],
            "separates its values with ';', not ','; pass --delimiter ';'",
        ),
        "another encoding": ([*train, "--csv", latin], "is not UTF-8 text; save it as UTF-8 CSV, or pass its encoding"),
        "ragged rows": ([*train, "--csv", ragged], "line 3 has 3 fields; the header has 2"),
        "not parquet": ([*train, "--parquet", not_parquet], "is not a Parquet file"),
        "damaged parquet": ([*train, "--parquet", broken_parquet], "is not a readable Parquet file"),
        "text regression target": (
            [*train, "--csv", text_target, "--task", "regression"],
            "cannot be a regression target",
        ),
        "no target values": ([*train, "--csv", no_target], "has no values; every row's target is missing"),
        "empty file": ([*train, "--csv", empty], "is empty"),
        "header only": ([*train, "--csv", header_only], "has a header but no data rows"),
        "repeated column": ([*train, "--csv", twice], "repeats the column name(s) 'x'"),
        "unknown --categorical": (
            [*train, "--csv", text_target, "--categorical", "colour"],
            "--categorical names 'colour'",
        ),
        "--drop the target": ([*train, "--csv", text_target, "--drop", "label"], "--drop names the target 'label'"),
        "missing file": ([*train, "--csv", str(tmp_path / "nope.csv")], "does not exist"),
        "missing s3 object": ([*train, "--csv", "s3://lambda-forest-test-models/nope.csv"], "nope.csv does not exist"),
        "missing bucket": (
            [*train, "--csv", "s3://no-such-bucket-here/x.csv"],
            "the bucket 'no-such-bucket-here' does not exist",
        ),
    }


BAD_TABLES = (
    "no usable feature",
    "one class",
    "thousands of categories",
    "dates",
    "numbers and text",
    "another delimiter",
    "another encoding",
    "ragged rows",
    "not parquet",
    "damaged parquet",
    "text regression target",
    "no target values",
    "empty file",
    "header only",
    "repeated column",
    "unknown --categorical",
    "--drop the target",
    "missing file",
    "missing s3 object",
    "missing bucket",
)


@pytest.mark.parametrize("case", BAD_TABLES)
def test_unusable_tables_are_one_clear_line_and_publish_nothing(
    capsys: Any, tmp_path: Path, s3_store: Any, case: str
) -> None:
    cases = bad_tables(tmp_path)
    assert sorted(cases) == sorted(BAD_TABLES)
    args, words = cases[case]
    store_dir = tmp_path / "store"
    code = main(["--store", str(store_dir), *args])
    err = capsys.readouterr().err
    assert code == 1
    assert words in err, err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert not store_dir.exists() or not any(p.is_file() for p in store_dir.rglob("*"))


# Reading: Parquet, S3, options.


def penguin_like(rows: int = 120, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    species = rng.choice(["Adelie", "Gentoo", "Chinstrap"], rows)
    island = np.where(species == "Gentoo", "Biscoe", rng.choice(["Dream", "Torgersen"], rows)).astype(object)
    island[::17] = None
    bill = np.where(species == "Adelie", 38.0, 47.0) + rng.normal(0, 2, rows)
    bill[::13] = np.nan
    return pd.DataFrame(
        {"island": island, "bill_length_mm": bill, "year": rng.choice([2007, 2008, 2009], rows), "species": species}
    )


def trains(capsys: Any, store: Path, *args: str) -> Manifest:
    code = main(["--store", str(store), "train", *args, "--trees", "5", "--n-jobs", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    opened = open_store(str(store))
    (name,) = opened.list_models()
    return Manifest.from_json(opened.read_manifest(name, opened.list_versions(name)[0]))


@pytest.mark.parametrize("flag", ["--parquet", "--csv"])
def test_parquet_tables_train_and_the_data_scientist_reads_them_back(capsys: Any, tmp_path: Path, flag: str) -> None:
    path = tmp_path / "penguins.parquet"
    penguin_like().to_parquet(path)
    manifest = trains(capsys, tmp_path / "store", flag, str(path), "--target", "species")
    assert manifest.training_data["source"] == "parquet:penguins.parquet"
    assert [f["type"] for f in manifest.features] == ["categorical", "numeric", "numeric"]
    model = joblib.load(
        io.BytesIO(open_store(str(tmp_path / "store")).read_file("penguins", manifest.version, "model.joblib"))
    )
    table = pd.read_parquet(path)[manifest.feature_names]
    assert (
        model.predict(table).tolist()
        == model.predict(table_of(json_rows(table, manifest.schema), manifest.schema, table)).tolist()
    )


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_tables_are_read_from_s3(capsys: Any, tmp_path: Path, s3_store: Any, suffix: str) -> None:
    buffer = io.BytesIO()
    frame = penguin_like()
    frame.to_csv(buffer, index=False) if suffix == "csv" else frame.to_parquet(buffer)
    s3_store.client.put_object(Bucket=s3_store.bucket, Key=f"data/penguins.{suffix}", Body=buffer.getvalue())
    uri = f"s3://{s3_store.bucket}/data/penguins.{suffix}"
    manifest = trains(capsys, tmp_path / "store", f"--{suffix}", uri, "--target", "species")
    assert manifest.training_data["source"] == f"{suffix}:{uri}" and manifest.name == "penguins"
    assert manifest.data_report["rows_used"] == 120


def test_a_tab_separated_file_is_named_as_typed_and_trains_with_it(capsys: Any, tmp_path: Path) -> None:
    """`--delimiter '\\t'` (what a shell passes for '\\t') is a tab, as the hint for such a file says."""
    path = tmp_path / "birds.tsv"
    penguin_like().to_csv(path, sep="\t", index=False)
    common = ["--store", str(tmp_path / "store"), "train", "--csv", str(path), "--target", "species"]
    assert main(common) == 1
    assert "separates its values with '\\t', not ','; pass --delimiter '\\t'." in capsys.readouterr().err

    manifest = trains(capsys, tmp_path / "store", *common[3:], "--delimiter", "\\t")

    assert manifest.feature_names == ["island", "bill_length_mm", "year"]


def test_options_change_how_columns_are_read(capsys: Any, tmp_path: Path) -> None:
    frame = penguin_like()
    frame["comment"] = None  # no values at all
    path = tmp_path / "birds.csv"
    frame.to_csv(path, sep=";", encoding="latin-1")  # with its index, as pandas writes by default
    manifest = trains(
        capsys,
        tmp_path / "store",
        "--csv",
        str(path),
        "--target",
        "species",
        "--delimiter",
        ";",
        "--encoding",
        "latin-1",
        "--categorical",
        "year",
        "--max-categories",
        "3",
    )
    assert manifest.feature_names == ["island", "bill_length_mm", "year"]
    assert manifest.features[2]["categories"] == ["2007", "2008", "2009"]
    assert manifest.excluded_columns == [
        {"name": "Unnamed: 0", "reason": "a row number (0, 1, 2, ... in order)"},
        {"name": "comment", "reason": "no values: every cell is missing"},
    ]


def test_datetime_columns_from_parquet_are_refused(capsys: Any, tmp_path: Path) -> None:
    frame = penguin_like()
    frame["seen"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(frame)), unit="D")
    path = tmp_path / "dated.parquet"
    frame.to_parquet(path)
    code = main(["--store", str(tmp_path / "store"), "train", "--parquet", str(path), "--target", "species"])
    assert code == 1 and "Column 'seen' holds dates" in capsys.readouterr().err


# Serving: metrics, old manifests, mismatched artifacts.


def test_requests_count_missing_values_and_unknown_categories(
    handler: Any, local_store: Any, trained_loans: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app

    publish_model(local_store, trained_loans, name="loans")
    invoke = handler(local_store, name="loans")
    log = io.StringIO()
    monkeypatch.setattr(app.logger.registered_handler, "stream", log)
    capsys.readouterr()
    rows = [["east", None, "self", 4, True], ["north", None, None, "4", False]]
    level = app.logger.log_level
    app.logger.setLevel("INFO")
    try:
        assert invoke(api_event("POST", "/predict", {"instances": rows})).status == 200
    finally:
        app.logger.setLevel(level)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emitted = next(entry for entry in printed if "MissingValues" in entry)
    assert (emitted["MissingValues"], emitted["UnknownCategories"]) == ([3.0], [1.0])
    gaps = next(entry for entry in map(json.loads, log.getvalue().splitlines()) if entry["message"] == "rows with gaps")
    assert gaps["missing"] == {"income": 2, "employment": 1} and gaps["unknown_categories"] == {"region": 1}


def test_a_version_published_before_features_keeps_serving_numbers_only(
    handler: Any, local_store: Any, published_iris: Any
) -> None:
    body = json.loads(local_store.read_manifest("iris", published_iris.version))
    for field in ("features", "excluded_columns", "data_report", "importances", "model_object"):
        del body[field]
    (local_store.root / "iris" / "versions" / published_iris.version / "manifest.json").write_text(json.dumps(body))
    invoke = handler(local_store)
    assert invoke(api_event("POST", "/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})).body["predictions"] == [
        "setosa"
    ]
    refused = invoke(api_event("POST", "/predict", {"instances": [[5.1, 3.5, 1.4, None]]}))
    assert refused.status == 400 and "is null; expected a finite number" in refused.body["error"]["message"]
    features = invoke(api_event("GET", "/model")).body["features"]
    assert features[0] == {"name": "sepal length (cm)", "type": "numeric", "missing_allowed": False}


def test_a_compiled_forest_whose_categories_differ_from_the_manifest_is_refused(
    local_store: Any, trained_loans: Any
) -> None:
    from lambda_forest.compiled import load_compiled
    from lambda_forest.errors import InvalidArtifact

    manifest = publish_model(local_store, trained_loans, name="loans")
    npz = local_store.read_file("loans", manifest.version, "forest.npz")
    assert load_compiled(manifest, npz).n_features == 5
    body = manifest.to_dict()
    body["features"][0]["categories"] = ["north", "west", "south"]
    with pytest.raises(InvalidArtifact) as refused:
        load_compiled(Manifest.from_json(json.dumps(body).encode()), npz)
    assert "category tables differ" in str(refused.value)
