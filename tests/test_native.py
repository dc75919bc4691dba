"""The native walker answers bit for bit what scikit-learn answers, at every batch size and thread count,
and when it cannot be loaded the numpy walk serves and the function says so."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from lambda_forest import native
from lambda_forest.compiled import NATIVE, NUMPY, CompiledForest
from lambda_forest.config import vcpu_share
from lambda_forest.errors import ConfigError, TrainingError
from tests.conftest import load_event, publish_model, with_missing_values
from tests.test_compiled import compiled
from training.forest import verify_compiled

LOCKSTEP = 16  # forest_walk.c: rows walked together through a tree
CHUNK_BYTES = 1 << 20  # forest_walk.c: rows walked through every tree before the next


def expected(estimator: Any, rows: np.ndarray) -> np.ndarray:
    return estimator.predict_proba(rows) if hasattr(estimator, "classes_") else estimator.predict(rows)


def assert_native_exact(estimator: Any, forest: CompiledForest, rows: np.ndarray, threads: int) -> None:
    X = np.ascontiguousarray(rows, dtype=np.float32)
    assert forest.native is not None
    actual = forest.native.mean_output(X, threads)
    assert np.array_equal(actual, expected(estimator, rows)), f"{len(rows)} rows, {threads} threads"
    assert not np.signbit(actual).any()  # sums start from zero, as scikit-learn's do: no -0.0


@pytest.fixture(scope="module")
def iris_forest() -> tuple[Any, CompiledForest, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    estimator = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    rng = np.random.default_rng(0)
    rows = np.repeat(X, 3, axis=0) + rng.normal(scale=0.3, size=(3 * len(X), X.shape[1]))
    return estimator, compiled(estimator), rows


def test_the_native_walker_is_built_for_this_machine() -> None:
    library = native.load_library()
    assert library.cdll is not None, f"{library.reason}: `make setup` (or `make native`) builds it"


def test_the_native_walk_serves_when_it_loads(iris_forest: Any) -> None:
    _, forest, _ = iris_forest
    assert forest.walk == NATIVE and forest.walks == [NATIVE, NUMPY] and forest.native_unavailable is None


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
@pytest.mark.parametrize(
    "size",
    [1, 2, LOCKSTEP - 1, LOCKSTEP, LOCKSTEP + 1, 2 * LOCKSTEP - 1, 2 * LOCKSTEP + 1, 3 * LOCKSTEP * 7 + 5, 450],
)
def test_every_batch_size_and_thread_split_is_exact(iris_forest: Any, size: int, threads: int) -> None:
    estimator, forest, rows = iris_forest
    assert_native_exact(estimator, forest, rows[:size], threads)


def test_chunk_boundaries_are_exact() -> None:
    # 2048 features: a chunk is 128 rows, so batches cross several chunk boundaries.
    X, y = make_classification(400, 2048, n_informative=10, random_state=0)
    estimator = RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y)
    forest = compiled(estimator)
    chunk = CHUNK_BYTES // (4 * X.shape[1])
    for size in (chunk - 1, chunk, chunk + 1, 2 * chunk + 1, len(X)):
        for threads in (1, 2):
            assert_native_exact(estimator, forest, X[:size], threads)


@pytest.mark.parametrize("max_depth", [None, 2])
def test_regressors_are_exact(max_depth: int | None) -> None:
    X, y = load_diabetes(return_X_y=True)
    estimator = RandomForestRegressor(n_estimators=15, max_depth=max_depth, random_state=0).fit(X, y)
    forest = compiled(estimator)
    for threads in (1, 2):
        assert_native_exact(estimator, forest, X, threads)
    assert forest.predict(X, with_probabilities=False).predictions == estimator.predict(X).tolist()


def test_missing_values_follow_scikit_learns_routes() -> None:
    estimator, X = with_missing_values(rows=600, features=6, trees=12)
    forest = compiled(estimator)
    rows = X.copy()
    rows[: len(rows) // 2] = np.nan_to_num(rows[: len(rows) // 2])  # one thread's rows without NaN, one with
    for batch in (X, rows, rows[:1], rows[-1:], np.full((3, 6), np.nan)):
        for threads in (1, 2):
            assert_native_exact(estimator, forest, batch, threads)


def test_trees_that_are_a_single_leaf() -> None:
    X = np.arange(6, dtype=float).reshape(-1, 1)
    y = np.array([0, 0, 0, 1, 1, 1])
    estimator = RandomForestClassifier(n_estimators=40, random_state=0).fit(X, y)
    forest = compiled(estimator)
    assert (forest.depths == 0).any() and (forest.depths > 0).any()  # some bootstraps saw one class only
    assert_native_exact(estimator, forest, np.linspace(-1, 7, 50).reshape(-1, 1), threads=1)
    constant = RandomForestRegressor(n_estimators=3).fit(X, np.full(6, 2.5))  # every tree a leaf
    assert_native_exact(constant, compiled(constant), X, threads=2)


def test_the_native_walk_keeps_no_state_between_calls(iris_forest: Any) -> None:
    _, forest, rows = iris_forest
    first = forest.native.mean_output(np.ascontiguousarray(rows, dtype=np.float32), 2)
    forest.native.mean_output(np.ascontiguousarray(rows[::-1], dtype=np.float32), 1)
    assert np.array_equal(forest.native.mean_output(np.ascontiguousarray(rows, dtype=np.float32), 2), first)


def test_threads_split_only_batches_worth_it(iris_forest: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, forest, _ = iris_forest
    monkeypatch.setattr(native, "usable_cpus", lambda: 2)
    walk = forest.native
    assert walk.threads_for(1) == 1
    assert walk.threads_for(native.PAIRS_PER_THREAD // walk.n_trees) == 1
    assert walk.threads_for(10 * native.PAIRS_PER_THREAD // walk.n_trees) == 2
    monkeypatch.setattr(native, "usable_cpus", lambda: 1)
    assert walk.threads_for(10_000) == 1


def test_lambdas_memory_setting_caps_the_threads() -> None:
    assert vcpu_share({}) is None
    assert vcpu_share({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"}) == 1.0
    assert vcpu_share({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3538"}) == 2.0
    assert vcpu_share({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "junk"}) is None


@pytest.fixture(params=["missing", "broken"])
def without_native(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """The library cannot be loaded: it is nowhere it is looked for, or what is there is no library."""
    path = tmp_path / native.LIBRARY_FILE
    if request.param == "broken":
        path.write_bytes(b"not a shared library")
    monkeypatch.setattr(native, "candidates", lambda: [str(path)])
    native.load_library.cache_clear()
    yield
    native.load_library.cache_clear()


def test_without_the_library_the_numpy_walk_serves_the_same_answers(without_native: Any, iris_forest: Any) -> None:
    estimator, _, rows = iris_forest
    forest = compiled(estimator)
    assert forest.walk == NUMPY and forest.walks == [NUMPY] and forest.native is None
    assert native.LIBRARY_FILE in forest.native_unavailable  # "... was not found", or the loader's complaint
    assert np.array_equal(forest.mean_output(rows), estimator.predict_proba(rows))
    with pytest.raises(ValueError, match="native walk cannot serve"):
        forest.mean_output(rows, NATIVE)


def test_native_walker_false_turns_it_off(monkeypatch: pytest.MonkeyPatch, iris_forest: Any) -> None:
    estimator, _, rows = iris_forest
    monkeypatch.setenv("NATIVE_WALKER", "false")
    native.load_library.cache_clear()
    try:
        forest = compiled(estimator)
        assert forest.walk == NUMPY and "NATIVE_WALKER=false" in forest.native_unavailable
        assert np.array_equal(forest.mean_output(rows), estimator.predict_proba(rows))
        monkeypatch.setenv("NATIVE_WALKER", "maybe")
        native.load_library.cache_clear()
        with pytest.raises(ConfigError, match="NATIVE_WALKER"):
            compiled(estimator)
    finally:
        native.load_library.cache_clear()


def test_a_library_of_another_abi_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "ABI_VERSION", native.ABI_VERSION + 1)
    native.load_library.cache_clear()
    try:
        library = native.load_library()
        assert library.cdll is None and "ABI version" in library.reason
    finally:
        native.load_library.cache_clear()


def test_the_function_logs_and_counts_a_missing_native_walker(
    without_native: Any,
    handler: Any,
    local_store: Any,
    trained_iris: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    publish_model(local_store, trained_iris)
    reply = handler(local_store)(load_event("predict.json"))
    assert reply.status == 200 and reply.body["predictions"] == ["setosa", "virginica"]
    assert '"NativeWalkUnavailable":[1.0]' in capsys.readouterr().out
    assert "the native walker could not be loaded; the numpy walk serves" in caplog.text


def test_the_function_serves_with_the_native_walk(handler: Any, local_store: Any, trained_iris: Any) -> None:
    publish_model(local_store, trained_iris)
    invoke = handler(local_store)
    assert invoke(load_event("predict.json")).status == 200
    import app

    assert app.models.current.predictor.walk == NATIVE


def test_publishing_checks_the_native_walk_too(iris_forest: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    estimator, forest, rows = iris_forest
    checked = verify_compiled(estimator, forest, rows)
    assert checked == [NATIVE, NUMPY]
    honest = forest.native.mean_output
    monkeypatch.setattr(forest.native, "mean_output", lambda X, threads=None: honest(X, threads) + 1e-9)
    with pytest.raises(TrainingError, match="native walk disagrees"):
        verify_compiled(estimator, forest, rows)
