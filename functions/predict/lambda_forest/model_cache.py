"""The in-memory model of a warm execution environment (shared/DESIGN.md section 5).

- Policy: what a version must be to be served (`LoadPolicy`): by default a compiled forest, never a
  pickle, since anyone who can write the model bucket could otherwise run code in the function.
- Lazy: the first `get()` loads the model; later calls reuse it. A failed load is never cached.
- Refresh: when following an alias, at most every `refresh_seconds` the alias is re-read with a
  conditional GET; a new version is loaded fully before it is swapped in, and a failed refresh keeps
  the last good model serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lambda_forest.artifact import EstimatorPredictor, Predictor, final_estimator, load_estimator, verify
from lambda_forest.deadline import time_limit
from lambda_forest.errors import InvalidArtifact, PickleNotAllowed
from lambda_forest.explain import ModelExplainer
from lambda_forest.manifest import Manifest
from lambda_forest.signing import Verifier, verify_alias, verify_manifest
from lambda_forest.store import DEFAULT_ALIAS, Alias, ModelStore

logger = logging.getLogger(__name__)

# Every AWS call of a load, retries included, ends within this (lambda_forest.deadline): with one attempt in
# flight (2 s connect + 3 s read) and one back-off, a failing load answers 503 in under 15 s, inside the
# function's 20 s timeout. An alias re-check on a warm instance gives up sooner: a good model is serving.
LOAD_TIME_LIMIT_SECONDS = 8.0
REFRESH_CHECK_TIME_LIMIT_SECONDS = 2.0


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    predictor: Predictor
    load_seconds: float
    explainer: ModelExplainer

    @property
    def identity(self) -> dict[str, str]:
        return {"name": self.manifest.name, "version": self.manifest.version}


@dataclass(frozen=True)
class LoadPolicy:
    """What a version must be to be served."""

    # Unpickle model.joblib for versions without a compiled forest (ALLOW_PICKLE). Unpickling runs
    # whatever code the file names, so this is only safe where every writer of the store is trusted.
    allow_pickle: bool = False
    # With a verifier (MODEL_SIGNING_KEY_ARN), only signed aliases and versions are served.
    verifier: Verifier | None = None

    def check_alias(self, name: str, alias_name: str, alias: Alias) -> Alias:
        if self.verifier is not None:
            verify_alias(self.verifier, name, alias_name, alias)
        return alias


def load_version(store: ModelStore, name: str, version: str, policy: LoadPolicy = LoadPolicy()) -> LoadedModel:
    """Read, verify and deserialise one published version: the signature first, then each file's sha256."""
    started = time.perf_counter()
    manifest_bytes = store.read_manifest(name, version)
    if policy.verifier is not None:
        verify_manifest(policy.verifier, name, version, manifest_bytes, store.read_signature(name, version))
    manifest = Manifest.from_json(manifest_bytes)
    if (manifest.name, manifest.version) != (name, version):
        raise InvalidArtifact(
            "The model's manifest describes another model or version; the model was not loaded.",
            detail=f"read {name} {version}, manifest says {manifest.name} {manifest.version}",
        )
    if manifest.compiled is not None:
        from lambda_forest.compiled import load_compiled

        forest = load_compiled(manifest, store.read_file(name, version, manifest.compiled.file))
        predictor: Predictor = forest
        explainer = ModelExplainer(
            lambda: forest.arrays,
            _cover_reader(store, name, manifest),
            manifest.feature_names,
            manifest.classes,
            prediction_of=forest.prediction_of,
        )
    elif not policy.allow_pickle:
        raise PickleNotAllowed(
            f"Version {version} of {name} has no compiled forest, and this function does not unpickle "
            "model.joblib (AllowPickle=false). Republish the model with its compiled forest (train without "
            "--no-compile), or deploy with AllowPickle=true if only trusted people can write the model store.",
        )
    else:
        from lambda_forest.compiled import compile_forest
        from lambda_forest.explain import explanation_arrays

        estimator = load_estimator(manifest, store.read_file(name, version, manifest.artifact.file))
        predictor = EstimatorPredictor(estimator, manifest.is_classifier, manifest.schema)
        # The fitted trees, flattened as publishing flattens them, explain exactly like the compiled forest.
        explainer = ModelExplainer(
            lambda: compile_forest(final_estimator(estimator)),
            lambda: explanation_arrays(final_estimator(estimator))["cover"],
            manifest.feature_names,
            manifest.classes,
        )
    return LoadedModel(manifest, predictor, time.perf_counter() - started, explainer)


def _cover_reader(store: ModelStore, name: str, manifest: Manifest) -> Callable[[], np.ndarray] | None:
    """Reads explain.npz on the first Tree SHAP request (plain predictions never pay for it)."""
    entry = manifest.explain
    if entry is None:
        return None  # published before explanations: path contributions only

    def read() -> np.ndarray:
        from lambda_forest.explain import read_explanation_arrays

        data = verify(entry, store.read_file(name, manifest.version, entry.file))
        return read_explanation_arrays(data)["cover"]

    return read


class ModelCache:
    """Holds the serving model; safe to share between the threads of one process."""

    def __init__(
        self,
        open_store: Callable[[], ModelStore],
        name: str,
        *,
        version: str | None = None,
        alias: str = DEFAULT_ALIAS,
        refresh_seconds: float = 60,
        policy: LoadPolicy = LoadPolicy(),
        loader: Callable[[ModelStore, str, str, LoadPolicy], LoadedModel] = load_version,
        clock: Callable[[], float] = time.monotonic,
        on_load: Callable[[LoadedModel], None] | None = None,
        on_refresh_failure: Callable[[Exception], None] | None = None,
    ) -> None:
        self._open_store = open_store
        self._store: ModelStore | None = None
        self.name = name
        self.version = version
        self.alias = alias
        self.refresh_seconds = refresh_seconds
        self.policy = policy
        self._loader = loader
        self._clock = clock
        self._on_load = on_load
        self._on_refresh_failure = on_refresh_failure
        self._current: LoadedModel | None = None
        self._alias_tag: str | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedModel | None:
        """The model being served, without loading anything."""
        return self._current

    @property
    def store(self) -> ModelStore:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def get(self) -> LoadedModel:
        """The model to serve: loaded on first use, refreshed when due. Raises ModelUnavailable."""
        with self._lock:
            if self._current is None:
                self._current = self._load_first()
            elif self._refresh_due():
                self._refresh()
            return self._current

    def preload(self) -> LoadedModel:
        """Load now (SnapStart's before-checkpoint hook, warmers)."""
        return self.get()

    def expire(self) -> None:
        """Make the next `get()` re-check the alias (after a SnapStart restore)."""
        self._checked_at = float("-inf")

    def _load_first(self) -> LoadedModel:
        # Clients first: the time limit bounds waiting on AWS (calls and retries), not building clients.
        self.store.connect()
        if self.policy.verifier is not None:
            self.policy.verifier.connect()
        with time_limit(LOAD_TIME_LIMIT_SECONDS):
            return self._read_and_load_first()

    def _read_and_load_first(self) -> LoadedModel:
        if self.version:
            loaded = self._load(self.version)
        else:
            # Without a tag the read is unconditional, so it always returns the alias.
            alias, tag = self.store.read_alias_if_changed(self.name, self.alias, None)  # type: ignore[misc]
            loaded = self._load(self.policy.check_alias(self.name, self.alias, alias).version)
            self._alias_tag = tag
        self._checked_at = self._clock()
        return loaded

    def _refresh_due(self) -> bool:
        if self.version or self.refresh_seconds <= 0:
            return False
        return self._clock() - self._checked_at >= self.refresh_seconds

    def _refresh(self) -> None:
        assert self._current is not None
        self._checked_at = self._clock()
        try:
            with time_limit(REFRESH_CHECK_TIME_LIMIT_SECONDS):
                changed = self.store.read_alias_if_changed(self.name, self.alias, self._alias_tag)
                if changed is None:
                    return
                alias, tag = changed
                self.policy.check_alias(self.name, self.alias, alias)
            if alias.version != self._current.manifest.version:
                with time_limit(LOAD_TIME_LIMIT_SECONDS):
                    self._current = self._load(alias.version)  # swapped only once fully loaded
            self._alias_tag = tag
        except Exception as error:  # whatever failed, the last good model keeps serving
            logger.warning("alias refresh failed; still serving %s: %s", self._current.manifest.version, error)
            if self._on_refresh_failure:
                self._on_refresh_failure(error)

    def _load(self, version: str) -> LoadedModel:
        loaded = self._loader(self.store, self.name, version, self.policy)
        if self._on_load:
            self._on_load(loaded)
        return loaded
