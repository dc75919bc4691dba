"""Signed models: who published a version, and who moved an alias, proven with a KMS asymmetric key.

The sha256 in a manifest proves a file is the one the manifest names, not who wrote the manifest.
With a signing key, training signs:

- each version's manifest bytes (`manifest.sig` beside it). The manifest holds the sha256 of every
  other file of the version, so one signature covers them all;
- each alias record it writes (`promote`, `rollback`, `train --promote`): the model name, the alias
  name, the version, when it moved and where it pointed before. This binds the alias to versions that
  a key holder chose for it, so a bucket writer cannot point `live` at a signed version that was never
  promoted there (a staging candidate, say). It cannot stop a bucket writer replaying an older signed
  record of the same alias: that rolls the alias back to a version that was once promoted there.

The function, given the key (MODEL_SIGNING_KEY_ARN), refuses an unsigned or badly signed alias or
manifest before it reads any other file (`SignatureInvalid`). The private key never leaves KMS: signing
needs `kms:Sign`, verifying `kms:Verify` (one call per verified object, so once per model load).

What is signed is a SHA-256 digest (KMS `MessageType=DIGEST`, since manifests can exceed the 4 KB a raw
message may have) of a context line plus the bytes, so a manifest signature is never an alias one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lambda_forest.deadline import OutOfTime, bounded
from lambda_forest.errors import SignatureInvalid, SigningKeyUnavailable

if TYPE_CHECKING:
    from botocore.client import BaseClient

    from lambda_forest.store import Alias, AliasSigner

MANIFEST_CONTEXT = b"lambda-forest manifest v1\n"
ALIAS_CONTEXT = b"lambda-forest alias v1\n"

# KMS signing algorithms over a SHA-256 digest, in the order a key's first supported one is chosen.
ALGORITHMS = ("ECDSA_SHA_256", "RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256")

KMS_CONNECT_TIMEOUT_SECONDS = 2
KMS_READ_TIMEOUT_SECONDS = 3
KMS_MAX_ATTEMPTS = 3  # in all, the first included


@dataclass(frozen=True)
class Signature:
    """A KMS signature and how it was made (the key that made it is informative only: verifiers use theirs)."""

    key_id: str
    algorithm: str
    value: bytes

    def to_dict(self) -> dict[str, str]:
        return {"key_id": self.key_id, "algorithm": self.algorithm, "signature": base64.b64encode(self.value).decode()}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2).encode()

    @classmethod
    def from_dict(cls, body: Any) -> Signature:
        try:
            return cls(str(body["key_id"]), str(body["algorithm"]), base64.b64decode(body["signature"], validate=True))
        except (KeyError, TypeError, ValueError):
            raise SignatureInvalid("The model's signature is malformed; the model was not loaded.") from None

    @classmethod
    def from_json(cls, data: bytes) -> Signature:
        try:
            body = json.loads(data)
        except ValueError:
            raise SignatureInvalid("The model's signature is malformed; the model was not loaded.") from None
        return cls.from_dict(body)


def manifest_message(manifest: bytes) -> bytes:
    return MANIFEST_CONTEXT + manifest


def alias_message(name: str, alias: str, record: Alias) -> bytes:
    """The alias record's signed bytes: canonical JSON of every field but the signature, with both names."""
    fields = {
        "model": name,
        "alias": alias,
        "version": record.version,
        "updated_at": record.updated_at,
        "previous": record.previous,
    }
    return ALIAS_CONTEXT + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


class Verifier(Protocol):
    def verify(self, message: bytes, signature: Signature) -> None:
        """Return if `signature` is the configured key's over `message`; raise SignatureInvalid otherwise."""

    def connect(self) -> None:
        """Do the one-off set-up (an AWS client) now, outside any time limit."""


class Signer(Protocol):
    def sign(self, message: bytes) -> Signature: ...


def verify_manifest(verifier: Verifier, name: str, version: str, manifest: bytes, signature: bytes | None) -> None:
    if signature is None:
        raise SignatureInvalid(
            f"Version {version} of {name} is not signed, and this function serves only signed models; "
            "publish it with `train --sign-key` or sign it with `promote VERSION --sign-key`.",
        )
    verifier.verify(manifest_message(manifest), Signature.from_json(signature))


def verify_alias(verifier: Verifier, name: str, alias: str, record: Alias) -> None:
    if record.signature is None:
        raise SignatureInvalid(
            f"Alias {alias} of {name} was moved without a signature, and this function serves only signed "
            "models; move it with `promote VERSION --sign-key` (or `rollback --sign-key`).",
        )
    verifier.verify(alias_message(name, alias, record), Signature.from_dict(record.signature))


def alias_signer(signer: Signer) -> AliasSigner:
    """What `ModelStore.set_alias(sign=...)` takes: signs each alias record the store writes."""
    return lambda name, alias, record: signer.sign(alias_message(name, alias, record)).to_dict()


def make_kms_client() -> BaseClient:
    """A KMS client with explicit timeouts and standard retries (honours AWS_ENDPOINT_URL_KMS)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=KMS_CONNECT_TIMEOUT_SECONDS,
        read_timeout=KMS_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "total_max_attempts": KMS_MAX_ATTEMPTS},
    )
    return bounded(boto3.client("kms", config=config))


class _Kms:
    def __init__(self, key_id: str, client: BaseClient | None = None) -> None:
        self.key_id = key_id
        self._client = client

    @property
    def client(self) -> BaseClient:
        if self._client is None:
            self._client = make_kms_client()
        return self._client

    def connect(self) -> None:
        self.client  # noqa: B018 - creating it imports boto3 and builds the client: CPU, not waiting

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call KMS, turning its failures into lambda-forest errors (the adapter boundary)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(KeyId=self.key_id, **params)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            detail = f"KMS {operation} with {self.key_id}: {code}: {exc.response.get('Error', {}).get('Message')}"
            # A signature made with another key's algorithm fails validation: it is not this key's signature.
            if code == "KMSInvalidSignatureException" or (operation == "verify" and code == "ValidationException"):
                raise SignatureInvalid(
                    "The model's signature does not verify with the signing key; the model was not loaded.",
                    detail=detail,
                ) from None
            raise SigningKeyUnavailable("The model signing key cannot be used now.", detail=detail) from None
        except OutOfTime as exc:
            raise SigningKeyUnavailable("The model signing key did not answer in time.", detail=str(exc)) from None
        except BotoCoreError as exc:
            raise SigningKeyUnavailable(
                "The model signing key cannot be reached.", detail=f"KMS {operation}: {type(exc).__name__}: {exc}"
            ) from None


class KmsVerifier(_Kms):
    """Verifies with the configured key (kms:Verify): the key named in a signature is never trusted."""

    def verify(self, message: bytes, signature: Signature) -> None:
        if signature.algorithm not in ALGORITHMS:
            raise SignatureInvalid(
                "The model's signature uses an algorithm this function does not accept; the model was not loaded.",
                detail=f"algorithm {signature.algorithm!r}; accepted: {', '.join(ALGORITHMS)}",
            )
        answer = self._call(
            "verify",
            Message=hashlib.sha256(message).digest(),
            MessageType="DIGEST",
            Signature=signature.value,
            SigningAlgorithm=signature.algorithm,
        )
        if not answer.get("SignatureValid"):
            raise SignatureInvalid(
                "The model's signature does not verify with the signing key; the model was not loaded.",
                detail=f"key {self.key_id}",
            )


class KmsSigner(_Kms):
    """Signs with a KMS asymmetric SIGN_VERIFY key (kms:DescribeKey once, then kms:Sign per signature)."""

    def __init__(self, key_id: str, client: BaseClient | None = None) -> None:
        super().__init__(key_id, client)
        self._algorithm: str | None = None

    @property
    def algorithm(self) -> str:
        if self._algorithm is None:
            key = self._call("describe_key")["KeyMetadata"]
            offered = key.get("SigningAlgorithms") or []
            if key.get("KeyUsage") != "SIGN_VERIFY" or not any(a in offered for a in ALGORITHMS):
                raise SigningKeyUnavailable(
                    f"The key {self.key_id} cannot sign models: use an asymmetric KMS key with key usage "
                    "SIGN_VERIFY (ECC_NIST_P256, or RSA with a SHA-256 algorithm).",
                    detail=f"KeyUsage {key.get('KeyUsage')}, SigningAlgorithms {offered}",
                )
            self._algorithm = next(a for a in ALGORITHMS if a in offered)
        return self._algorithm

    def sign(self, message: bytes) -> Signature:
        algorithm = self.algorithm
        answer = self._call(
            "sign", Message=hashlib.sha256(message).digest(), MessageType="DIGEST", SigningAlgorithm=algorithm
        )
        return Signature(str(answer.get("KeyId", self.key_id)), algorithm, answer["Signature"])
