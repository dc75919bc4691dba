"""The in-memory model of a warm execution environment (shared/DESIGN.md section 5).

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

from lambda_forest.artifact import EstimatorPredictor, Predictor, load_estimator
from lambda_forest.manifest import Manifest
from lambda_forest.store import DEFAULT_ALIAS, ModelStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    predictor: Predictor
    load_seconds: float

    @property
    def identity(self) -> dict[str, str]:
        return {"name": self.manifest.name, "version": self.manifest.version}


def load_version(store: ModelStore, name: str, version: str) -> LoadedModel:
    """Read, verify and deserialise one published version."""
    started = time.perf_counter()
    manifest = Manifest.from_json(store.read_manifest(name, version))
    if manifest.compiled is not None:
        from lambda_forest.compiled import load_compiled

        predictor: Predictor = load_compiled(manifest, store.read_file(name, version, manifest.compiled.file))
    else:
        estimator = load_estimator(manifest, store.read_file(name, version, manifest.artifact.file))
        predictor = EstimatorPredictor(estimator, manifest.is_classifier)
    return LoadedModel(manifest, predictor, time.perf_counter() - started)


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
        loader: Callable[[ModelStore, str, str], LoadedModel] = load_version,
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
        if self.version:
            loaded = self._load(self.version)
        else:
            # Without a tag the read is unconditional, so it always returns the alias.
            alias, tag = self.store.read_alias_if_changed(self.name, self.alias, None)  # type: ignore[misc]
            loaded = self._load(alias.version)
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
            changed = self.store.read_alias_if_changed(self.name, self.alias, self._alias_tag)
            if changed is None:
                return
            alias, tag = changed
            if alias.version != self._current.manifest.version:
                self._current = self._load(alias.version)  # swapped only once fully loaded
            self._alias_tag = tag
        except Exception as error:  # whatever failed, the last good model keeps serving
            logger.warning("alias refresh failed; still serving %s: %s", self._current.manifest.version, error)
            if self._on_refresh_failure:
                self._on_refresh_failure(error)

    def _load(self, version: str) -> LoadedModel:
        loaded = self._loader(self.store, self.name, version)
        if self._on_load:
            self._on_load(loaded)
        return loaded
