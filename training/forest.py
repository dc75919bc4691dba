"""Fit a random forest, evaluate it on a hold-out set, and publish it as a versioned artifact."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from lambda_forest.artifact import runtime_versions, serialize_estimator, sha256, verify
from lambda_forest.compiled import COMPILED_FILE, CompiledForest, compile_forest, read_npz, to_npz
from lambda_forest.errors import TrainingError
from lambda_forest.manifest import CLASSIFICATION, FileEntry, Manifest
from lambda_forest.signing import KmsSigner, KmsVerifier, Signer, manifest_message, verify_manifest
from lambda_forest.store import MODEL_FILE, ModelStore, check_name, make_version
from training.data import Dataset, check_trainable, describe_features

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ForestParams:
    n_estimators: int = 100
    max_depth: int | None = None
    min_samples_leaf: int = 1
    max_features: str | float | int | None = "sqrt"
    class_weight: str | None = None
    random_state: int = 42
    n_jobs: int | None = -1

    def for_estimator(self, task: str) -> dict[str, Any]:
        params = {
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "min_samples_leaf": self.min_samples_leaf,
            "max_features": self.max_features,
            "random_state": self.random_state,
            "n_jobs": self.n_jobs,
        }
        if task == CLASSIFICATION:
            params["class_weight"] = self.class_weight
        elif self.class_weight:
            raise TrainingError("--class-weight applies to classifiers only; this target is a regression.")
        if task != CLASSIFICATION and self.max_features == "sqrt":
            params["max_features"] = 1.0  # scikit-learn's default for regressors: every feature
        return params


@dataclass
class TrainedModel:
    estimator: Any
    data: Dataset
    params: dict[str, Any]
    metrics: dict[str, float]
    holdout_X: np.ndarray
    holdout_y: np.ndarray
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    @property
    def primary_metric(self) -> tuple[str, float]:
        key = "accuracy" if self.data.task == CLASSIFICATION else "r2"
        return key, self.metrics[key]


def train(data: Dataset, params: ForestParams, test_size: float = 0.2, progress: Progress = print) -> TrainedModel:
    """Fit on a (stratified, for classifiers) training split and score on the hold-out rows."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.model_selection import train_test_split

    check_trainable(data)
    if not 0 < test_size < 1:
        raise TrainingError(f"--test-size {test_size} must be between 0 and 1 (a fraction of the rows).")
    classify = data.task == CLASSIFICATION
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            data.X,
            data.y,
            test_size=test_size,
            random_state=params.random_state,
            stratify=data.y if classify else None,
        )
    except ValueError as exc:
        raise TrainingError(f"Cannot split {data.rows} rows into training and hold-out sets: {exc}") from None
    estimator_params = params.for_estimator(data.task)
    estimator = (RandomForestClassifier if classify else RandomForestRegressor)(**estimator_params)
    progress(
        f"training {params.n_estimators} trees on {len(y_train)} rows x {data.X.shape[1]} features "
        f"({data.task}), holding out {len(y_test)} rows"
    )
    try:
        fit_with_progress(estimator, X_train, y_train, progress)
    except ValueError as exc:
        raise TrainingError(f"Training failed: {exc}") from None
    metrics = evaluate(estimator, X_test, y_test, classify)
    return TrainedModel(estimator, data, estimator_params, metrics, X_test, y_test)


# Progress lines only for fits slow enough to need them.
PROGRESS_AFTER_SECONDS = 1.0
PROGRESS_STEPS = 10


def fit_with_progress(estimator: Any, X: np.ndarray, y: np.ndarray, progress: Progress) -> None:
    """Grow the forest a tenth at a time (warm_start), reporting when it takes a while.

    scikit-learn advances its random state past the trees already grown, so the forest is the one a
    single `fit` call would grow.
    """
    total = estimator.n_estimators
    step = max(1, total // PROGRESS_STEPS)
    started = time.perf_counter()
    estimator.set_params(warm_start=True)
    for grown in range(step, total + step, step):
        estimator.set_params(n_estimators=min(grown, total))
        with warnings.catch_warnings():
            # Its advice is for warm starts on other data; every step here sees the same rows.
            warnings.filterwarnings("ignore", message="class_weight presets", category=UserWarning)
            estimator.fit(X, y)
        elapsed = time.perf_counter() - started
        if elapsed > PROGRESS_AFTER_SECONDS and grown < total:
            progress(f"  {min(grown, total)}/{total} trees, {elapsed:.0f} s")
    estimator.set_params(warm_start=False)


def evaluate(estimator: Any, X: np.ndarray, y: np.ndarray, classify: bool) -> dict[str, float]:
    from sklearn import metrics

    if not classify:
        predicted = estimator.predict(X)
        return {
            "rmse": round(float(np.sqrt(metrics.mean_squared_error(y, predicted))), 6),
            "mae": round(float(metrics.mean_absolute_error(y, predicted)), 6),
            "r2": round(float(metrics.r2_score(y, predicted)), 6),
        }
    proba = estimator.predict_proba(X)
    predicted = estimator.classes_.take(np.argmax(proba, axis=1))
    scores = {
        "accuracy": round(float(metrics.accuracy_score(y, predicted)), 6),
        "f1_macro": round(float(metrics.f1_score(y, predicted, average="macro")), 6),
    }
    if len(np.unique(y)) == len(estimator.classes_):  # AUC needs every class in the hold-out set
        if len(estimator.classes_) == 2:
            auc = metrics.roc_auc_score(y == estimator.classes_[1], proba[:, 1])
        else:
            auc = metrics.roc_auc_score(y, proba, multi_class="ovr", labels=estimator.classes_)
        scores["roc_auc_ovr"] = round(float(auc), 6)
    return scores


def build_artifact(name: str, model: TrainedModel, compile: bool = True) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest and the files of a new version, ready to publish.

    With `compile`, the version also carries `forest.npz`, served without scikit-learn; it is checked
    against the estimator first and refused if any answer differs.
    """
    check_name("model name", name)
    model_bytes = serialize_estimator(model.estimator)
    model_sha = sha256(model_bytes)
    data = model.data
    classes = model.estimator.classes_.tolist() if data.task == CLASSIFICATION else None
    files = {MODEL_FILE: model_bytes}
    compiled = None
    if compile:
        npz = to_npz(compile_forest(model.estimator))
        verify_compiled(model.estimator, CompiledForest(read_npz(npz), classes), model.holdout_X)
        files[COMPILED_FILE] = npz
        compiled = FileEntry(file=COMPILED_FILE, sha256=sha256(npz), bytes=len(npz))
    manifest = Manifest(
        name=name,
        version=make_version(model.created_at, model_sha),
        created_at=model.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        task=data.task,
        estimator=type(model.estimator).__name__,
        params={key: value for key, value in model.params.items() if key != "n_jobs"},
        target=data.target,
        feature_names=data.feature_names,
        classes=classes,
        metrics=model.metrics,
        training_data={"source": data.source, "rows": data.rows, "sha256": data.sha256},
        feature_stats=describe_features(data),
        artifact=FileEntry(file=MODEL_FILE, sha256=model_sha, bytes=len(model_bytes)),
        runtime=runtime_versions(),
        compiled=compiled,
    )
    return manifest, files


# Probabilities and regression values may differ by at most this much; predictions not at all.
COMPILED_TOLERANCE = 1e-12


def threshold_rows(estimator: Any, base_rows: np.ndarray, limit: int = 600, seed: int = 0) -> np.ndarray:
    """Rows that sit exactly on split thresholds, and one float32 step either side of them."""
    rng = np.random.default_rng(seed)
    splits = [
        (feature, threshold)
        for tree in estimator.estimators_
        for feature, threshold in zip(tree.tree_.feature, tree.tree_.threshold, strict=True)
        if feature >= 0
    ]
    chosen = rng.choice(len(splits), size=min(limit, len(splits)), replace=False)
    rows = []
    for count, index in enumerate(chosen):
        feature, threshold = splits[index]
        below = np.float32(threshold)
        below = below if below <= threshold else np.nextafter(below, np.float32(-np.inf))
        for value in (threshold, below, np.nextafter(below, np.float32(np.inf))):
            row = base_rows[count % len(base_rows)].copy()
            row[feature] = value
            rows.append(row)
    return np.asarray(rows, dtype=np.float64)


def verify_compiled(estimator: Any, forest: CompiledForest, holdout_X: np.ndarray) -> None:
    """Refuse a compiled forest whose answers differ from the estimator's on hold-out and threshold rows."""
    rows = np.vstack([holdout_X, threshold_rows(estimator, holdout_X)])
    n_jobs, estimator.n_jobs = estimator.n_jobs, None  # one thread: scikit-learn's summation order is fixed
    try:
        expected_predictions = estimator.predict(rows).tolist()
        expected = estimator.predict_proba(rows) if forest.classify else estimator.predict(rows)
    finally:
        estimator.n_jobs = n_jobs
    result = forest.predict(rows, with_probabilities=True)
    actual = np.asarray(result.probabilities if forest.classify else result.predictions)
    worst = float(np.max(np.abs(actual - expected)))
    if result.predictions != expected_predictions or worst > COMPILED_TOLERANCE:
        mismatched = sum(a != b for a, b in zip(result.predictions, expected_predictions, strict=True))
        raise TrainingError(
            f"The compiled forest disagrees with the estimator ({mismatched} of {len(rows)} predictions differ, "
            f"largest value difference {worst:.3g}); nothing was published. Publish without it: --no-compile."
        )


def publish(store: ModelStore, manifest: Manifest, files: dict[str, bytes], signer: Signer | None = None) -> None:
    """Publish a version; with `signer`, its manifest's signature goes beside it (lambda_forest.signing)."""
    manifest_bytes = manifest.to_json()
    signature = signer.sign(manifest_message(manifest_bytes)).to_json() if signer is not None else None
    store.publish(manifest.name, manifest.version, files, manifest_bytes, signature)


def sign_published(store: ModelStore, name: str, version: str, signer: KmsSigner) -> bool:
    """Sign a published version that has no signature yet; True if it was signed now.

    Every file is checked against the manifest first, so the signature never vouches for tampered bytes.
    A version already signed is verified with the same key instead, so a version signed by another key
    is reported rather than promoted to a function that would refuse it.
    """
    manifest_bytes = store.read_manifest(name, version)
    existing = store.read_signature(name, version)
    if existing is not None:
        verify_manifest(KmsVerifier(signer.key_id, signer.client), name, version, manifest_bytes, existing)
        return False
    manifest = Manifest.from_json(manifest_bytes)
    for entry in filter(None, (manifest.artifact, manifest.compiled)):
        verify(entry, store.read_file(name, version, entry.file))
    store.add_signature(name, version, signer.sign(manifest_message(manifest_bytes)).to_json())
    return True
