"""The model store: layout, immutability, aliases, on a local directory and on S3 (moto)."""

from __future__ import annotations

from typing import Any

import pytest

from lambda_forest.errors import NotInStore, StoreAccessDenied, StoreUnreachable, VersionExists
from lambda_forest.manifest import Manifest
from lambda_forest.store import LocalStore, S3Store, open_store
from tests.conftest import publish_model


def test_publish_lays_out_the_version_as_designed(store: Any, trained_iris: Any) -> None:
    manifest = publish_model(store, trained_iris, promote=False)
    prefix = f"iris/versions/{manifest.version}/"
    assert sorted(store._list("iris/")) == [
        prefix + name for name in ("explain.npz", "forest.npz", "manifest.json", "model.joblib")
    ]
    assert Manifest.from_json(store.read_manifest("iris", manifest.version)) == manifest
    assert store.list_versions("iris") == [manifest.version]


def test_versions_are_immutable(store: Any, trained_iris: Any) -> None:
    manifest = publish_model(store, trained_iris, promote=False)
    original = store.read_file("iris", manifest.version, "model.joblib")
    with pytest.raises(VersionExists):
        store.publish("iris", manifest.version, {"model.joblib": b"other"}, manifest.to_json())
    assert store.read_file("iris", manifest.version, "model.joblib") == original


def test_a_half_written_version_is_never_listed_or_overwritten(store: Any) -> None:
    store._create("iris/versions/20260101T000000Z-deadbeef/model.joblib", b"partial")
    assert store.list_versions("iris") == []
    with pytest.raises(VersionExists):
        store.publish("iris", "20260101T000000Z-deadbeef", {"model.joblib": b"new"}, b"{}")
    with pytest.raises(NotInStore):
        store.read_manifest("iris", "20260101T000000Z-deadbeef")


def test_promote_and_rollback_move_the_alias(store: Any, trained_iris: Any, trained_diabetes: Any) -> None:
    first = publish_model(store, trained_iris, name="m")
    second = publish_model(store, trained_diabetes, name="m")
    live = store.read_alias("m", "live")
    assert (live.version, live.previous) == (second.version, first.version)
    assert store.list_versions("m") == sorted([first.version, second.version], reverse=True)

    back = store.rollback("m", "live")
    assert (back.version, back.previous) == (first.version, second.version)
    assert store.rollback("m", "live").version == second.version  # rolling back twice returns


def test_aliases_are_independent(store: Any, trained_iris: Any) -> None:
    manifest = publish_model(store, trained_iris, promote=False)
    store.set_alias("iris", "canary", manifest.version)
    assert store.read_alias("iris", "live") is None
    assert set(store.list_aliases("iris")) == {"canary"}


def test_promoting_a_missing_version_changes_nothing(store: Any, trained_iris: Any) -> None:
    manifest = publish_model(store, trained_iris)
    with pytest.raises(NotInStore, match="no published version 20200101T000000Z-00000000"):
        store.set_alias("iris", "live", "20200101T000000Z-00000000")
    assert store.read_alias("iris", "live").version == manifest.version


def test_rollback_without_previous_is_refused(store: Any, trained_iris: Any) -> None:
    publish_model(store, trained_iris)
    with pytest.raises(NotInStore, match="no previous version"):
        store.rollback("iris", "live")


def test_conditional_alias_read_reports_unchanged(store: Any, trained_iris: Any, trained_diabetes: Any) -> None:
    publish_model(store, trained_iris, name="m")
    _, tag = store.read_alias_if_changed("m", "live", None)
    assert store.read_alias_if_changed("m", "live", tag) is None
    newer = publish_model(store, trained_diabetes, name="m")
    changed = store.read_alias_if_changed("m", "live", tag)
    assert changed is not None and changed[0].version == newer.version


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x" * 200])
def test_unsafe_names_never_become_paths(store: Any, name: str) -> None:
    with pytest.raises(NotInStore):
        store.read_manifest(name, "v1")


def test_open_store_understands_uris(tmp_path: Any) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert open_store(f"file://{tmp_path}").root == tmp_path
    s3 = open_store("s3://bucket/some/prefix/")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")


def test_missing_bucket_is_a_clear_error(s3_store: Any) -> None:
    missing = S3Store("no-such-bucket-here", "models", s3_store.client)
    with pytest.raises(StoreAccessDenied, match="bucket does not exist") as caught:
        missing.list_versions("iris")
    assert "no-such-bucket-here" not in caught.value.message  # the bucket is detail, not public message
    assert "no-such-bucket-here" in caught.value.detail


@pytest.mark.parametrize(
    ("code", "status", "error", "words"),
    [
        ("AccessDenied", 403, StoreAccessDenied, "refused"),
        ("InvalidAccessKeyId", 403, StoreAccessDenied, "refused"),
        ("SlowDown", 503, StoreUnreachable, "returned an error"),
    ],
)
def test_s3_errors_become_store_errors_without_aws_details(
    s3_store: Any, code: str, status: int, error: type, words: str
) -> None:
    from botocore.stub import Stubber

    with Stubber(s3_store.client) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(error, match=words) as caught:
            s3_store.read_manifest("iris", "v1")
    assert code not in caught.value.message and s3_store.bucket not in caught.value.message
    assert code in caught.value.detail


def test_a_concurrent_alias_move_is_never_lost(
    store: Any, trained_iris: Any, trained_diabetes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lambda_forest.errors import AliasMoved

    first = publish_model(store, trained_iris, name="m")
    second = publish_model(store, trained_diabetes, name="m", promote=False)
    read = store._read_if_changed

    def read_then_someone_else_moves_it(key: str, tag: str | None) -> Any:
        result = read(key, tag)
        monkeypatch.setattr(store, "_read_if_changed", read)
        store.set_alias("m", "live", second.version)  # another operator, between our read and our write
        return result

    monkeypatch.setattr(store, "_read_if_changed", read_then_someone_else_moves_it)
    with pytest.raises(AliasMoved, match="moved by someone else"):
        store.set_alias("m", "live", first.version)
    live = store.read_alias("m", "live")
    assert (live.version, live.previous) == (second.version, first.version)  # the other move stands
    assert store.set_alias("m", "live", first.version).previous == second.version  # a retry sees it
