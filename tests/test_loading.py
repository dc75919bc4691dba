"""Loading rules (shared/DESIGN.md section 5): integrity, compatibility, refresh, store outages."""

from __future__ import annotations

import dataclasses
import pickle
import time
from pathlib import Path
from typing import Any

import pytest

from lambda_forest.artifact import sha256
from lambda_forest.errors import IncompatibleModel, IntegrityError, ModelUnavailable
from lambda_forest.manifest import FileEntry, Manifest
from lambda_forest.model_cache import LoadPolicy, ModelCache
from lambda_forest.store import MODEL_FILE, S3Store, make_s3_client
from tests.conftest import api_event, load_event, publish_model


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def republish(store: Any, manifest: Manifest, version: str, model_bytes: bytes, **changes: Any) -> Manifest:
    """Publish hand-made model bytes under a copy of `manifest` changed by `changes`."""
    forged = dataclasses.replace(manifest, version=version, **changes)
    store.publish(manifest.name, version, {MODEL_FILE: model_bytes}, forged.to_json())
    return forged


class CodeRunner:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def test_tampered_model_is_refused_and_never_deserialised(
    handler: Any, local_store: Any, published_iris: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps(CodeRunner(marker))
    # The real model's manifest (and sha256), with malicious bytes in place of model.joblib.
    republish(local_store, published_iris, "20300101T000000Z-aaaaaaaa", evil, compiled=None)
    invoke = handler(local_store, model_version="20300101T000000Z-aaaaaaaa", allow_pickle=True)
    reply = invoke(load_event("predict.json"))
    assert (reply.status, reply.body["error"]["code"]) == (503, "model_unavailable")
    assert "failed verification" in reply.body["error"]["message"]
    assert "retry-after" in reply.headers
    assert not marker.exists()
    logged = capsys.readouterr().out
    assert '"reason":"IntegrityError"' in logged and '"ModelUnavailable":[1.0]' in logged  # logged and counted


def test_tampered_compiled_forest_is_refused(handler: Any, local_store: Any, published_iris: Any) -> None:
    version = "20300101T000000Z-dddddddd"
    forest = bytearray(local_store.read_file("iris", published_iris.version, "forest.npz"))
    forest[-100] ^= 0xFF
    forged = dataclasses.replace(published_iris, version=version)
    local_store.publish("iris", version, {"forest.npz": bytes(forest)}, forged.to_json())
    reply = handler(local_store, model_version=version)(load_event("predict.json"))
    assert (reply.status, reply.body["error"]["code"]) == (503, "model_unavailable")
    assert "failed verification" in reply.body["error"]["message"]


def test_hash_is_checked_before_unpickling(published_iris: Any, tmp_path: Path) -> None:
    from lambda_forest.artifact import load_estimator

    marker = tmp_path / "pwned"
    evil = pickle.dumps(CodeRunner(marker))
    with pytest.raises(IntegrityError):
        load_estimator(published_iris, evil)
    assert not marker.exists()


def test_model_from_another_sklearn_version_is_refused(handler: Any, local_store: Any, published_iris: Any) -> None:
    model = local_store.read_file("iris", published_iris.version, MODEL_FILE)
    runtime = {**published_iris.runtime, "scikit-learn": "1.0.2"}
    republish(local_store, published_iris, "20300101T000000Z-bbbbbbbb", model, runtime=runtime, compiled=None)
    invoke = handler(local_store, model_version="20300101T000000Z-bbbbbbbb", allow_pickle=True)
    reply = invoke(load_event("predict.json"))
    assert reply.status == 503
    assert "trained with scikit-learn 1.0.2" in reply.body["error"]["message"]


def test_pickle_from_another_sklearn_version_is_refused_even_if_the_manifest_lies(
    trained_iris: Any, monkeypatch: pytest.MonkeyPatch, local_store: Any, published_iris: Any
) -> None:
    import sklearn.base

    from lambda_forest.artifact import load_estimator, serialize_estimator

    monkeypatch.setattr(sklearn.base, "__version__", "1.0.2")  # what __getstate__ records in the pickle
    old_pickle = serialize_estimator(trained_iris.estimator)
    monkeypatch.undo()
    entry = FileEntry(MODEL_FILE, sha256(old_pickle), len(old_pickle))
    manifest = dataclasses.replace(published_iris, artifact=entry)
    with pytest.raises(IncompatibleModel, match=r"pickled by scikit-learn 1\.0\.2"):
        load_estimator(manifest, old_pickle)


def test_alias_move_is_picked_up_after_the_refresh_interval(
    local_store: Any, trained_iris: Any, trained_diabetes: Any
) -> None:
    first = publish_model(local_store, trained_iris, name="m")
    clock = FakeClock()
    cache = ModelCache(lambda: local_store, "m", refresh_seconds=60, clock=clock)
    assert cache.get().manifest.version == first.version

    second = publish_model(local_store, trained_diabetes, name="m")
    clock.advance(59)
    assert cache.get().manifest.version == first.version  # not yet due
    clock.advance(1)
    assert cache.get().manifest.version == second.version


def test_failed_refresh_keeps_the_last_good_model(local_store: Any, trained_iris: Any, published_iris: Any) -> None:
    clock = FakeClock()
    failures: list[Exception] = []
    cache = ModelCache(
        lambda: local_store,
        "iris",
        refresh_seconds=10,
        clock=clock,
        policy=LoadPolicy(allow_pickle=True),
        on_refresh_failure=failures.append,
    )
    assert cache.get().manifest.version == published_iris.version

    # The alias now points at a version whose model fails verification.
    model = local_store.read_file("iris", published_iris.version, MODEL_FILE)
    republish(local_store, published_iris, "20300101T000000Z-cccccccc", model + b"tampered", compiled=None)
    local_store.set_alias("iris", "live", "20300101T000000Z-cccccccc")
    clock.advance(10)
    assert cache.get().manifest.version == published_iris.version
    assert isinstance(failures[0], IntegrityError)

    # Once the alias is fixed, the next due refresh picks the good version again.
    local_store.set_alias("iris", "live", published_iris.version)
    clock.advance(10)
    assert cache.get().manifest.version == published_iris.version


def test_an_unexpected_refresh_failure_keeps_the_last_good_model(local_store: Any, published_iris: Any) -> None:
    clock = FakeClock()
    cache = ModelCache(lambda: local_store, "iris", refresh_seconds=10, clock=clock)
    cache.get()

    def broken(*_: Any) -> Any:
        raise RuntimeError("a bug, or an error no adapter translated")

    local_store.read_alias_if_changed = broken
    clock.advance(10)
    assert cache.get().manifest.version == published_iris.version


def test_pinned_version_ignores_the_alias(local_store: Any, trained_iris: Any, trained_diabetes: Any) -> None:
    first = publish_model(local_store, trained_iris, name="m")
    publish_model(local_store, trained_diabetes, name="m")
    clock = FakeClock()
    cache = ModelCache(lambda: local_store, "m", version=first.version, refresh_seconds=1, clock=clock)
    assert cache.get().manifest.version == first.version
    clock.advance(100)
    assert cache.get().manifest.version == first.version


def test_refresh_zero_never_rechecks(local_store: Any, trained_iris: Any, trained_diabetes: Any) -> None:
    first = publish_model(local_store, trained_iris, name="m")
    clock = FakeClock()
    cache = ModelCache(lambda: local_store, "m", refresh_seconds=0, clock=clock)
    cache.get()
    publish_model(local_store, trained_diabetes, name="m")
    clock.advance(10_000)
    assert cache.get().manifest.version == first.version


def test_a_failed_first_load_is_not_cached(local_store: Any, trained_iris: Any) -> None:
    cache = ModelCache(lambda: local_store, "iris")
    with pytest.raises(ModelUnavailable):
        cache.get()
    assert cache.current is None
    publish_model(local_store, trained_iris)
    assert cache.get().manifest.name == "iris"


def test_store_outage_at_first_load_is_503_then_recovers(
    handler: Any, trained_iris: Any, moto_server: Any, served_s3_store: Any
) -> None:
    """A real HTTP S3 endpoint (moto's server) that goes away and comes back."""
    publish_model(served_s3_store, trained_iris)
    moto_server.stop()

    invoke = handler(S3Store(served_s3_store.bucket, "models", make_s3_client()))
    started = time.monotonic()
    down = invoke(load_event("predict.json"))
    assert time.monotonic() - started < 10
    assert (down.status, down.body["error"]["code"]) == (503, "model_unavailable")
    assert served_s3_store.bucket not in str(down.body) and "127.0.0.1" not in str(down.body)

    moto_server.start()
    up = invoke(api_event("POST", "/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]}))
    assert up.status == 200 and up.body["predictions"] == ["setosa"]


def test_snapstart_hooks_load_before_snapshot_and_recheck_after_restore(
    handler: Any, local_store: Any, trained_iris: Any, trained_diabetes: Any
) -> None:
    from snapshot_restore_py import get_after_restore, get_before_snapshot

    import app

    first = publish_model(local_store, trained_iris)
    handler(local_store)  # points app.models at the store
    assert app.load_before_snapshot in [hook for hook, *_ in get_before_snapshot()]
    assert app.recheck_after_restore in [hook for hook, *_ in get_after_restore()]

    app.load_before_snapshot()
    assert app.models.current.manifest.version == first.version  # loaded before any request

    newer = publish_model(local_store, trained_diabetes)  # the alias moves while the snapshot sleeps
    app.recheck_after_restore()
    assert app.models.get().manifest.version == newer.version


def test_lean_layer_refuses_a_model_without_compiled_forest(
    handler: Any, local_store: Any, trained_iris: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib import metadata

    publish_model(local_store, trained_iris, compile=False)
    real_version = metadata.version

    def without_sklearn(name: str) -> str:
        if name == "scikit-learn":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr("lambda_forest.artifact.metadata.version", without_sklearn)
    reply = handler(local_store, allow_pickle=True)(load_event("predict.json"))
    assert reply.status == 503 and "LayerVariant=full" in reply.body["error"]["message"]


def test_a_version_without_compiled_forest_is_never_unpickled_by_default(
    handler: Any, local_store: Any, published_iris: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Anyone who can write the bucket can publish a pickle with a matching sha256: it is never opened."""
    marker = tmp_path / "pwned"
    evil = pickle.dumps(CodeRunner(marker))
    forged = republish(
        local_store,
        published_iris,
        "20300101T000000Z-eeeeeeee",
        evil,
        compiled=None,
        artifact=FileEntry(MODEL_FILE, sha256(evil), len(evil)),
    )
    local_store.set_alias("iris", "live", forged.version)
    reply = handler(local_store)(load_event("predict.json"))
    assert (reply.status, reply.body["error"]["code"]) == (503, "model_unavailable")
    message = reply.body["error"]["message"]
    assert "no compiled forest" in message and "--no-compile" in message and "AllowPickle=true" in message
    assert not marker.exists()
    assert '"reason":"PickleNotAllowed"' in capsys.readouterr().out


def test_allow_pickle_serves_a_version_without_compiled_forest(
    handler: Any, local_store: Any, trained_iris: Any
) -> None:
    publish_model(local_store, trained_iris, compile=False)
    assert handler(local_store)(load_event("predict.json")).status == 503
    reply = handler(local_store, allow_pickle=True)(load_event("predict.json"))
    assert reply.status == 200 and reply.body["predictions"] == ["setosa", "virginica"]


@pytest.mark.parametrize(("raw", "expected"), [("", False), ("false", False), ("TRUE", True), (" true ", True)])
def test_allow_pickle_setting(raw: str, expected: bool) -> None:
    from lambda_forest.config import FunctionConfig

    config = FunctionConfig.from_env({"MODEL_STORE": "/s", "MODEL_NAME": "iris", "ALLOW_PICKLE": raw})
    assert config.allow_pickle is expected


def test_allow_pickle_must_be_true_or_false() -> None:
    from lambda_forest.config import FunctionConfig
    from lambda_forest.errors import ConfigError

    with pytest.raises(ConfigError, match="ALLOW_PICKLE='yes' is not valid; expected true or false"):
        FunctionConfig.from_env({"MODEL_STORE": "/s", "MODEL_NAME": "iris", "ALLOW_PICKLE": "yes"})


def test_a_forged_compiled_forest_is_refused_before_any_walk(
    handler: Any, local_store: Any, published_iris: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bucket writer without the signing key can fix a sha256, never make a walk leave the forest's arrays."""
    from lambda_forest.compiled import COMPILED_FILE, read_npz, to_npz

    arrays = read_npz(local_store.read_file("iris", published_iris.version, COMPILED_FILE))
    arrays["feature"][int(arrays["roots"][0])] = 50_000_000  # the native walker would write far past its buffers
    forest = to_npz(arrays)
    version = "20300101T000000Z-ffffffff"
    forged = dataclasses.replace(
        published_iris, version=version, compiled=FileEntry(COMPILED_FILE, sha256(forest), len(forest))
    )
    files = {
        entry.file: local_store.read_file("iris", published_iris.version, entry.file)
        for entry in (published_iris.artifact, published_iris.explain)
        if entry is not None
    }
    local_store.publish("iris", version, {**files, COMPILED_FILE: forest}, forged.to_json())
    local_store.set_alias("iris", "live", version)
    invoke = handler(local_store)
    for event in ("predict.json", "predict-explain.json"):
        reply = invoke(load_event(event))
        assert (reply.status, reply.body["error"]["code"]) == (503, "model_unavailable"), event
        assert "compiled forest is inconsistent" in reply.body["error"]["message"]
    assert '"reason":"InvalidArtifact"' in capsys.readouterr().out
