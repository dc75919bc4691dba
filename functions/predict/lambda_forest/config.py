"""The functions' configuration (shared/DESIGN.md section 4), read in this one place."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from lambda_forest.errors import ConfigError
from lambda_forest.store import DEFAULT_ALIAS, check_name

# Lambda gives a function CPU time in proportion to its memory: one vCPU's worth at 1,769 MB.
LAMBDA_MB_PER_VCPU = 1769


def vcpu_share(environ: Mapping[str, str] = os.environ) -> float | None:
    """The vCPUs' worth of CPU time Lambda's memory setting buys (AWS_LAMBDA_FUNCTION_MEMORY_SIZE), or
    None outside Lambda. Lambda shows two vCPUs or more at any size; below 1,769 MB they share one's time."""
    raw = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "").strip()
    return int(raw) / LAMBDA_MB_PER_VCPU if raw.isdigit() and int(raw) > 0 else None


def native_walker_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """NATIVE_WALKER=false turns the native walker off (the numpy walk then serves the same answers): a
    switch for operators and for benchmarks that compare the walks. Default true."""
    return _flag(environ, "NATIVE_WALKER", True)


def default_store(environ: Mapping[str, str] = os.environ) -> str:
    """The store the command-line tools use without --store: $LAMBDA_FOREST_STORE, else ./model-store."""
    return environ.get("LAMBDA_FOREST_STORE", "").strip() or "./model-store"


def default_sign_key(environ: Mapping[str, str] = os.environ) -> str | None:
    """The KMS key the command-line tools sign with without --sign-key: $LAMBDA_FOREST_SIGN_KEY, else none."""
    return environ.get("LAMBDA_FOREST_SIGN_KEY", "").strip() or None


@dataclass(frozen=True)
class FunctionConfig:
    model_store: str
    model_name: str
    model_version: str | None = None
    model_alias: str = DEFAULT_ALIAS
    refresh_seconds: float = 60.0
    max_batch_rows: int = 10_000
    allow_pickle: bool = False
    signing_key: str | None = None
    cors_allow_origins: tuple[str, ...] = ()
    capture_sample_rate: float = 0.0
    capture_max_rows: int = 100
    explain_seconds: float = 10.0  # Tree SHAP's share of the 20 s timeout

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> FunctionConfig:
        """Read the environment; a missing required value or a malformed number raises ConfigError."""
        missing = [key for key in ("MODEL_STORE", "MODEL_NAME") if not environ.get(key, "").strip()]
        if missing:
            raise ConfigError(
                f"Required setting(s) {', '.join(missing)} not set: set them in the function's "
                "environment (template.yaml parameters ModelStore/ModelName)."
            )
        try:
            return cls(
                model_store=environ["MODEL_STORE"].strip(),
                model_name=check_name("MODEL_NAME", environ["MODEL_NAME"].strip()),
                model_version=_optional_name("MODEL_VERSION", environ),
                model_alias=_optional_name("MODEL_ALIAS", environ) or DEFAULT_ALIAS,
                refresh_seconds=_number(environ, "MODEL_REFRESH_SECONDS", 60.0, float),
                max_batch_rows=_number(environ, "MAX_BATCH_ROWS", 10_000, int, minimum=1),
                allow_pickle=_flag(environ, "ALLOW_PICKLE", False),
                signing_key=environ.get("MODEL_SIGNING_KEY_ARN", "").strip() or None,
                cors_allow_origins=_origins(environ),
                capture_sample_rate=_number(environ, "CAPTURE_SAMPLE_RATE", 0.0, float, maximum=1.0),
                capture_max_rows=_number(environ, "CAPTURE_MAX_ROWS", 100, int, minimum=1),
                explain_seconds=_number(environ, "EXPLAIN_BUDGET_SECONDS", 10.0, float),
            )
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"Invalid function configuration: {exc}") from None


# A browser's Origin header: scheme://host[:port], no path and no trailing slash (or "*": any origin).
_ORIGIN = re.compile(r"^(\*|https?://[^/\s,*]+)$")


def _origins(environ: Mapping[str, str]) -> tuple[str, ...]:
    """CORS_ALLOW_ORIGINS: comma-separated origins the function answers CORS for; empty allows none."""
    origins = tuple(item.strip() for item in environ.get("CORS_ALLOW_ORIGINS", "").split(",") if item.strip())
    bad = [origin for origin in origins if not _ORIGIN.match(origin)]
    if bad:
        raise ConfigError(
            f"CORS_ALLOW_ORIGINS has {', '.join(map(repr, bad))}; expected origins like https://app.example.com "
            "(scheme and host, optional port, no path or trailing slash) or *."
        )
    return origins


DEFAULT_MONITOR_WINDOW = "7d"


@dataclass(frozen=True)
class MonitorConfig:
    """The scheduled monitor function's settings."""

    model_store: str
    model_name: str
    model_alias: str = DEFAULT_ALIAS
    window: timedelta = timedelta(days=7)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> MonitorConfig:
        base = FunctionConfig.from_env(environ)
        text = environ.get("MONITOR_WINDOW", "").strip() or DEFAULT_MONITOR_WINDOW
        try:
            window = parse_window(text)
        except ValueError as error:
            raise ConfigError(f"MONITOR_WINDOW: {error}.") from None
        return cls(base.model_store, base.model_name, base.model_alias, window)


def parse_window(text: str) -> timedelta:
    """`7d`, `24h`, `90m` or `2w` as a duration."""
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    try:
        amount = float(value)
    except ValueError:
        amount = math.nan
    if unit not in units or not math.isfinite(amount) or amount <= 0:
        raise ValueError(f"{text!r} is not a window; expected a number and a unit, like 7d, 24h or 90m")
    return timedelta(**{units[unit]: amount})


def _optional_name(key: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(key, "").strip()
    return check_name(key, value) if value else None


def _flag(environ: Mapping[str, str], key: str, default: bool) -> bool:
    raw = environ.get(key, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise ConfigError(f"{key}={environ[key]!r} is not valid; expected true or false.")
    return raw == "true"


def _number[T: (int, float)](
    environ: Mapping[str, str],
    key: str,
    default: T,
    kind: type[T],
    minimum: T | None = None,
    maximum: T | None = None,
) -> T:
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a valid {kind.__name__}.") from None
    if not math.isfinite(value):
        raise ConfigError(f"{key}={raw!r} is not a finite number.")
    if value < (minimum if minimum is not None else 0):
        raise ConfigError(f"{key}={raw!r} must be at least {minimum if minimum is not None else 0}.")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key}={raw!r} must be at most {maximum}.")
    return value


@dataclass(frozen=True)
class BatchConfig:
    """The BatchScore functions' settings: the model (as the API's) and where runs may read and write."""

    model_store: str
    model_name: str
    input_prefix: str
    output_prefix: str
    concurrency: int = 100
    allow_pickle: bool = False
    signing_key: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> BatchConfig:
        keys = ("MODEL_STORE", "MODEL_NAME", "BATCH_INPUT_PREFIX", "BATCH_OUTPUT_PREFIX")
        missing = [key for key in keys if not environ.get(key, "").strip()]
        if missing:
            raise ConfigError(f"Required setting(s) {', '.join(missing)} not set in the batch function's environment.")
        return cls(
            model_store=environ["MODEL_STORE"].strip(),
            model_name=check_name("MODEL_NAME", environ["MODEL_NAME"].strip()),
            input_prefix=environ["BATCH_INPUT_PREFIX"].strip(),
            output_prefix=environ["BATCH_OUTPUT_PREFIX"].strip(),
            concurrency=_number(environ, "BATCH_CONCURRENCY", 100, int, minimum=1),
            allow_pickle=_flag(environ, "ALLOW_PICKLE", False),
            signing_key=environ.get("MODEL_SIGNING_KEY_ARN", "").strip() or None,
        )
