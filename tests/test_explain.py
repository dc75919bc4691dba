"""Explanations: exact per-feature contributions, checked against shap, treeinterpreter and brute force."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from lambda_forest.compiled import CompiledForest, compile_forest, read_npz, to_npz
from lambda_forest.explain import (
    Contributions,
    ExplainOptions,
    ForestExplainer,
    explanation_arrays,
    read_explanation_arrays,
)

DATASETS = {
    "iris": (load_iris, RandomForestClassifier),
    "breast_cancer": (load_breast_cancer, RandomForestClassifier),
    "diabetes": (load_diabetes, RandomForestRegressor),
}


def published_arrays(estimator: Any) -> dict[str, np.ndarray]:
    return read_npz(to_npz(compile_forest(estimator)))


def explainer_and_forest(estimator: Any, native: bool = True) -> tuple[ForestExplainer, CompiledForest]:
    """Both built from the published files' bytes, as the function reads them."""
    classes = estimator.classes_.tolist() if hasattr(estimator, "classes_") else None
    arrays = published_arrays(estimator)
    cover = read_explanation_arrays(to_npz(explanation_arrays(estimator)))["cover"]
    return ForestExplainer(arrays, cover, native=native), CompiledForest(arrays, classes)


def outputs_of(estimator: Any, X: np.ndarray) -> np.ndarray:
    """(rows, outputs): the estimator's own probabilities, or its values as one output."""
    return estimator.predict_proba(X) if hasattr(estimator, "classes_") else estimator.predict(X)[:, None]


def explain_all(explainer: ForestExplainer, forest: CompiledForest, X: np.ndarray, method: str) -> Contributions:
    if method == "path":
        return explainer.path_contributions(forest.leaves(X), None)
    return explainer.shap_values(X.astype(np.float32), None)


def with_missing(X: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    X = X.copy()
    X[np.random.default_rng(seed).random(X.shape) < share] = np.nan
    return X


@pytest.fixture(scope="module")
def fitted() -> dict[str, tuple[Any, np.ndarray]]:
    models = {}
    for name, (loader, kind) in DATASETS.items():
        X, y = loader(return_X_y=True)
        models[name] = (kind(n_estimators=15, random_state=0).fit(X, y), X)
        # Trained with missing values, so splits carry learned missing-value routes.
        X_missing = with_missing(X, 0.15)
        models[name + "+missing"] = (kind(n_estimators=15, max_depth=8, random_state=0).fit(X_missing, y), X_missing)
    return models


@pytest.mark.parametrize("method", ["path", "shap"])
@pytest.mark.parametrize("model", [*DATASETS, *(name + "+missing" for name in DATASETS)])
def test_bias_plus_contributions_is_the_prediction(fitted: Any, model: str, method: str) -> None:
    estimator, X = fitted[model]
    explainer, forest = explainer_and_forest(estimator)
    rows = X[:150]
    explained = explain_all(explainer, forest, rows, method)
    assert explained.contributions.shape == (len(rows), X.shape[1], outputs_of(estimator, rows).shape[1])
    total = explained.bias + explained.contributions.sum(axis=1)
    assert np.abs(total - outputs_of(estimator, rows)).max() < 1e-9


def saabas_reference(estimator: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Saabas written out from scikit-learn's decision paths: (bias, contributions[row, feature, output])."""
    paths = [tree.decision_path(X.astype(np.float32)) for tree in estimator.estimators_]
    n_outputs = outputs_of(estimator, X[:1]).shape[1]
    contributions = np.zeros((len(X), X.shape[1], n_outputs))
    bias = np.zeros(n_outputs)
    for tree, path in zip(estimator.estimators_, paths, strict=True):
        values = tree.tree_.value[:, 0, :n_outputs]
        bias += values[0]
        for row in range(len(X)):
            nodes = path.indices[path.indptr[row] : path.indptr[row + 1]]  # root to leaf, in order
            for parent, child in itertools.pairwise(nodes):
                contributions[row, tree.tree_.feature[parent]] += values[child] - values[parent]
    trees = len(estimator.estimators_)
    return bias / trees, contributions / trees


@pytest.mark.parametrize("model", [*DATASETS, "iris+missing"])
def test_path_contributions_follow_scikit_learns_routes(fitted: Any, model: str) -> None:
    estimator, X = fitted[model]
    explainer, forest = explainer_and_forest(estimator)
    rows = X[:60]
    explained = explainer.path_contributions(forest.leaves(rows), None)
    bias, contributions = saabas_reference(estimator, rows)
    assert np.abs(explained.bias - bias).max() < 1e-12
    assert np.abs(explained.contributions - contributions).max() < 1e-12


@pytest.mark.parametrize("model", ["iris", "breast_cancer"])
@pytest.mark.filterwarnings("ignore:distutils Version classes:DeprecationWarning")
def test_path_contributions_equal_treeinterpreters(fitted: Any, model: str) -> None:
    # treeinterpreter 0.2.3 handles classifiers only on scikit-learn 1.9 (its regressor path fails on
    # the (nodes, 1, 1) value array), so regressors are checked against saabas_reference above.
    from treeinterpreter import treeinterpreter

    estimator, X = fitted[model]
    explainer, forest = explainer_and_forest(estimator)
    _, bias, contributions = treeinterpreter.predict(estimator, X[:80])
    explained = explainer.path_contributions(forest.leaves(X[:80]), None)
    assert np.abs(explained.bias - bias[0]).max() < 1e-12
    assert np.abs(explained.contributions - contributions).max() < 1e-12


@pytest.mark.parametrize("native", [True, False], ids=["native", "numpy"])
@pytest.mark.parametrize("model", list(DATASETS))
def test_tree_shap_equals_shaps_tree_explainer(fitted: Any, model: str, native: bool) -> None:
    import shap

    estimator, X = fitted[model]
    explainer, _ = explainer_and_forest(estimator, native=native)
    assert (explainer.native is not None) == native
    rows = X[:80]
    reference = shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
    expected = np.asarray(reference.shap_values(rows)).reshape(len(rows), X.shape[1], -1)
    explained = explainer.shap_values(rows.astype(np.float32), None)
    assert np.abs(explained.bias - np.atleast_1d(reference.expected_value)).max() < 1e-9
    assert np.abs(explained.contributions - expected).max() < 1e-9


def conditional_expectation(tree: Any, x: np.ndarray, known: set[int], output: int) -> float:
    """E[tree(x) | x_known], path-dependent: an unknown feature's split averages its sides by training cover."""
    t = tree.tree_
    x32 = x.astype(np.float32)

    def expect(node: int) -> float:
        left, right = t.children_left[node], t.children_right[node]
        if left == -1:
            return float(t.value[node, 0, output])
        feature = t.feature[node]
        if feature in known:
            value = x32[feature]
            goes_left = bool(t.missing_go_to_left[node]) if np.isnan(value) else value <= t.threshold[node]
            return expect(left if goes_left else right)
        cover = t.weighted_n_node_samples
        return (cover[left] * expect(left) + cover[right] * expect(right)) / cover[node]

    return expect(0)


def brute_force_shapley(estimator: Any, x: np.ndarray, output: int) -> np.ndarray:
    """Shapley values by their definition: every subset of features, weighted |S|! (n - |S| - 1)! / n!."""
    n = len(x)
    phi = np.zeros(n)
    for tree in estimator.estimators_:
        v = {
            frozenset(s): conditional_expectation(tree, x, set(s), output)
            for size in range(n + 1)
            for s in itertools.combinations(range(n), size)
        }
        for i in range(n):
            for subset, value in v.items():
                if i not in subset:
                    weight = math.factorial(len(subset)) * math.factorial(n - len(subset) - 1) / math.factorial(n)
                    phi[i] += weight * (v[subset | {i}] - value)
    return phi / len(estimator.estimators_)


@pytest.mark.parametrize("native", [True, False], ids=["native", "numpy"])
@pytest.mark.parametrize("kind", [RandomForestClassifier, RandomForestRegressor])
def test_tree_shap_with_missing_values_equals_brute_force(kind: Any, native: bool) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = X[:, 0] + 2 * X[:, 1] * (X[:, 2] > 0) + rng.normal(scale=0.3, size=300)
    if kind is RandomForestClassifier:
        y = np.digitize(y, [-1, 1])  # three classes
    X_train = with_missing(X, 0.2, seed=4)
    estimator = kind(n_estimators=4, max_depth=5, random_state=0).fit(X_train, y)
    assert any(tree.tree_.missing_go_to_left.any() for tree in estimator.estimators_)
    explainer, _ = explainer_and_forest(estimator, native=native)
    assert (explainer.native is not None) == native
    rows = np.vstack([with_missing(X[:12], 0.35, seed=5), np.full((1, 4), np.nan), X[12:14]])
    explained = explainer.shap_values(rows.astype(np.float32), None)
    for row, x in enumerate(rows):
        for output in range(explained.contributions.shape[2]):
            expected = brute_force_shapley(estimator, x, output)
            assert np.abs(explained.contributions[row, :, output] - expected).max() < 1e-12


def test_the_predicted_class_is_one_column_of_every_class(fitted: Any) -> None:
    estimator, X = fitted["iris+missing"]
    explainer, forest = explainer_and_forest(estimator)
    predicted = np.argmax(estimator.predict_proba(X), axis=1)
    leaves = forest.leaves(X)
    for every, chosen in (
        (explainer.path_contributions(leaves, None), explainer.path_contributions(leaves, predicted)),
        (explainer.shap_values(X.astype(np.float32), None), explainer.shap_values(X.astype(np.float32), predicted)),
    ):
        assert np.array_equal(chosen.contributions[:, :, 0], every.contributions[np.arange(len(X)), :, predicted])


def test_a_forest_of_stumps_and_single_leaves_explains_too() -> None:
    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]] * 5)
    y = np.array([0, 1, 0, 1] * 5)
    estimator = RandomForestClassifier(n_estimators=6, max_depth=1, bootstrap=False, random_state=0).fit(X, y)
    constant = RandomForestRegressor(n_estimators=3, random_state=0).fit(X, np.ones(len(X)))  # every tree a leaf
    for model in (estimator, constant):
        explainer, forest = explainer_and_forest(model)
        for method in ("path", "shap"):
            explained = explain_all(explainer, forest, X, method)
            assert np.abs(explained.bias + explained.contributions.sum(axis=1) - outputs_of(model, X)).max() < 1e-12


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (False, None),
        (True, ExplainOptions("path", False)),
        ("shap", ExplainOptions("shap", False)),
        ({"method": "shap", "classes": "all"}, ExplainOptions("shap", True)),
        ({"classes": "all"}, ExplainOptions("path", True)),
    ],
)
def test_explain_options(value: Any, expected: ExplainOptions | None) -> None:
    assert ExplainOptions.parse(value) == expected


@pytest.mark.parametrize("value", [None, "lime", 1, [], {"method": "kernel"}, {"classes": "some"}, {"depth": 2}])
def test_explain_options_that_are_refused(value: Any) -> None:
    from lambda_forest.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="expected true, false"):
        ExplainOptions.parse(value)


# Through the function: POST /predict with "explain", GET /model.


def predict(api: Any, body: dict[str, Any]) -> Any:
    from tests.conftest import api_event

    return api(api_event("POST", "/predict", body))


IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.0, 2.2, 5.0, 1.5]]


@pytest.mark.parametrize("method", ["path", "shap"])
@pytest.mark.parametrize("compile", [True, False], ids=["compiled", "joblib"])
def test_predict_explains_the_predicted_class(
    handler: Any, local_store: Any, trained_iris: Any, method: str, compile: bool
) -> None:
    from tests.conftest import publish_model

    manifest = publish_model(local_store, trained_iris, compile=compile)
    body = predict(handler(local_store, allow_pickle=not compile), {"instances": IRIS_ROWS, "explain": method}).body
    assert len(body["explanations"]) == len(IRIS_ROWS)
    for row, explanation in enumerate(body["explanations"]):
        assert explanation["class"] == body["predictions"][row]
        assert list(explanation["contributions"]) == manifest.feature_names
        probability = body["probabilities"][row][body["classes"].index(explanation["class"])]
        assert abs(explanation["bias"] + sum(explanation["contributions"].values()) - probability) < 1e-9


def test_both_serving_paths_explain_identically(handler: Any, local_store: Any, trained_iris: Any) -> None:
    from tests.conftest import publish_model

    answers = {}
    for compile in (True, False):
        name = f"iris-{'compiled' if compile else 'joblib'}"
        publish_model(local_store, trained_iris, name=name, compile=compile)
        api = handler(local_store, name=name, allow_pickle=not compile)
        answers[compile] = [
            predict(
                api, {"instances": trained_iris.holdout_X.tolist(), "explain": {"method": method, "classes": "all"}}
            ).body["explanations"]
            for method in ("path", "shap")
        ]
    assert answers[True] == answers[False]


def test_every_class_comes_in_the_order_of_classes(iris_api_explain: Any) -> None:
    body = predict(iris_api_explain, {"instances": IRIS_ROWS, "explain": {"method": "shap", "classes": "all"}}).body
    for row, explanation in enumerate(body["explanations"]):
        assert explanation["class"] == body["predictions"][row]
        for k, probability in enumerate(body["probabilities"][row]):
            total = explanation["bias"][k] + sum(values[k] for values in explanation["contributions"].values())
            assert abs(total - probability) < 1e-9


@pytest.fixture
def iris_api_explain(handler: Any, local_store: Any, published_iris: Any) -> Any:
    return handler(local_store)


def test_a_regressor_explains_its_value(handler: Any, local_store: Any, trained_diabetes: Any) -> None:
    from tests.conftest import publish_model

    publish_model(local_store, trained_diabetes, name="diabetes")
    rows = trained_diabetes.holdout_X[:20].tolist()
    for method in ("path", "shap"):
        body = predict(handler(local_store, name="diabetes"), {"instances": rows, "explain": method}).body
        for value, explanation in zip(body["predictions"], body["explanations"], strict=True):
            assert "class" not in explanation
            assert abs(explanation["bias"] + sum(explanation["contributions"].values()) - value) < 1e-9


def test_plain_predictions_never_read_the_explanation_file(
    handler: Any, local_store: Any, published_iris: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    original = local_store.read_file
    monkeypatch.setattr(local_store, "read_file", lambda *args: read.append(args[-1]) or original(*args))
    api = handler(local_store)
    assert predict(api, {"instances": IRIS_ROWS}).status == 200
    assert predict(api, {"instances": IRIS_ROWS, "explain": "path"}).status == 200
    assert read == ["forest.npz"]
    assert predict(api, {"instances": IRIS_ROWS, "explain": "shap"}).status == 200
    assert predict(api, {"instances": IRIS_ROWS, "explain": "shap"}).status == 200
    assert read == ["forest.npz", "explain.npz"]  # once, on the first Tree SHAP request


def test_a_version_published_before_explanations_explains_by_path_only(
    handler: Any, local_store: Any, trained_iris: Any
) -> None:
    import dataclasses

    from training.forest import build_artifact, publish

    manifest, files = build_artifact("iris", trained_iris)
    del files["explain.npz"]
    manifest = dataclasses.replace(manifest, explain=None)
    publish(local_store, manifest, files)
    local_store.set_alias("iris", "live", manifest.version)
    api = handler(local_store)
    assert api_get_model(api)["explanations"] == {"methods": ["path"], "default": "path"}
    assert predict(api, {"instances": IRIS_ROWS, "explain": True}).status == 200
    refused = predict(api, {"instances": IRIS_ROWS, "explain": "shap"})
    assert refused.status == 400 and refused.body["error"]["code"] == "explain_unsupported"
    assert "supports 'path'" in refused.body["error"]["message"]


def api_get_model(api: Any) -> Any:
    from tests.conftest import api_event

    return api(api_event("GET", "/model")).body


def test_tree_shap_over_its_time_budget_is_refused_with_the_budget(
    handler: Any, local_store: Any, published_iris: Any
) -> None:
    api = handler(local_store, explain_seconds=0.0005)
    predict(api, {"instances": IRIS_ROWS * 50, "explain": "shap"})  # the first builds the leaf paths, on its time
    refused = predict(api, {"instances": IRIS_ROWS * 50, "explain": "shap"})
    assert refused.status == 400 and refused.body["error"]["code"] == "explain_over_budget"
    message = refused.body["error"]["message"]
    assert "ms per row" in message and "rows per request with 'shap' (200 sent)" in message
    most = int(message.split("at most ")[1].split()[0])
    assert predict(api, {"instances": IRIS_ROWS * 50, "explain": "path"}).status == 200
    assert predict(api, {"instances": (IRIS_ROWS * 50)[:most], "explain": "shap"}).status == 200
    assert predict(api, {"instances": (IRIS_ROWS * 50)[: most + 1], "explain": "shap"}).status == 400


def test_explanations_too_large_for_a_response_are_refused(
    handler: Any, local_store: Any, published_iris: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app

    monkeypatch.setattr(app, "LAMBDA_RESPONSE_LIMIT_BYTES", 12_000)
    api = handler(local_store)
    assert predict(api, {"instances": IRIS_ROWS * 20}).status == 200
    refused = predict(api, {"instances": IRIS_ROWS * 20, "explain": "path"})
    assert refused.status == 413 and refused.body["error"]["code"] == "response_too_large"
    assert refused.body["error"]["message"].endswith(' or "probabilities": false, without "explain".')


def test_a_bad_explain_value_is_a_clear_400(iris_api_explain: Any) -> None:
    refused = predict(iris_api_explain, {"instances": IRIS_ROWS, "explain": "lime"})
    assert refused.status == 400 and refused.body["error"]["code"] == "invalid_request"
    assert "'explain' is 'lime'" in refused.body["error"]["message"]


def test_tree_shap_in_small_chunks_gives_the_same_values(fitted: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import lambda_forest.explain

    estimator, X = fitted["breast_cancer+missing"]
    explainer, _ = explainer_and_forest(estimator, native=False)  # the numpy engine's chunks
    rows = X[:30].astype(np.float32)
    whole = explainer.shap_values(rows, None).contributions
    monkeypatch.setattr(lambda_forest.explain, "SHAP_CHUNK_FLOATS", 50)  # a few leaves, one row at a time
    assert np.abs(explainer.shap_values(rows, None).contributions - whole).max() < 1e-15


@pytest.fixture(scope="module")
def trained_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The loans table of tests.conftest (categories, blanks) as a classifier and as a regressor."""
    from tests.conftest import mixed_frame
    from training.forest import ForestParams, train
    from training.tables import TableOptions, load_table

    path = tmp_path_factory.mktemp("explain-tables") / "loans.csv"
    mixed_frame().to_csv(path, index=False)
    models = {}
    for target, other in (("outcome", "amount"), ("amount", "outcome")):
        options = TableOptions(categorical=("cylinders",), drop=(other,))
        data = load_table(str(path), target, options=options)
        models[target] = train(data, ForestParams(n_estimators=10, n_jobs=1), progress=lambda _: None)
    return models


@pytest.mark.parametrize("target", ["outcome", "amount"])
def test_categorical_features_and_missing_values_are_explained_per_feature(
    handler: Any, local_store: Any, trained_tables: dict[str, Any], target: str
) -> None:
    from tests.conftest import publish_model, request_rows

    trained = trained_tables[target]
    rows = request_rows(trained)  # hold-out rows, unknown categories, a row of nulls
    answers = {}
    for compile in (True, False):
        name = f"loans-{target}-{'compiled' if compile else 'joblib'}"
        manifest = publish_model(local_store, trained, name=name, compile=compile)
        api = handler(local_store, name=name, allow_pickle=not compile)
        for method in ("path", "shap"):
            body = predict(api, {"instances": rows, "explain": method}).body
            answers[compile, method] = body["explanations"]
            for row, explanation in enumerate(body["explanations"]):
                # One contribution per original column: a categorical column is one feature.
                assert list(explanation["contributions"]) == manifest.feature_names
                total = explanation["bias"] + sum(explanation["contributions"].values())
                if target == "outcome":
                    expected = body["probabilities"][row][body["classes"].index(explanation["class"])]
                else:
                    expected = body["predictions"][row]
                assert abs(total - expected) < 1e-9
    for method in ("path", "shap"):
        assert answers[True, method] == answers[False, method]


@pytest.mark.parametrize("model", ["iris+missing", "diabetes+missing", "breast_cancer"])
def test_the_native_path_walk_sums_like_the_numpy_walk(fitted: Any, model: str) -> None:
    estimator, X = fitted[model]
    explainer, forest = explainer_and_forest(estimator)
    walk = explainer.native
    assert walk is not None, "make setup builds the native walker"
    numpy_walk = ForestExplainer(published_arrays(estimator), native=False)
    assert numpy_walk.native is None
    _, reference = saabas_reference(estimator, X[:40])
    # Batch sizes around the walker's chunks and thread split, on one thread and on two: the same sums.
    rows = np.ascontiguousarray(np.resize(X, (1500, X.shape[1])), dtype=np.float32)
    for size in (1, 17, 1500):
        batch = rows[:size]
        one = walk.path_contributions(batch, explainer.gain, threads=1)
        assert one.mean is None and one.outputs is None
        two = walk.path_contributions(batch, explainer.gain, threads=2)
        assert np.array_equal(two.contributions, one.contributions)
        expected = numpy_walk.path_contributions(forest.leaves(batch), None).contributions
        assert np.abs(one.contributions - expected).max() < 1e-12
    _, native_rows = explainer.native_path_contributions(np.ascontiguousarray(X[:40], dtype=np.float32), None)
    assert np.abs(native_rows.contributions - reference).max() < 1e-12


@pytest.mark.parametrize("model", ["iris+missing", "diabetes+missing", "breast_cancer"])
@pytest.mark.parametrize("threads", [1, 2])
def test_one_native_walk_predicts_and_explains_one_output_as_the_walk_of_every_output(
    fitted: Any, model: str, threads: int
) -> None:
    """The predicted class alone (or a given one) costs one add per level, with the same sums, bit for bit; the
    same walk's prediction is the plain prediction's, bit for bit."""
    estimator, X = fitted[model]
    explainer, forest = explainer_and_forest(estimator)
    walk = explainer.native
    assert walk is not None and forest.native is not None
    rows = np.ascontiguousarray(np.resize(X, (1500, X.shape[1])), dtype=np.float32)
    for size in (1, 17, 1500):
        batch = rows[:size]
        every = walk.path_contributions(batch, explainer.gain, predict=True, threads=threads)
        prediction = forest.native.mean_output(batch, 1)
        assert every.mean is not None and np.array_equal(every.mean, prediction)
        predicted = walk.path_contributions(batch, explainer.gain, predicted=True, threads=threads)
        assert predicted.outputs is not None and predicted.mean is not None
        assert np.array_equal(predicted.mean, prediction)
        best = np.argmax(prediction.reshape(size, -1), axis=1)
        assert np.array_equal(predicted.outputs, best)
        chosen = every.contributions[np.arange(size), :, best]
        assert np.array_equal(predicted.contributions[:, :, 0], chosen)
        if walk.n_outputs > 1:  # a class other than the predicted one
            other = (best + 1) % walk.n_outputs
            given = walk.path_contributions(batch, explainer.gain, other, threads=threads)
            assert given.mean is None and np.array_equal(given.outputs, other)
            assert np.array_equal(given.contributions[:, :, 0], every.contributions[np.arange(size), :, other])


@pytest.mark.parametrize("model", ["iris+missing", "diabetes+missing", "breast_cancer"])
def test_the_native_tree_shap_equals_the_numpy_one_on_any_thread_count(fitted: Any, model: str) -> None:
    estimator, X = fitted[model]
    explainer, _ = explainer_and_forest(estimator)
    numpy_engine, _ = explainer_and_forest(estimator, native=False)
    assert explainer.native is not None and numpy_engine.native is None
    rows = np.ascontiguousarray(X[:50], dtype=np.float32)
    for outputs in (None, np.arange(len(rows)) % explainer.value.shape[1]):
        expected = numpy_engine.shap_values(rows, outputs).contributions
        explained = explainer.shap_values(rows, outputs).contributions
        assert np.abs(explained - expected).max() <= 1e-12 * max(1.0, np.abs(expected).max())
        paths = explainer.native_shap_paths
        one, two = (explainer.native.shap_values(rows, paths, outputs, threads=threads) for threads in (1, 2))
        assert np.array_equal(one, two) and np.array_equal(one / explainer.n_trees, explained)
