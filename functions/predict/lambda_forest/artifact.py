"""The model artifact: how a fitted forest becomes bytes, and how bytes safely become a predictor again.

Loading follows shared/DESIGN.md section 5: the file's sha256 is checked against the manifest before a
single byte is deserialised, and a model pickled under another scikit-learn version is refused.
scikit-learn and joblib are imported only here and only when a pickled model is actually loaded.
"""

from __future__ import annotations

import hashlib
import io
import platform
import warnings
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

import numpy as np

from lambda_forest.errors import IncompatibleModel, IntegrityError, InvalidArtifact
from lambda_forest.features import FeatureSchema
from lambda_forest.manifest import FileEntry, Manifest

# Libraries whose versions decide whether a pickled forest loads; recorded in every manifest.
RUNTIME_LIBRARIES = ("scikit-learn", "numpy", "joblib")


@dataclass(frozen=True)
class Prediction:
    predictions: list[Any]
    probabilities: list[list[float]] | None = None


class Predictor(Protocol):
    def predict(self, rows: np.ndarray, with_probabilities: bool) -> Prediction: ...

    def predict_with_leaves(self, rows: np.ndarray, with_probabilities: bool) -> tuple[Prediction, np.ndarray]:
        """The prediction and the leaf (global node id, as in the compiled forest) of each row in each tree."""
        ...


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def runtime_versions() -> dict[str, str]:
    """The Python and library versions of this process, as the manifest records them."""
    versions = {"python": platform.python_version()}
    versions.update({name: metadata.version(name) for name in RUNTIME_LIBRARIES})
    return versions


def serialize_estimator(estimator: Any) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


def verify(entry: FileEntry, data: bytes) -> bytes:
    """Return `data` if it is exactly the file the manifest describes; refuse it otherwise."""
    actual = sha256(data)
    if actual != entry.sha256 or len(data) != entry.bytes:
        raise IntegrityError(
            "The model artifact failed verification and was not loaded.",
            detail=f"{entry.file}: sha256 {actual} ({len(data)} bytes), manifest says "
            f"{entry.sha256} ({entry.bytes} bytes)",
        )
    return data


def read_arrays(data: bytes, what: str) -> dict[str, np.ndarray]:
    """The arrays of a numpy .npz file (never unpickling), or InvalidArtifact naming `what` could not be read."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, KeyError) as exc:
        raise InvalidArtifact(f"The {what} could not be read.", detail=repr(exc)) from None


def check_compatible(manifest: Manifest) -> None:
    """Refuse a pickled model made by another scikit-learn than the one installed here."""
    trained = manifest.runtime.get("scikit-learn")
    try:
        installed = metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        raise IncompatibleModel(
            "This model has no compiled forest and this function has no scikit-learn (the lean layer); "
            "republish the model with its compiled forest (the default) or deploy with LayerVariant=full.",
        ) from None
    if trained != installed:
        raise IncompatibleModel(
            f"The model was trained with scikit-learn {trained} but this function runs {installed}; "
            f"retrain it with {installed} or deploy a layer with {trained}.",
        )


def load_estimator(manifest: Manifest, data: bytes) -> Any:
    """Deserialise a verified `model.joblib`; scikit-learn version warnings are errors."""
    check_compatible(manifest)
    verify(manifest.artifact, data)
    import joblib
    from sklearn.exceptions import InconsistentVersionWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", InconsistentVersionWarning)
            estimator = joblib.load(io.BytesIO(data))
    except InconsistentVersionWarning as warning:
        raise IncompatibleModel(
            f"The model was pickled by scikit-learn {warning.original_sklearn_version} but this "
            f"function runs {warning.current_sklearn_version}; retrain it with the current version.",
        ) from None
    except Exception as exc:  # unpickling can fail in many ways; none of them is the caller's fault
        raise InvalidArtifact("The model artifact could not be loaded.", detail=repr(exc)) from None
    if hasattr(estimator, "steps") != manifest.is_pipeline:
        raise InvalidArtifact(
            "The model artifact does not match its manifest.",
            detail=f"model.joblib holds a {type(estimator).__name__}; the manifest says {manifest.model_object}",
        )
    if getattr(estimator, "n_features_in_", None) != len(manifest.feature_names):
        raise InvalidArtifact(
            "The model artifact does not match its manifest.",
            detail=f"estimator expects {getattr(estimator, 'n_features_in_', '?')} features, "
            f"manifest lists {len(manifest.feature_names)}",
        )
    return estimator


def final_estimator(model: Any) -> Any:
    """The forest itself: the last step of a Pipeline, or the model when it is a bare forest."""
    return model.steps[-1][1] if hasattr(model, "steps") else model


class EstimatorPredictor:
    """Predicts with a fitted scikit-learn forest, or a Pipeline that encodes the raw columns first.

    Rows arrive as the validated matrix (category codes); a Pipeline is given the raw values they stand
    for (`FeatureSchema.decode`), so its own encoder does the encoding, as it does for a data scientist.
    """

    def __init__(self, estimator: Any, is_classifier: bool, schema: FeatureSchema | None = None) -> None:
        self.estimator = estimator
        self.is_classifier = is_classifier
        self.schema = schema if hasattr(estimator, "steps") else None
        # Worker threads cost more than they save for the batch sizes a request carries.
        forest = final_estimator(estimator)
        if hasattr(forest, "n_jobs"):
            forest.n_jobs = None

    def predict(self, rows: np.ndarray, with_probabilities: bool) -> Prediction:
        if self.schema is not None:
            rows = self.schema.decode(rows)
        with warnings.catch_warnings():
            # A Pipeline fitted on a DataFrame notes that these rows have no column names; positions suffice.
            warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
            if not self.is_classifier:
                return Prediction(self.estimator.predict(rows).tolist())
            # RandomForestClassifier.predict is exactly classes_.take(argmax(predict_proba)); one pass serves both.
            proba = self.estimator.predict_proba(rows)
        labels = self.estimator.classes_.take(np.argmax(proba, axis=1), axis=0)
        return Prediction(labels.tolist(), proba.tolist() if with_probabilities else None)

    def predict_with_leaves(self, rows: np.ndarray, with_probabilities: bool) -> tuple[Prediction, np.ndarray]:
        # scikit-learn's own routes; its per-tree node ids offset as the compiled forest numbers nodes. The
        # forest reads the validated matrix as it is: categories arrive as the codes a Pipeline's encoder gives.
        forest = final_estimator(self.estimator)
        sizes = [tree.tree_.node_count for tree in forest.estimators_]
        roots = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return self.predict(rows, with_probabilities), forest.apply(rows) + roots
