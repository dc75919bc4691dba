"""Signed models: KMS signatures on manifests and alias moves (moto's KMS), verified before anything else is read."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambda_forest.errors import SignatureInvalid, SigningKeyUnavailable
from lambda_forest.model_cache import LoadPolicy, ModelCache, load_version
from lambda_forest.signing import KmsSigner, KmsVerifier, Signature, alias_signer
from lambda_forest.store import MANIFEST_FILE, SIGNATURE_FILE, LocalStore
from tests.conftest import load_event, publish_model
from training.cli import main


@dataclasses.dataclass
class Keys:
    signing: str
    other: str
    symmetric: str


@pytest.fixture
def kms() -> Iterator[Keys]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("kms")

        def key(**spec: str) -> str:
            return client.create_key(**spec)["KeyMetadata"]["Arn"]

        yield Keys(
            signing=key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256"),
            other=key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048"),
            symmetric=key(),
        )


class RecordingStore(LocalStore):
    """A local store that remembers which version files were read, in order."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def _read(self, key: str) -> bytes:
        if "/versions/" in key:
            self.reads.append(key.rsplit("/", 1)[-1])
        return super()._read(key)


@pytest.fixture
def store(tmp_path: Path) -> RecordingStore:
    return RecordingStore(tmp_path / "store")


def publish_signed(store: Any, trained: Any, key: str, name: str = "iris", promote: bool = True) -> Any:
    from training.forest import build_artifact, publish

    signer = KmsSigner(key)
    manifest, files = build_artifact(name, trained)
    publish(store, manifest, files, signer)
    if promote:
        store.set_alias(name, "live", manifest.version, alias_signer(signer))
    return manifest


@pytest.fixture
def signed_handler(handler: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`signed_handler(store, key, **settings)`: the function with MODEL_SIGNING_KEY_ARN set to `key`."""

    def configure(store: Any, key: str, **settings: Any) -> Any:
        return handler(store, signing_key=key, **settings)

    return configure


def test_a_signed_version_is_served(signed_handler: Any, store: Any, kms: Keys, trained_iris: Any) -> None:
    manifest = publish_signed(store, trained_iris, kms.signing)
    signature = json.loads(store.read_file("iris", manifest.version, SIGNATURE_FILE))
    assert signature["algorithm"] == "ECDSA_SHA_256" and signature["key_id"] == kms.signing
    assert store.read_alias("iris", "live").signature["key_id"] == kms.signing

    store.reads.clear()
    reply = signed_handler(store, kms.signing)(load_event("predict.json"))
    assert reply.status == 200 and reply.body["predictions"] == ["setosa", "virginica"]
    assert store.reads == [MANIFEST_FILE, SIGNATURE_FILE, "forest.npz"]


def assert_refused(reply: Any, capsys: pytest.CaptureFixture[str], *words: str) -> None:
    assert (reply.status, reply.body["error"]["code"]) == (503, "model_unavailable")
    assert "retry-after" in reply.headers
    for word in words:
        assert word in reply.body["error"]["message"]
    assert '"reason":"SignatureInvalid"' in capsys.readouterr().out  # the ModelUnavailable metric's dimension


def test_an_unsigned_version_is_refused_before_any_model_file_is_read(
    signed_handler: Any, store: Any, kms: Keys, trained_iris: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = publish_model(store, trained_iris, promote=False)
    store.reads.clear()
    reply = signed_handler(store, kms.signing, model_version=manifest.version)(load_event("predict.json"))
    assert_refused(reply, capsys, "is not signed", "--sign-key")
    assert store.reads == [MANIFEST_FILE, SIGNATURE_FILE]


def test_a_manifest_changed_after_signing_is_refused(
    signed_handler: Any, store: Any, kms: Keys, trained_iris: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bucket writer swaps forest.npz and fixes its sha256 in the manifest: the signature no longer matches."""
    manifest = publish_signed(store, trained_iris, kms.signing)
    path = store.root / "iris" / "versions" / manifest.version / MANIFEST_FILE
    forged = json.loads(path.read_bytes())
    forged["compiled"]["sha256"] = "0" * 64
    path.write_text(json.dumps(forged, indent=2))
    store.reads.clear()
    assert_refused(signed_handler(store, kms.signing)(load_event("predict.json")), capsys, "does not verify")
    assert "forest.npz" not in store.reads


def test_a_version_signed_by_another_key_is_refused(
    signed_handler: Any, store: Any, kms: Keys, trained_iris: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = publish_signed(store, trained_iris, kms.other)
    reply = signed_handler(store, kms.signing, model_version=manifest.version)(load_event("predict.json"))
    assert_refused(reply, capsys, "does not verify")


def test_a_signed_manifest_copied_under_another_version_is_refused(
    store: Any, kms: Keys, trained_iris: Any, trained_diabetes: Any
) -> None:
    """Signatures cover the manifest, and the manifest names its own version: a copy cannot pose as another."""
    manifest = publish_signed(store, trained_iris, kms.signing, promote=False)
    source = store.root / "iris" / "versions" / manifest.version
    copy = "20990101T000000Z-ffffffff"
    files = {path.name: path.read_bytes() for path in source.iterdir() if path.name != MANIFEST_FILE}
    store.publish("iris", copy, files, (source / MANIFEST_FILE).read_bytes())
    with pytest.raises(Exception, match="another model or version"):
        load_version(store, "iris", copy, LoadPolicy(verifier=KmsVerifier(kms.signing)))


@pytest.mark.parametrize("how", ["unsigned", "signed for another alias", "signed for another model"])
def test_an_alias_not_moved_by_a_key_holder_is_refused(
    signed_handler: Any, store: Any, kms: Keys, trained_iris: Any, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    """Both versions are signed; only the alias move is not, so the function does not follow it."""
    manifest = publish_signed(store, trained_iris, kms.signing, promote=False)
    signer = alias_signer(KmsSigner(kms.signing))
    if how == "unsigned":
        store.set_alias("iris", "live", manifest.version)
    else:
        record = store.set_alias("iris", "staging", manifest.version, signer)
        if how == "signed for another model":
            record = dataclasses.replace(record, signature=signer("wine", "live", record))
        (store.root / "iris" / "aliases").mkdir(exist_ok=True)
        (store.root / "iris" / "aliases" / "live.json").write_bytes(record.to_json())
    reply = signed_handler(store, kms.signing)(load_event("predict.json"))
    words = ("moved without a signature",) if how == "unsigned" else ("does not verify",)
    assert_refused(reply, capsys, *words)


def test_a_warm_instance_does_not_follow_an_unsigned_alias_move(
    store: Any, kms: Keys, trained_iris: Any, trained_diabetes: Any
) -> None:
    from tests.test_loading import FakeClock

    first = publish_signed(store, trained_iris, kms.signing)
    clock = FakeClock()
    failures: list[Exception] = []
    policy = LoadPolicy(verifier=KmsVerifier(kms.signing))
    cache = ModelCache(
        lambda: store, "iris", refresh_seconds=10, clock=clock, policy=policy, on_refresh_failure=failures.append
    )
    assert cache.get().manifest.version == first.version

    second = publish_signed(store, trained_diabetes, kms.signing, promote=False)
    store.set_alias("iris", "live", second.version)  # no signature
    clock.advance(10)
    assert cache.get().manifest.version == first.version
    assert isinstance(failures[-1], SignatureInvalid)

    store.set_alias("iris", "live", second.version, alias_signer(KmsSigner(kms.signing)))
    clock.advance(10)
    assert cache.get().manifest.version == second.version


def test_a_pinned_version_needs_only_its_own_signature(
    signed_handler: Any, store: Any, kms: Keys, trained_iris: Any
) -> None:
    manifest = publish_signed(store, trained_iris, kms.signing, promote=False)
    store.set_alias("iris", "live", manifest.version)  # unsigned, but a pinned version ignores aliases
    assert signed_handler(store, kms.signing, model_version=manifest.version)(load_event("predict.json")).status == 200


def test_an_unreachable_kms_is_a_503_that_says_so(
    signed_handler: Any, store: Any, kms: Keys, trained_iris: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_signed(store, trained_iris, kms.signing)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:9")  # nothing listens on the discard port
    reply = signed_handler(store, kms.signing)(load_event("predict.json"))
    assert (reply.status, reply.headers["retry-after"]) == (503, "10")
    assert "signing key cannot be reached" in reply.body["error"]["message"]
    assert "127.0.0.1" not in json.dumps(reply.body)


def test_a_malformed_signature_is_refused(store: Any, kms: Keys, trained_iris: Any) -> None:
    manifest = publish_model(store, trained_iris, promote=False)
    store.add_signature("iris", manifest.version, b'{"key_id": "k", "algorithm": "ECDSA_SHA_256"}')
    with pytest.raises(SignatureInvalid, match="malformed"):
        load_version(store, "iris", manifest.version, LoadPolicy(verifier=KmsVerifier(kms.signing)))


def test_an_unknown_algorithm_is_refused_without_asking_kms(kms: Keys) -> None:
    signature = Signature(kms.signing, "HMAC_SHA_256", b"x")
    with pytest.raises(SignatureInvalid, match="algorithm"):
        KmsVerifier(kms.signing, client=object()).verify(b"message", signature)  # type: ignore[arg-type]


def test_a_symmetric_key_cannot_sign(kms: Keys) -> None:
    with pytest.raises(SigningKeyUnavailable, match="SIGN_VERIFY"):
        KmsSigner(kms.symmetric).sign(b"message")


def test_rsa_keys_sign_too(kms: Keys) -> None:
    signature = KmsSigner(kms.other).sign(b"message")
    assert signature.algorithm == "RSASSA_PSS_SHA_256"
    KmsVerifier(kms.other).verify(b"message", signature)


# The CLI: train, promote and rollback with --sign-key.


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def train(store: Any, *extra: str) -> list[str]:
    return ["train", "--dataset", "iris", "--trees", "5", "--n-jobs", "1", "--store", store.uri, *extra]


def test_cli_train_promote_rollback_sign_everything(
    capsys: pytest.CaptureFixture[str], signed_handler: Any, store: Any, kms: Keys
) -> None:
    assert cli(capsys, *train(store, "--promote", "--sign-key", kms.signing))[0] == 0
    first = store.read_alias("iris", "live").version
    code, _, err = cli(capsys, *train(store, "--random-state", "3", "--sign-key", kms.signing))
    assert code == 0 and "signed with" in err
    second = next(v for v in store.list_versions("iris") if v != first)

    code, out, _ = cli(capsys, "promote", second, "--name", "iris", "--store", store.uri, "--sign-key", kms.signing)
    assert code == 0 and "signed" in out and "signed version" not in out  # already signed at publish
    invoke = signed_handler(store, kms.signing)
    assert invoke(load_event("predict.json")).body["model"]["version"] == second

    assert cli(capsys, "rollback", "--name", "iris", "--store", store.uri, "--sign-key", kms.signing)[0] == 0
    assert signed_handler(store, kms.signing)(load_event("predict.json")).body["model"]["version"] == first


def test_cli_sign_key_from_the_environment(
    capsys: pytest.CaptureFixture[str], store: Any, kms: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("training.cli.default_sign_key", lambda: kms.signing)
    assert cli(capsys, *train(store, "--promote"))[0] == 0
    assert store.read_alias("iris", "live").signature is not None


def test_cli_promote_signs_an_unsigned_version_after_checking_its_files(
    capsys: pytest.CaptureFixture[str], signed_handler: Any, store: Any, kms: Keys, trained_iris: Any
) -> None:
    manifest = publish_model(store, trained_iris, promote=False)
    code, out, _ = cli(
        capsys, "promote", manifest.version, "--name", "iris", "--store", store.uri, "--sign-key", kms.signing
    )
    assert code == 0 and f"signed version {manifest.version}" in out
    assert signed_handler(store, kms.signing)(load_event("predict.json")).status == 200


def test_cli_promote_refuses_to_sign_a_tampered_version(
    capsys: pytest.CaptureFixture[str], store: Any, kms: Keys, trained_iris: Any
) -> None:
    manifest = publish_model(store, trained_iris, promote=False)
    forest = store.root / "iris" / "versions" / manifest.version / "forest.npz"
    forest.write_bytes(forest.read_bytes()[:-10] + b"0123456789")
    code, _, err = cli(
        capsys, "promote", manifest.version, "--name", "iris", "--store", store.uri, "--sign-key", kms.signing
    )
    assert code == 1 and err.startswith("error: The model artifact failed verification")
    assert store.read_signature("iris", manifest.version) is None and store.read_alias("iris", "live") is None


def test_cli_promote_reports_a_version_signed_by_another_key(
    capsys: pytest.CaptureFixture[str], store: Any, kms: Keys, trained_iris: Any
) -> None:
    manifest = publish_signed(store, trained_iris, kms.other, promote=False)
    code, _, err = cli(
        capsys, "promote", manifest.version, "--name", "iris", "--store", store.uri, "--sign-key", kms.signing
    )
    assert code == 1 and "does not verify" in err and err.count("\n") == 1
    assert store.read_alias("iris", "live") is None


def test_cli_refuses_a_key_that_cannot_sign(capsys: pytest.CaptureFixture[str], store: Any, kms: Keys) -> None:
    code, _, err = cli(capsys, *train(store, "--promote", "--sign-key", kms.symmetric))
    assert code == 1 and "SIGN_VERIFY" in err
    assert store.list_versions("iris") == []  # nothing published
