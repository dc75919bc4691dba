"""`python -m training`: train, publish, list, show, promote, rollback, and every bad input."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lambda_forest.manifest import Manifest
from lambda_forest.model_cache import load_version
from lambda_forest.store import open_store
from training.cli import EXIT_QUALITY_GATE, main


@pytest.fixture(params=["local", "s3"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    request.getfixturevalue("s3_store")  # moto is active for the test; the CLI makes its own client
    return "s3://lambda-forest-test-models/cli"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def train_args(store_uri: str, *extra: str) -> list[str]:
    return ["--store", store_uri, "train", "--dataset", "iris", "--trees", "8", "--n-jobs", "1", *extra]


def test_train_list_promote_rollback(capsys: Any, store_uri: str) -> None:
    code, out, _ = run(capsys, *train_args(store_uri, "--promote"))
    assert code == 0 and "published iris version" in out
    first = open_store(store_uri).read_alias("iris", "live").version

    code, _, _ = run(capsys, *train_args(store_uri, "--random-state", "7"))
    assert code == 0
    versions = open_store(store_uri).list_versions("iris")
    second = next(v for v in versions if v != first)
    assert len(versions) == 2

    code, out, _ = run(capsys, "--store", store_uri, "list", "--name", "iris")
    assert code == 0
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == versions  # newest first
    assert "[live]" in next(line for line in lines if line.startswith(first))
    assert "accuracy=" in lines[0]

    assert run(capsys, "--store", store_uri, "promote", second, "--name", "iris")[0] == 0
    assert open_store(store_uri).read_alias("iris", "live").version == second
    assert run(capsys, "--store", store_uri, "rollback", "--name", "iris")[0] == 0
    assert open_store(store_uri).read_alias("iris", "live").version == first

    code, out, _ = run(capsys, "--store", store_uri, "show", first, "--name", "iris")
    assert code == 0 and json.loads(out)["version"] == first


def test_manifest_records_what_the_model_is(capsys: Any, tmp_path: Path) -> None:
    store_uri = str(tmp_path / "store")
    assert run(capsys, *train_args(store_uri, "--max-depth", "4"))[0] == 0
    store = open_store(store_uri)
    version = store.list_versions("iris")[0]
    body = json.loads(store.read_manifest("iris", version))
    assert body["format"] == 1
    assert body["name"] == "iris" and body["version"] == version
    assert body["task"] == "classification" and body["estimator"] == "RandomForestClassifier"
    assert body["params"]["n_estimators"] == 8 and body["params"]["max_depth"] == 4
    assert body["target"] == "species"
    assert body["feature_names"][0] == "sepal length (cm)" and len(body["feature_names"]) == 4
    assert body["classes"] == ["setosa", "versicolor", "virginica"]
    assert set(body["metrics"]) == {"accuracy", "f1_macro", "roc_auc_ovr"}
    assert body["training_data"]["source"] == "sklearn:iris" and body["training_data"]["rows"] == 150
    assert len(body["training_data"]["sha256"]) == 64
    assert body["feature_stats"]["sepal length (cm)"]["min"] == 4.3
    model_bytes = store.read_file("iris", version, "model.joblib")
    assert body["artifact"]["bytes"] == len(model_bytes)
    assert version.endswith("-" + body["artifact"]["sha256"][:8])
    assert set(body["runtime"]) == {"python", "scikit-learn", "numpy", "joblib"}


def test_regressor_reports_regression_metrics(capsys: Any, tmp_path: Path) -> None:
    store_uri = str(tmp_path / "store")
    assert run(capsys, "--store", store_uri, "train", "--dataset", "diabetes", "--trees", "5")[0] == 0
    store = open_store(store_uri)
    manifest = Manifest.from_json(store.read_manifest("diabetes", store.list_versions("diabetes")[0]))
    assert manifest.task == "regression" and manifest.classes is None
    assert set(manifest.metrics) == {"rmse", "mae", "r2"}


def test_published_model_predicts_exactly_like_the_trained_one(trained_iris: Any, local_store: Any) -> None:
    from tests.conftest import publish_model

    manifest = publish_model(local_store, trained_iris)
    loaded = load_version(local_store, "iris", manifest.version)
    rows = trained_iris.holdout_X
    result = loaded.predictor.predict(rows, with_probabilities=True)
    assert result.predictions == trained_iris.estimator.predict(rows).tolist()
    assert np.array_equal(np.array(result.probabilities), trained_iris.estimator.predict_proba(rows))


def test_same_data_and_seed_give_the_same_model(capsys: Any, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert run(capsys, *train_args(str(tmp_path / "store"), "--name", name))[0] == 0
    store = open_store(str(tmp_path / "store"))
    a, b = (load_version(store, name, store.list_versions(name)[0]) for name in ("a", "b"))
    rows = np.random.default_rng(0).uniform(0, 8, size=(200, 4))
    assert a.predictor.predict(rows, True) == b.predictor.predict(rows, True)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_classification_and_regression(capsys: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    labels = np.where(X[:, 0] > 0, "yes", "no")
    clf = write_csv(
        tmp_path / "churn.csv",
        ["a", "b", "c", "churned"],
        [[*row, label] for row, label in zip(X.tolist(), labels, strict=True)],
    )
    reg = write_csv(
        tmp_path / "price.csv", ["a", "b", "c", "price"], [[*row, float(row[0] * 3.5 + 0.1)] for row in X.tolist()]
    )
    store_uri = str(tmp_path / "store")
    assert run(capsys, "--store", store_uri, "train", "--csv", str(clf), "--target", "churned", "--trees", "5")[0] == 0
    assert run(capsys, "--store", store_uri, "train", "--csv", str(reg), "--target", "price", "--trees", "5")[0] == 0
    store = open_store(store_uri)
    churn = Manifest.from_json(store.read_manifest("churn", store.list_versions("churn")[0]))
    price = Manifest.from_json(store.read_manifest("price", store.list_versions("price")[0]))
    assert (churn.task, churn.classes, churn.feature_names) == ("classification", ["no", "yes"], ["a", "b", "c"])
    assert price.task == "regression" and price.training_data["source"] == "csv:price.csv"


def test_quality_gate_refuses_to_publish(capsys: Any, tmp_path: Path) -> None:
    store_uri = str(tmp_path / "store")
    code, _, err = run(capsys, *train_args(store_uri, "--min-score", "1.01"))
    assert code == EXIT_QUALITY_GATE
    assert "below --min-score" in err and "nothing was published" in err
    assert open_store(store_uri).list_versions("iris") == []


def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = write_csv(tmp_path / "good.csv", ["x", "y", "label"], [[i, i * 2, "a" if i % 2 else "b"] for i in range(20)])
    tiny = write_csv(tmp_path / "tiny.csv", ["x", "label"], [[i, i % 2] for i in range(4)])
    single = write_csv(tmp_path / "single.csv", ["x", "label"], [[i, "a"] for i in range(20)])
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    return {
        "missing csv": (["train", "--csv", str(tmp_path / "nope.csv"), "--target", "y"], "does not exist"),
        "unreadable csv": (["train", "--csv", str(binary), "--target", "y"], "is not UTF-8 text"),
        "missing target": (["train", "--csv", str(good), "--target", "price"], "has no column 'price'"),
        "no target flag": (["train", "--csv", str(good)], "--csv needs --target"),
        "too few rows": (["train", "--csv", str(tiny), "--target", "label"], "at least 10 are needed"),
        "single class": (["train", "--csv", str(single), "--target", "label"], "single class"),
        "unknown dataset": (["train", "--dataset", "titanic"], "Unknown dataset 'titanic'"),
        "promote missing version": (["promote", "20200101T000000Z-00000000", "--name", "iris"], "no published version"),
        "rollback without alias": (["rollback", "--name", "iris"], "no alias live"),
        "list unknown model": (["list", "--name", "nothing"], "no published versions"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing csv",
        "unreadable csv",
        "missing target",
        "no target flag",
        "too few rows",
        "single class",
        "unknown dataset",
        "promote missing version",
        "rollback without alias",
        "list unknown model",
    ],
)
def test_bad_input_is_one_clear_line_and_changes_nothing(capsys: Any, tmp_path: Path, case: str) -> None:
    args, words = bad_inputs(tmp_path)[case]
    store_dir = tmp_path / "store"
    code, _, err = run(capsys, "--store", str(store_dir), *args)
    assert code != 0
    assert words in err
    assert "Traceback" not in err and err.count("error:") == 1
    assert not store_dir.exists() or not any(p.is_file() for p in store_dir.rglob("*"))


def test_unreachable_or_forbidden_bucket_is_a_clear_error(capsys: Any, s3_store: Any) -> None:
    code, _, err = run(
        capsys, "--store", "s3://bucket-that-does-not-exist/m", "train", "--dataset", "iris", "--trees", "3"
    )
    assert code == 1 and "bucket does not exist" in err and "Traceback" not in err


def test_unreachable_endpoint_fails_cleanly(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setattr("lambda_forest.store.S3_MAX_ATTEMPTS", 1)
    code, _, err = run(capsys, "--store", "s3://some-bucket/m", "list", "--name", "iris")
    assert code == 1 and "cannot be reached" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("kind", "options"),
    [("classifier", {"class_weight": "balanced_subsample"}), ("regressor", {"max_features": 0.5})],
)
def test_growing_with_progress_gives_the_forest_one_fit_gives(kind: str, options: dict[str, Any]) -> None:
    from sklearn.datasets import load_diabetes, load_wine
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from training.forest import fit_with_progress

    forest, load = (
        (RandomForestClassifier, load_wine) if kind == "classifier" else (RandomForestRegressor, load_diabetes)
    )
    X, y = load(return_X_y=True)
    reference = forest(n_estimators=23, random_state=5, **options).fit(X, y)
    grown = forest(n_estimators=23, random_state=5, **options)
    fit_with_progress(grown, X, y, progress=lambda _: None)
    assert len(grown.estimators_) == 23 and not grown.warm_start
    output = "predict_proba" if kind == "classifier" else "predict"
    assert np.array_equal(getattr(grown, output)(X), getattr(reference, output)(X))


def test_store_and_debug_are_accepted_after_the_command(capsys: Any, tmp_path: Path) -> None:
    before, after = str(tmp_path / "before"), str(tmp_path / "after")
    args = ["train", "--dataset", "iris", "--trees", "4", "--n-jobs", "1", "--promote"]
    assert run(capsys, "--store", before, *args)[0] == 0
    assert run(capsys, *args, "--store", after, "--debug")[0] == 0
    assert open_store(after).read_alias("iris", "live") is not None
    # After the command wins over before it.
    assert run(capsys, "--store", before, "list", "--name", "iris", "--store", after)[1].count("[live]") == 1
    code, _, err = run(capsys, "--store", str(tmp_path / "nowhere"), "list", "--name", "iris")
    assert code == 1 and err.startswith("error: Model iris has no published versions")


def command_parsers(parser: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every runnable command of the CLI (`labels upload` included), with its words."""
    import argparse

    subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser
    for action in subparsers:
        for name, subparser in action.choices.items():
            yield from command_parsers(subparser, (*path, name))


def test_every_command_takes_store_and_debug_after_it() -> None:
    from training.cli import build_parser

    commands = dict(command_parsers(build_parser()))
    assert {("train",), ("promote",), ("monitor",), ("labels", "upload"), ("score",)} <= set(commands)
    for words, parser in commands.items():
        options = {option for action in parser._actions for option in action.option_strings}
        assert {"--store", "--debug"} <= options, " ".join(words)


def test_lambda_forest_command_runs_the_same_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    command = Path(sys.executable).parent / "lambda-forest"
    assert command.exists(), "pip install -e . installs the lambda-forest entry point"
    result = subprocess.run(
        [str(command), "train", "--dataset", "iris", "--trees", "3", "--n-jobs", "1", "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "lambda-forest --store" in result.stdout  # the hint to promote names the command that was run
    assert len(open_store(str(tmp_path)).list_versions("iris")) == 1
    usage = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=60).stdout
    assert usage.startswith("usage: lambda-forest")
    # `lambda-forest show ... | head`: a reader that stops early is no error.
    [version] = open_store(str(tmp_path)).list_versions("iris")
    shown = subprocess.Popen(
        [str(command), "show", version, "--name", "iris", "--store", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert shown.stdout is not None and shown.stderr is not None
    shown.stdout.close()
    assert shown.stderr.read() == b"" and shown.wait(timeout=60) == 1
