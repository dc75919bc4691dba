"""The compiled forest gives scikit-learn's answers, and serving it never imports scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from lambda_forest.compiled import CompiledForest, compile_forest, read_npz, to_npz
from lambda_forest.errors import TrainingError
from tests.conftest import EVENTS, ROOT, publish_model, with_missing_values
from training.forest import threshold_rows, verify_compiled

DATASETS = {
    "iris": (load_iris, RandomForestClassifier),
    "digits": (load_digits, RandomForestClassifier),
    "breast_cancer": (load_breast_cancer, RandomForestClassifier),
    "diabetes": (load_diabetes, RandomForestRegressor),
}


def compiled(estimator: Any) -> CompiledForest:
    classes = estimator.classes_.tolist() if hasattr(estimator, "classes_") else None
    return CompiledForest(read_npz(to_npz(compile_forest(estimator))), classes)


def assert_same_answers(estimator: Any, forest: CompiledForest, rows: np.ndarray) -> None:
    """Every walk that can serve (native and numpy here) answers exactly as the estimator."""
    assert forest.walks == ["native", "numpy"]
    for walk in forest.walks:
        result = forest.predict(rows, with_probabilities=True, walk=walk)
        assert result.predictions == estimator.predict(rows).tolist(), walk
        if hasattr(estimator, "classes_"):
            assert np.array_equal(np.array(result.probabilities), estimator.predict_proba(rows)), walk


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("max_depth", [None, 3])
def test_compiled_forest_answers_exactly_like_scikit_learn(dataset: str, max_depth: int | None) -> None:
    loader, kind = DATASETS[dataset]
    X, y = loader(return_X_y=True)
    estimator = kind(n_estimators=12, max_depth=max_depth, random_state=1).fit(X, y)
    forest = compiled(estimator)
    rng = np.random.default_rng(2)
    noisy = X + rng.normal(scale=X.std(axis=0) * 0.3, size=X.shape)
    for rows in (X[:1], X, noisy, threshold_rows(estimator, X), np.repeat(X, 3, axis=0)):
        assert_same_answers(estimator, forest, rows)


def test_large_batches_take_the_tree_by_tree_path_with_the_same_answers() -> None:
    X, y = make_classification(3000, 20, n_informative=8, n_classes=3, random_state=0)
    estimator = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    forest = compiled(estimator)
    assert X.shape[0] * forest.n_trees > 20_000  # above ALL_TREES_MAX_PAIRS
    assert_same_answers(estimator, forest, X)


def test_missing_values_follow_scikit_learns_routes() -> None:
    estimator, X = with_missing_values(rows=400, features=5, trees=10)
    forest = compiled(estimator)
    assert_same_answers(estimator, forest, X)
    assert_same_answers(estimator, forest, np.repeat(X, 20, axis=0))  # the tree-by-tree walk too


def test_publishing_refuses_a_compiled_forest_that_differs(trained_iris: Any) -> None:
    arrays = compile_forest(trained_iris.estimator)
    arrays["value"][arrays["value"] > 0] += 1e-9  # off by far less than any probability shown
    forest = CompiledForest(read_npz(to_npz(arrays)), trained_iris.estimator.classes_.tolist())
    with pytest.raises(TrainingError, match="compiled forest's native walk disagrees"):
        verify_compiled(trained_iris.estimator, forest, trained_iris.holdout_X)


def test_a_refused_compiled_forest_publishes_nothing(trained_iris: Any, local_store: Any, monkeypatch: Any) -> None:
    import training.forest

    def skewed(estimator: Any) -> dict[str, np.ndarray]:
        arrays = compile_forest(estimator)
        arrays["threshold"] = arrays["threshold"] + 0.05
        return arrays

    monkeypatch.setattr(training.forest, "compile_forest", skewed)
    with pytest.raises(TrainingError):
        publish_model(local_store, trained_iris)
    assert local_store.list_versions("iris") == []


SERVE_WITHOUT_SKLEARN = """
import json, sys
import app
from local_lambda.events import LocalContext
event = json.load(open(sys.argv[1]))
response = app.lambda_handler(event, LocalContext())
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"sklearn", "scipy", "joblib", "boto3"})
print(json.dumps({"status": response["statusCode"], "body": json.loads(response["body"]), "heavy": heavy}))
"""


@pytest.mark.parametrize("compile", [True, False], ids=["compiled", "joblib"])
def test_compiled_path_never_imports_scikit_learn(trained_iris: Any, local_store: Any, compile: bool) -> None:
    publish_model(local_store, trained_iris, compile=compile)
    env = {
        "MODEL_STORE": str(local_store.root),
        "MODEL_NAME": "iris",
        "ALLOW_PICKLE": str(not compile).lower(),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Tests",
        "PATH": "/usr/bin:/bin",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_SKLEARN, str(EVENTS / "predict.json")],
        cwd=ROOT / "functions" / "predict",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["status"] == 200 and outcome["body"]["predictions"] == ["setosa", "virginica"]
    if compile:
        assert outcome["heavy"] == []  # no scikit-learn, scipy, joblib, nor boto3 for a local store
    else:
        assert {"sklearn", "joblib"} <= set(outcome["heavy"])


def test_a_compiled_forest_of_another_format_is_refused(trained_iris: Any) -> None:
    from lambda_forest.errors import InvalidArtifact

    arrays = compile_forest(trained_iris.estimator)
    del arrays["depths"]
    with pytest.raises(InvalidArtifact, match="not format 1"):
        read_npz(to_npz(arrays))
    with pytest.raises(InvalidArtifact):
        read_npz(b"not an npz file")


def _nodes(arrays: dict[str, np.ndarray]) -> int:
    return arrays["feature"].shape[0]


# What a bucket writer without the signing key could put in forest.npz (fixing its sha256 in the manifest):
# each would make a walk read or write outside the arrays (the native walker checks no bounds).
FORGERIES: dict[str, Any] = {
    "a child past the last node": lambda a: a["children"].__setitem__(1, _nodes(a)),
    "a negative child": lambda a: a["children"].__setitem__(0, -1),
    "a root past the last node": lambda a: a["roots"].__setitem__(0, _nodes(a) + 1000),
    "a feature past the row": lambda a: a["feature"].__setitem__(int(a["roots"][0]), 50_000_000),
    "a negative feature": lambda a: a["feature"].__setitem__(int(a["roots"][0]), -1),
    "leaf values for fewer nodes": lambda a: a.update(value=a["value"][:-1]),
    "more trees than roots": lambda a: a.update(n_trees=np.array(int(a["n_trees"]) + 1)),
    "node ids of another type": lambda a: a.update(children=a["children"].astype(np.int16)),
    "node ids as numbers": lambda a: a.update(children=a["children"].astype(np.float64)),
    "leaf values as float32": lambda a: a.update(value=a["value"].astype(np.float32)),
    "leaf values with another shape": lambda a: a.update(value=a["value"][:, :, np.newaxis]),
    "a depth past the node count": lambda a: a["depths"].__setitem__(0, _nodes(a)),
    "no trees": lambda a: a.update(n_trees=np.array(0), roots=a["roots"][:0], depths=a["depths"][:0]),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forest_whose_walk_would_leave_its_arrays_is_refused(trained_iris: Any, forgery: str) -> None:
    from lambda_forest.errors import InvalidArtifact

    arrays = compile_forest(trained_iris.estimator)
    read_npz(to_npz(arrays))  # as published: accepted
    FORGERIES[forgery](arrays)
    with pytest.raises(InvalidArtifact, match="inconsistent"):
        read_npz(to_npz(arrays))
