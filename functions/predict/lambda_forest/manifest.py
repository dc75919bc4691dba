"""The manifest: what a published model is (shared/DESIGN.md section 2)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from lambda_forest.errors import InvalidArtifact
from lambda_forest.features import FeatureSchema

MANIFEST_FORMAT = 1
OPTIONAL_TABLE_FIELDS = ("features", "excluded_columns", "data_report", "importances", "model_object")
CLASSIFICATION = "classification"
REGRESSION = "regression"

# The fields GET /model shows; the rest (data fingerprint, feature statistics, file hashes) stay private.
PUBLIC_FIELDS = (
    "name",
    "version",
    "task",
    "estimator",
    "feature_names",
    "features",
    "classes",
    "metrics",
    "importances",
    "created_at",
    "runtime",
)
# Per-feature training statistics stay private too: GET /model shows what a request needs.
PRIVATE_FEATURE_FIELDS = ("stats", "bins", "frequencies")
# What `model.joblib` holds: a bare forest, or (for tables with categorical columns) a Pipeline.
PIPELINE = "sklearn.pipeline.Pipeline"


@dataclass(frozen=True)
class FileEntry:
    """A file of the version, with the sha256 it must match before it is used."""

    file: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    created_at: str
    task: str
    estimator: str
    params: dict[str, Any]
    target: str
    feature_names: list[str]
    metrics: dict[str, float]
    training_data: dict[str, Any]
    feature_stats: dict[str, dict[str, float]]
    artifact: FileEntry
    runtime: dict[str, str]
    classes: list[Any] | None = None
    compiled: FileEntry | None = None
    explain: FileEntry | None = None  # the covers Tree SHAP needs (explain.npz), beside the compiled forest
    # Tables (shared/DESIGN.md section 2); None in manifests published before they existed.
    features: list[dict[str, Any]] | None = None
    excluded_columns: list[dict[str, str]] | None = None
    data_report: dict[str, Any] | None = None
    importances: dict[str, float] | None = None
    model_object: str | None = None  # the class `joblib.load(model.joblib)` returns; None: the bare forest
    # The hold-out's predictions, for output drift: class shares, or a regressor's stats and frozen bins.
    prediction_baseline: dict[str, Any] | None = None
    format: int = MANIFEST_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_classifier(self) -> bool:
        return self.task == CLASSIFICATION

    @property
    def is_pipeline(self) -> bool:
        return self.model_object == PIPELINE

    @cached_property
    def schema(self) -> FeatureSchema:
        """The model's input columns and THE row validator (lambda_forest.features)."""
        return FeatureSchema.from_manifest(self.feature_names, self.features)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        extra = body.pop("extra")
        for optional in ("classes", "compiled", "explain", *OPTIONAL_TABLE_FIELDS):
            if body[optional] is None:
                del body[optional]
        return {"format": body.pop("format"), **body, **extra}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False).encode()

    def public(self) -> dict[str, Any]:
        body = self.to_dict()
        if self.features is None:
            body["features"] = self.schema.public()
        else:
            body["features"] = [
                {key: value for key, value in entry.items() if key not in PRIVATE_FEATURE_FIELDS}
                for entry in self.features
            ]
        return {key: body[key] for key in PUBLIC_FIELDS if key in body}

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            body = json.loads(data)
        except ValueError:
            raise InvalidArtifact("The model's manifest is not valid JSON.") from None
        if not isinstance(body, dict):
            raise InvalidArtifact("The model's manifest is not a JSON object.")
        if body.get("format") != MANIFEST_FORMAT:
            raise InvalidArtifact(
                f"The model's manifest has format {body.get('format')!r}; this runtime reads format {MANIFEST_FORMAT}.",
            )
        known = {name for name in cls.__dataclass_fields__ if name != "extra"}
        try:
            fields = {key: value for key, value in body.items() if key in known}
            fields["artifact"] = FileEntry(**fields["artifact"])
            for optional in ("compiled", "explain"):
                if fields.get(optional):
                    fields[optional] = FileEntry(**fields[optional])
            manifest = cls(**fields, extra={k: v for k, v in body.items() if k not in known})
        except (KeyError, TypeError) as exc:
            raise InvalidArtifact("The model's manifest is incomplete.", detail=repr(exc)) from None
        if manifest.task not in (CLASSIFICATION, REGRESSION):
            raise InvalidArtifact(f"The model's manifest has an unknown task {manifest.task!r}.")
        if manifest.is_classifier and not manifest.classes:
            raise InvalidArtifact("The classifier's manifest lists no classes.")
        try:
            manifest.schema  # noqa: B018 - built now, so a manifest with inconsistent features never loads
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidArtifact(
                "The model's manifest describes its features inconsistently.", detail=str(exc)
            ) from None
        return manifest
