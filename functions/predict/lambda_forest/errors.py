"""The one error hierarchy of lambda-forest.

Every error raised on purpose carries the HTTP status and the error code of shared/DESIGN.md section 3,
so the API maps the whole family to a response in one place and the CLI prints it in one place.

`message` is safe to show to any caller: it says what was wrong and what was expected, and never holds
a path, a bucket name or an exception's repr. `detail` is for operators (logs, the training CLI) and
may name the store, the bucket or the underlying AWS error.
"""

from __future__ import annotations


class LambdaForestError(Exception):
    """Base of every error lambda-forest raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} ({self.detail})" if self.detail else self.message


# Request errors: the caller can fix these.


class RequestError(LambdaForestError):
    status = 400
    code = "invalid_request"


class InvalidJson(RequestError):
    code = "invalid_json"


class InvalidRequest(RequestError):
    code = "invalid_request"


class InvalidInstances(RequestError):
    code = "invalid_instances"


class InvalidCsv(RequestError):
    code = "invalid_csv"


class ModelNotFound(RequestError):
    """A path names a model (or a version) that this function does not serve."""

    status = 404
    code = "model_not_found"


class ExplainUnsupported(RequestError):
    """An explanation method the model version has no data for."""

    code = "explain_unsupported"


class ExplainOverBudget(RequestError):
    """Tree SHAP that would outrun the function's time."""

    code = "explain_over_budget"


class InvalidInput(RequestError):
    """A batch input that cannot be scored at all: its format, its header, its quoting."""

    code = "invalid_input"


class TooManyInstances(RequestError):
    status = 413
    code = "too_many_instances"


class ResponseTooLarge(RequestError):
    """The answer would exceed Lambda's response payload limit; the caller can ask for less."""

    status = 413
    code = "response_too_large"


class InvalidLabels(RequestError):
    code = "invalid_labels"


class TooManyLabels(RequestError):
    status = 413
    code = "too_many_labels"


class RouteNotFound(RequestError):
    status = 404
    code = "not_found"


class MethodNotAllowed(RequestError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: list[str]) -> None:
        super().__init__(message)
        self.allowed = allowed


# Model errors: the service cannot answer now; the caller should retry later.


class ModelUnavailable(LambdaForestError):
    status = 503
    code = "model_unavailable"
    retry_after_seconds = 30


class StoreError(ModelUnavailable):
    """The model store could not do what was asked."""


class StoreUnreachable(StoreError):
    """The store did not answer (network, endpoint, timeout)."""

    retry_after_seconds = 10


class StoreAccessDenied(StoreError):
    """The store answered but refused: missing bucket, no credentials, forbidden."""


class NotInStore(StoreError):
    """A model, version or alias that the store does not hold."""


class VersionExists(StoreError):
    """Publishing would overwrite an existing, immutable version."""

    status = 409
    code = "version_exists"


class AliasMoved(StoreError):
    """An alias changed between reading and writing it; the write was refused."""

    status = 409
    code = "alias_moved"


class IntegrityError(ModelUnavailable):
    """A stored file does not match the sha256 its manifest records."""


class IncompatibleModel(ModelUnavailable):
    """The artifact was made by library versions this runtime cannot load safely."""


class InvalidArtifact(ModelUnavailable):
    """A manifest or artifact that does not follow the artifact format."""


class SignatureInvalid(ModelUnavailable):
    """A version or alias that is unsigned, or whose signature does not verify with the signing key."""


class SigningKeyUnavailable(ModelUnavailable):
    """The signing key could not be used (KMS unreachable, access refused, key disabled or unsuitable)."""

    retry_after_seconds = 10


class PickleNotAllowed(ModelUnavailable):
    """A version without a compiled forest, where unpickling model.joblib is not allowed (ALLOW_PICKLE)."""


# Operator errors: configuration and training input.


class ConfigError(LambdaForestError):
    """A required setting is missing or malformed."""


class TrainingError(LambdaForestError):
    """Training input that cannot produce a model (bad data, unknown dataset, failed quality gate)."""

    status = 400
    code = "training_failed"
