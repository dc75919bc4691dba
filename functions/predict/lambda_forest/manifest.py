"""The manifest: what a published model is (shared/DESIGN.md section 2)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from lambda_forest.errors import InvalidArtifact

MANIFEST_FORMAT = 1
CLASSIFICATION = "classification"
REGRESSION = "regression"

# The fields GET /model shows; the rest (data fingerprint, feature statistics, file hashes) stay private.
PUBLIC_FIELDS = (
    "name",
    "version",
    "task",
    "estimator",
    "feature_names",
    "classes",
    "metrics",
    "created_at",
    "runtime",
)


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
    format: int = MANIFEST_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_classifier(self) -> bool:
        return self.task == CLASSIFICATION

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        extra = body.pop("extra")
        if body["classes"] is None:
            del body["classes"]
        if body["compiled"] is None:
            del body["compiled"]
        return {"format": body.pop("format"), **body, **extra}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False).encode()

    def public(self) -> dict[str, Any]:
        body = self.to_dict()
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
            if fields.get("compiled"):
                fields["compiled"] = FileEntry(**fields["compiled"])
            manifest = cls(**fields, extra={k: v for k, v in body.items() if k not in known})
        except (KeyError, TypeError) as exc:
            raise InvalidArtifact("The model's manifest is incomplete.", detail=repr(exc)) from None
        if manifest.task not in (CLASSIFICATION, REGRESSION):
            raise InvalidArtifact(f"The model's manifest has an unknown task {manifest.task!r}.")
        if manifest.is_classifier and not manifest.classes:
            raise InvalidArtifact("The classifier's manifest lists no classes.")
        return manifest
