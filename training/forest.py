"""Fit a random forest, evaluate it on a hold-out set, and publish it as a versioned artifact."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from lambda_forest.artifact import final_estimator, runtime_versions, serialize_estimator, sha256, verify
from lambda_forest.compiled import COMPILED_FILE, CompiledForest, compile_forest, read_npz, to_npz, with_categories
from lambda_forest.drift import summary_stats
from lambda_forest.errors import TrainingError
from lambda_forest.explain import EXPLAIN_FILE, explanation_arrays
from lambda_forest.features import FeatureSchema, category_texts
from lambda_forest.manifest import CLASSIFICATION, PIPELINE, FileEntry, Manifest
from lambda_forest.signing import KmsSigner, KmsVerifier, Signer, manifest_message, verify_manifest
from lambda_forest.store import MODEL_FILE, ModelStore, check_name, make_version
from training.data import Dataset, check_trainable, describe_features, feature_entries, frozen_histogram

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
    estimator: Any  # what model.joblib holds: the forest, or a Pipeline (encoding, then the forest)
    data: Dataset
    params: dict[str, Any]
    metrics: dict[str, float]
    holdout_X: Any
    holdout_y: np.ndarray
    importances: dict[str, float] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    @property
    def forest(self) -> Any:
        return final_estimator(self.estimator)

    @property
    def primary_metric(self) -> tuple[str, float]:
        key = "accuracy" if self.data.task == CLASSIFICATION else "r2"
        return key, self.metrics[key]


def encoding_pipeline(schema: FeatureSchema, forest: Any) -> Any:
    """The forest alone for numeric tables; else a Pipeline that encodes categorical columns in place, then the forest.

    Each categorical column becomes one model-input column at its own position (its category's code:
    `OrdinalEncoder`, unknown and missing values NaN, which the forest routes natively), so the Pipeline
    takes the raw columns, by position, from a pandas DataFrame or a numpy object array alike.
    """
    if schema.is_numeric_only:
        return forest
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    steps: list[tuple[str, Any, list[int]]] = []
    for index, feature in enumerate(schema.features):  # runs of neighbouring columns of one type share a step
        if steps and steps[-1][0].startswith(feature.type):
            steps[-1][2].append(index)
        else:
            steps.append((f"{feature.type}_{index}", None, [index]))
    transformers = []
    for step, _, columns in steps:
        if step.startswith("numeric"):
            transformers.append((step, "passthrough", columns))
            continue
        encoder = OrdinalEncoder(
            categories=[list(schema.features[column].categories) for column in columns],
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
            dtype=np.float64,
        )
        text = FunctionTransformer(category_texts, feature_names_out="one-to-one")
        transformers.append((step, make_pipeline(text, encoder), columns))
    encode = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0, verbose_feature_names_out=False)
    return Pipeline([("encode", encode), ("forest", forest)])


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
    forest = (RandomForestClassifier if classify else RandomForestRegressor)(**estimator_params)
    model = encoding_pipeline(data.features, forest)
    progress(
        f"training {params.n_estimators} trees on {len(y_train)} rows x {len(data.feature_names)} features "
        f"({data.task}), holding out {len(y_test)} rows"
    )
    try:
        # A Pipeline's encoder is fitted first, so the forest can grow in steps on the encoded rows.
        encoded = model[:-1].fit_transform(X_train) if model is not forest else X_train
        fit_with_progress(forest, encoded, y_train, progress)
    except ValueError as exc:
        raise TrainingError(f"Training failed: {exc}") from None
    metrics = evaluate(model, X_test, y_test, classify)
    progress(f"permutation importance of {len(data.feature_names)} columns on the hold-out rows")
    importances = permutation_importances(model, X_test, y_test, data.feature_names, params.random_state)
    return TrainedModel(model, data, estimator_params, metrics, X_test, y_test, importances)


# Permutation importance reshuffles each column this many times, on at most this many hold-out rows.
IMPORTANCE_REPEATS = 5
IMPORTANCE_ROWS = 2000


def permutation_importances(
    model: Any, X: Any, y: np.ndarray, feature_names: list[str], random_state: int
) -> dict[str, float]:
    """How much the hold-out score (accuracy, or R²) drops when each original column is shuffled."""
    from sklearn.inspection import permutation_importance

    if len(y) > IMPORTANCE_ROWS:
        chosen = np.sort(np.random.default_rng(random_state).choice(len(y), IMPORTANCE_ROWS, replace=False))
        X = X.iloc[chosen] if hasattr(X, "iloc") else X[chosen]
        y = y[chosen]
    result = permutation_importance(model, X, y, n_repeats=IMPORTANCE_REPEATS, random_state=random_state)
    ranked = sorted(zip(feature_names, result.importances_mean.tolist(), strict=True), key=lambda item: -item[1])
    return {name: round(value, 6) + 0.0 for name, value in ranked}


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


def build_artifact(
    name: str, model: TrainedModel, compile: bool = True, progress: Progress = lambda _: None
) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest and the files of a new version, ready to publish.

    With `compile`, the version also carries `forest.npz`, served without scikit-learn; every walk that
    can serve it here (native, numpy) is checked against `model.joblib` first (raw rows in, encoding
    included) and refused if any answer differs.
    """
    check_name("model name", name)
    model_bytes = serialize_estimator(model.estimator)
    model_sha = sha256(model_bytes)
    data = model.data
    classes = model.estimator.classes_.tolist() if data.task == CLASSIFICATION else None
    files = {MODEL_FILE: model_bytes}
    compiled = explain = None
    if compile:
        npz = to_npz(with_categories(compile_forest(model.forest), data.features))
        forest = CompiledForest(read_npz(npz), classes)
        walks = verify_compiled(model.estimator, forest, model.holdout_X, data.features)
        progress(f"verified the {' and '.join(walks)} walks")
        if forest.native is None:
            progress(f"warning: the native walk was not verified: {forest.native_unavailable} (`make setup` builds it)")
        files[COMPILED_FILE] = npz
        compiled = FileEntry(file=COMPILED_FILE, sha256=sha256(npz), bytes=len(npz))
        # Read only for Tree SHAP, so plain predictions never download it.
        files[EXPLAIN_FILE] = explain_npz = to_npz(explanation_arrays(model.forest))
        explain = FileEntry(file=EXPLAIN_FILE, sha256=sha256(explain_npz), bytes=len(explain_npz))
    assert data.report is not None
    manifest = Manifest(
        name=name,
        version=make_version(model.created_at, model_sha),
        created_at=model.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        task=data.task,
        estimator=type(model.forest).__name__,
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
        explain=explain,
        features=feature_entries(data),
        excluded_columns=data.excluded_columns,
        data_report=data.report.to_dict(),
        importances=model.importances,
        prediction_baseline=prediction_baseline(model),
        model_object=PIPELINE
        if model.estimator is not model.forest
        else f"sklearn.ensemble.{type(model.forest).__name__}",
    )
    return manifest, files


def prediction_baseline(model: TrainedModel) -> dict[str, Any]:
    """What the model predicts on its hold-out rows, which the monitor compares live predictions with."""
    predicted = np.asarray(model.estimator.predict(model.holdout_X))
    if model.data.task == CLASSIFICATION:
        labels, counts = np.unique(predicted.astype(str), return_counts=True)
        shares = dict(zip(labels.tolist(), (counts / len(predicted)).round(6).tolist(), strict=True))
        classes = [str(label) for label in model.estimator.classes_]
        return {"rows": len(predicted), "class_shares": {label: shares.get(label, 0.0) for label in classes}}
    values = predicted.astype(np.float64)
    return {"rows": len(values), "stats": summary_stats(values), "bins": frozen_histogram(values)}


# Probabilities and regression values may differ by at most this much; predictions not at all.
COMPILED_TOLERANCE = 1e-12
# A value no categorical feature was trained on (the verification's unknown category).
UNSEEN_CATEGORY = "(not seen in training)"
MISSING_ROWS_PER_FEATURE = 3


def threshold_values(
    estimator: Any, limit: int = 600, seed: int = 0, features: set[int] | None = None
) -> list[tuple[int, Any]]:
    """(feature, value) pairs that sit exactly on split thresholds, and one float32 step either side of them."""
    rng = np.random.default_rng(seed)
    splits = [
        (int(feature), threshold)
        for tree in estimator.estimators_
        for feature, threshold in zip(tree.tree_.feature, tree.tree_.threshold, strict=True)
        # A split of missing from present values has threshold +inf: nothing to sit on.
        if feature >= 0 and np.isfinite(threshold) and (features is None or feature in features)
    ]
    if not splits:
        return []
    chosen = rng.choice(len(splits), size=min(limit, len(splits)), replace=False)
    values = []
    for index in chosen:
        feature, threshold = splits[index]
        below = np.float32(threshold)
        below = below if below <= threshold else np.nextafter(below, np.float32(-np.inf))
        values.extend((feature, value) for value in (threshold, below, np.nextafter(below, np.float32(np.inf))))
    return values


def threshold_rows(estimator: Any, base_rows: np.ndarray, limit: int = 600, seed: int = 0) -> np.ndarray:
    """Rows that sit exactly on split thresholds, and one float32 step either side of them."""
    rows = []
    for count, (feature, value) in enumerate(threshold_values(estimator, limit, seed)):
        row = base_rows[(count // 3) % len(base_rows)].copy()
        row[feature] = value
        rows.append(row)
    return np.asarray(rows, dtype=np.float64)


def json_rows(X: Any, schema: FeatureSchema) -> list[list[Any]]:
    """Rows of a table as a client sends them in JSON: numbers, text, null for missing."""
    if not hasattr(X, "iloc"):
        return [[None if value != value else value for value in row] for row in np.asarray(X, np.float64).tolist()]
    columns = []
    for index in range(len(schema.features)):
        series = X.iloc[:, index]
        missing = series.isna().to_numpy()
        columns.append(
            [
                None if gap else _json_value(value)
                for value, gap in zip(series.to_numpy(dtype=object), missing, strict=True)
            ]
        )
    return [list(row) for row in zip(*columns, strict=True)]


def _json_value(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    return str(value)


def table_of(rows: list[list[Any]], schema: FeatureSchema, like: Any) -> Any:
    """JSON-style rows as the table a data scientist passes to `model.joblib`: a DataFrame when it was fitted on one."""
    if not hasattr(like, "iloc"):
        return np.array(rows, dtype=np.float64)
    import pandas as pd

    frame = pd.DataFrame(rows, columns=schema.names, dtype=object)
    for feature in schema.features:
        if not feature.is_categorical:
            frame[feature.name] = frame[feature.name].astype(np.float64)
    return frame


def verification_rows(estimator: Any, schema: FeatureSchema, base: list[list[Any]]) -> list[list[Any]]:
    """Hold-out rows, rows on numeric split thresholds, every category, an unknown one, and missing values."""
    rows = [list(row) for row in base]

    def varied(count: int, column: int, value: Any) -> list[Any]:
        row = list(base[count % len(base)])
        row[column] = value
        return row

    numeric = {index for index, feature in enumerate(schema.features) if not feature.is_categorical}
    thresholds = threshold_values(final_estimator(estimator), features=numeric)
    rows.extend(varied(count // 3, column, float(value)) for count, (column, value) in enumerate(thresholds))
    count = 0
    for column, feature in enumerate(schema.features):
        if feature.is_categorical:
            unseen = UNSEEN_CATEGORY + "*" * (UNSEEN_CATEGORY in feature.categories)
            for category in (*feature.categories, unseen):
                rows.append(varied(count, column, category))
                count += 1
        if feature.missing_allowed:
            for _ in range(MISSING_ROWS_PER_FEATURE):
                rows.append(varied(count, column, None))
                count += 1
    if all(feature.missing_allowed for feature in schema.features):
        rows.append([None] * schema.width)
    return rows


def verify_compiled(
    estimator: Any, forest: CompiledForest, holdout_X: Any, schema: FeatureSchema | None = None
) -> list[str]:
    """Refuse a compiled forest if any walk that can serve it (native, numpy) answers otherwise than
    model.joblib on raw rows; returns the walks checked.

    The rows are the hold-out set, rows on split thresholds, every category, an unknown category and
    missing values; the compiled side reads them as the function does (`FeatureSchema.validate`), the
    estimator as a data scientist does (the raw table).
    """
    schema = schema or FeatureSchema.numeric(range(forest.n_features))
    rows = verification_rows(estimator, schema, json_rows(holdout_X, schema))
    table = table_of(rows, schema, holdout_X)
    tree_forest = final_estimator(estimator)
    n_jobs, tree_forest.n_jobs = tree_forest.n_jobs, None  # one thread: scikit-learn's summation order is fixed
    try:
        expected_predictions = estimator.predict(table).tolist()
        expected = estimator.predict_proba(table) if forest.classify else estimator.predict(table)
    finally:
        tree_forest.n_jobs = n_jobs
    matrix = schema.validate(rows).matrix
    for walk in forest.walks:
        result = forest.predict(matrix, with_probabilities=True, walk=walk)
        actual = np.asarray(result.probabilities if forest.classify else result.predictions)
        worst = float(np.max(np.abs(actual - expected)))
        if result.predictions != expected_predictions or worst > COMPILED_TOLERANCE:
            mismatched = sum(a != b for a, b in zip(result.predictions, expected_predictions, strict=True))
            raise TrainingError(
                f"The compiled forest's {walk} walk disagrees with the estimator ({mismatched} of {len(rows)} "
                f"predictions differ, largest value difference {worst:.3g}); nothing was published. "
                "Publish without it: --no-compile."
            )
    return forest.walks


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
