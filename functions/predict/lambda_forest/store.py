"""The model store: the single owner of the layout in shared/DESIGN.md section 1.

    {store}/{name}/versions/{version}/model.joblib
    {store}/{name}/versions/{version}/forest.npz
    {store}/{name}/versions/{version}/manifest.sig      the manifest's signature (signed models only)
    {store}/{name}/versions/{version}/manifest.json
    {store}/{name}/aliases/{alias}.json                 with its own signature (signed models only)
    {store}/{name}/captures/YYYY/MM/DD/HH/{file}.jsonl[.gz]   captured predictions (one JSON line each)
    {store}/{name}/labels/YYYY/MM/DD/HH/{file}.jsonl[.gz]     ground truth for captured rows
    {store}/{name}/reports/{YYYYMMDDTHHMMSSZ}/report.json     monitoring reports (and report.html)

A store is a local directory (the default for local work) or `s3://bucket/prefix`. Both sit behind
`ModelStore`; backends implement five byte-level primitives and translate their own failures into
the errors of `lambda_forest.errors`, so nothing above this module sees an AWS exception.
"""

from __future__ import annotations

import dataclasses
import fcntl
import gzip
import json
import os
import re
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lambda_forest.deadline import OutOfTime, bounded
from lambda_forest.errors import (
    AliasMoved,
    ConfigError,
    NotInStore,
    StoreAccessDenied,
    StoreError,
    StoreUnreachable,
    VersionExists,
)

if TYPE_CHECKING:
    from botocore.client import BaseClient

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
DEFAULT_ALIAS = "live"

# Record directories (shared/DESIGN.md section 6): JSON lines partitioned by the UTC hour they arrived in,
# the layout Amazon Data Firehose writes in AWS and `write_records` writes everywhere else.
CAPTURES = "captures"
LABELS = "labels"
RECORD_KINDS = (CAPTURES, LABELS)
REPORTS = "reports"
_GZIP_MAGIC = b"\x1f\x8b"

# Names become path segments and S3 keys: keep them to a safe alphabet so nothing escapes its prefix.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Per attempt: connect, and the longest wait for the next bytes (not the whole transfer). Standard retries
# back off and retry throttles, 5xx and timeouts; a model load bounds the whole (lambda_forest.deadline).
S3_CONNECT_TIMEOUT_SECONDS = 2
S3_READ_TIMEOUT_SECONDS = 3
S3_MAX_ATTEMPTS = 3  # in all, the first included (botocore: total_max_attempts)


def check_name(kind: str, value: str) -> str:
    """Return `value` if it is a safe model, version, alias or file name; raise otherwise."""
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise NotInStore(
            f"{kind} {value!s:.80} is not valid: use letters, digits, '.', '_' or '-' (at most 128).",
        )
    return value


def make_version(created_at: datetime, model_sha256: str) -> str:
    """A sortable, content-derived version id: `YYYYMMDDTHHMMSSZ-<first 8 hex of the model's sha256>`."""
    return f"{created_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{model_sha256[:8]}"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Alias:
    """Where an alias points, and where it pointed before the last move."""

    version: str
    updated_at: str
    previous: str | None = None
    signature: dict[str, str] | None = None  # lambda_forest.signing.Signature.to_dict(), over the other fields

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"version": self.version, "updated_at": self.updated_at, "previous": self.previous}
        if self.signature is not None:
            body["signature"] = self.signature
        return json.dumps(body, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Alias:
        try:
            body = json.loads(data)
            signature = body.get("signature")
            return cls(
                str(body["version"]),
                str(body.get("updated_at", "")),
                body.get("previous"),
                signature if isinstance(signature, dict) else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError("An alias in the model store is malformed.", detail=repr(exc)) from None


# Signs an alias record: (model name, alias name, record) -> the signature's JSON object.
AliasSigner = Callable[[str, str, Alias], dict[str, str]]


class _Missing(Exception):
    """A key the backend does not hold; turned into a precise NotInStore by the caller."""


class _Conflict(Exception):
    """A conditional write found the object not as expected; the caller says what that means."""


class ModelStore(ABC):
    """Versioned, immutable model artifacts and the aliases that point at them."""

    uri: str

    def connect(self) -> None:  # noqa: B027 - most backends have nothing to set up
        """Do the one-off set-up (an AWS client) now, so time limits on reads bound only the reads."""

    # Backend primitives: keys are relative to the store root and use '/'.

    @abstractmethod
    def _read(self, key: str) -> bytes:
        """The object's bytes; raise `_Missing` if absent."""

    @abstractmethod
    def _read_if_changed(self, key: str, tag: str | None) -> tuple[bytes, str] | None:
        """(bytes, tag) when the object differs from `tag`; None when unchanged; `_Missing` if absent."""

    @abstractmethod
    def _create(self, key: str, data: bytes) -> None:
        """Write a new object; raise `_Conflict` if the key already exists."""

    @abstractmethod
    def _replace(self, key: str, data: bytes, tag: str | None) -> None:
        """Replace the object whose tag is `tag` (None: that does not exist yet) atomically.

        Raise `_Conflict` if the object changed meanwhile, so a concurrent writer's update is never lost.
        """

    @abstractmethod
    def _list(self, prefix: str) -> list[str]:
        """Every key under `prefix`."""

    # The layout.

    @staticmethod
    def version_key(name: str, version: str, filename: str) -> str:
        check_name("model name", name)
        check_name("version", version)
        check_name("file name", filename)
        return f"{name}/versions/{version}/{filename}"

    @staticmethod
    def alias_key(name: str, alias: str) -> str:
        return f"{check_name('model name', name)}/aliases/{check_name('alias', alias)}.json"

    # Versions.

    def publish(
        self, name: str, version: str, files: dict[str, bytes], manifest: bytes, signature: bytes | None = None
    ) -> None:
        """Write a new version: its files first, then its signature, the manifest last, never over an existing one.

        A version is complete once its manifest exists; a publish that fails part way leaves no
        manifest, so no reader takes the partial version for a model.
        """
        if version in self.list_versions(name):
            raise VersionExists(f"Version {version} of {name} already exists; versions are immutable.")
        signed = {SIGNATURE_FILE: signature} if signature is not None else {}
        try:
            for filename, data in {**files, **signed, MANIFEST_FILE: manifest}.items():
                self._create(self.version_key(name, version, filename), data)
        except _Conflict:
            raise VersionExists(
                f"Version {version} of {name} already holds files; versions are immutable.",
            ) from None

    def read_file(self, name: str, version: str, filename: str) -> bytes:
        try:
            return self._read(self.version_key(name, version, filename))
        except _Missing:
            raise NotInStore(
                f"Version {version} of model {name} has no {filename}.",
                detail=f"store {self.uri}",
            ) from None

    def read_signature(self, name: str, version: str) -> bytes | None:
        """The version's manifest signature, or None when it has none."""
        try:
            return self._read(self.version_key(name, version, SIGNATURE_FILE))
        except _Missing:
            return None

    def add_signature(self, name: str, version: str, signature: bytes) -> None:
        """Sign an existing, unsigned version (the only file ever added to a published version)."""
        self.read_manifest(name, version)  # raises NotInStore for a version that does not exist
        try:
            self._create(self.version_key(name, version, SIGNATURE_FILE), signature)
        except _Conflict:
            raise VersionExists(f"Version {version} of {name} is already signed; signatures are immutable.") from None

    def read_manifest(self, name: str, version: str) -> bytes:
        try:
            return self._read(self.version_key(name, version, MANIFEST_FILE))
        except _Missing:
            raise NotInStore(
                f"Model {name} has no published version {version}.",
                detail=f"store {self.uri}; `python -m training list --name {name}` shows the versions",
            ) from None

    def list_versions(self, name: str) -> list[str]:
        """Complete versions (those with a manifest), newest first."""
        prefix = f"{check_name('model name', name)}/versions/"
        versions = {
            key[len(prefix) :].split("/", 1)[0] for key in self._list(prefix) if key.endswith("/" + MANIFEST_FILE)
        }
        return sorted(versions, reverse=True)

    def list_models(self) -> list[str]:
        return sorted({key.split("/", 1)[0] for key in self._list("") if "/versions/" in key})

    # Aliases.

    def read_alias(self, name: str, alias: str) -> Alias | None:
        return self._read_alias_and_tag(name, alias)[0]

    def read_alias_if_changed(self, name: str, alias: str, tag: str | None) -> tuple[Alias, str] | None:
        """The alias and its new tag when it changed since `tag`, None when unchanged.

        On S3 this is a conditional GET (If-None-Match), so an unchanged alias costs no body transfer.
        """
        try:
            changed = self._read_if_changed(self.alias_key(name, alias), tag)
        except _Missing:
            raise NotInStore(
                f"No version of model {name} is published under alias {alias} yet.",
                detail=f"store {self.uri}; publish with `python -m training train --promote`",
            ) from None
        if changed is None:
            return None
        data, new_tag = changed
        return Alias.from_json(data), new_tag

    def list_aliases(self, name: str) -> dict[str, Alias]:
        prefix = f"{check_name('model name', name)}/aliases/"
        names = [key[len(prefix) :].removesuffix(".json") for key in self._list(prefix) if key.endswith(".json")]
        aliases = {alias: self.read_alias(name, alias) for alias in sorted(names)}
        return {alias: record for alias, record in aliases.items() if record is not None}

    def set_alias(self, name: str, alias: str, version: str, sign: AliasSigner | None = None) -> Alias:
        """Point `alias` at an existing `version`, remembering where it pointed before.

        `sign(name, alias, record)` returns the record's signature, written in the same object.
        """
        self.read_manifest(name, version)  # raises NotInStore for a version that does not exist
        current, tag = self._read_alias_and_tag(name, alias)
        return self._move_alias(name, alias, version, current, tag, sign)

    def rollback(self, name: str, alias: str, sign: AliasSigner | None = None) -> Alias:
        """Point `alias` back at the version it pointed to before its last move."""
        current, tag = self._read_alias_and_tag(name, alias)
        if current is None:
            raise NotInStore(f"Model {name} has no alias {alias} to roll back.")
        if not current.previous:
            raise NotInStore(
                f"Alias {alias} of {name} has no previous version to roll back to.",
                detail=f"it points at {current.version}; use `promote VERSION` to choose one",
            )
        return self._move_alias(name, alias, current.previous, current, tag, sign)

    def _read_alias_and_tag(self, name: str, alias: str) -> tuple[Alias | None, str | None]:
        try:
            data, tag = self._read_if_changed(self.alias_key(name, alias), None)  # type: ignore[misc]
        except _Missing:
            return None, None
        return Alias.from_json(data), tag

    def _move_alias(
        self, name: str, alias: str, version: str, current: Alias | None, tag: str | None, sign: AliasSigner | None
    ) -> Alias:
        if current is None:
            previous = None
        elif current.version == version:
            previous = current.previous
        else:
            previous = current.version
        moved = Alias(version=version, updated_at=utc_now(), previous=previous)
        if sign is not None:
            moved = dataclasses.replace(moved, signature=sign(name, alias, moved))
        try:
            self._replace(self.alias_key(name, alias), moved.to_json(), tag)
        except _Conflict:
            raise AliasMoved(
                f"Alias {alias} of {name} was moved by someone else meanwhile; nothing was changed. "
                "Check `list` and run the command again."
            ) from None
        return moved

    # Captured predictions and labels: immutable objects of JSON lines, one directory per UTC hour.

    @staticmethod
    def records_prefix(name: str, kind: str) -> str:
        if kind not in RECORD_KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        return f"{check_name('model name', name)}/{kind}/"

    def write_records(self, name: str, kind: str, lines: list[bytes], when: datetime | None = None) -> str:
        """Write `lines` as one new object under the hour of `when` (now); returns its key."""
        when = (when or datetime.now(UTC)).astimezone(UTC)
        key = f"{self.records_prefix(name, kind)}{when:%Y/%m/%d/%H}/{when:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl"
        try:
            self._create(key, b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
        except _Conflict:  # a 48-bit random suffix: only a broken random source gets here
            raise StoreError(f"A {kind} file named {key} already exists.") from None
        return key

    def list_records(
        self, name: str, kind: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[str]:
        """Keys of the record files whose hour overlaps [since, until], oldest first.

        Only the days in the window are listed, so a short window over a long history stays cheap.
        """
        prefix = self.records_prefix(name, kind)
        if since is None:
            keys = self._list(prefix)
        else:
            since = since.astimezone(UTC)
            last_day = (until or datetime.now(UTC)).astimezone(UTC).date()
            day, keys = since.date(), []
            while day <= last_day:
                keys.extend(self._list(f"{prefix}{day:%Y/%m/%d}/"))
                day += timedelta(days=1)
        first_hour = since.astimezone(UTC).strftime("%Y/%m/%d/%H") if since else ""
        last_hour = until.astimezone(UTC).strftime("%Y/%m/%d/%H") if until else "9999"
        return sorted(key for key in keys if first_hour <= key[len(prefix) : len(prefix) + 13] <= last_hour)

    def read_records(self, key: str) -> bytes:
        """A record file's lines, gunzipped when Firehose compressed it."""
        try:
            data = self._read(key)
        except _Missing:
            raise NotInStore(f"The record file {key} is not in the store.", detail=f"store {self.uri}") from None
        return gzip.decompress(data) if data[:2] == _GZIP_MAGIC else data

    # Monitoring reports.

    def write_report(self, name: str, stamp: str, files: dict[str, bytes]) -> list[str]:
        """Write one monitoring run's files under reports/{stamp}/; returns their keys."""
        prefix = f"{check_name('model name', name)}/{REPORTS}/{check_name('report', stamp)}/"
        keys = []
        for filename, data in files.items():
            key = prefix + check_name("file name", filename)
            try:
                self._create(key, data)
            except _Conflict:
                raise StoreError(f"A report {key} already exists.") from None
            keys.append(key)
        return keys

    def location(self, key: str) -> str:
        """Where a key is, for people: a path or an s3:// URI."""
        return f"{self.uri.rstrip('/')}/{key}"


class LocalStore(ModelStore):
    """A store in a local directory; the default for local work and tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = str(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise _Missing(key) from None
        except OSError as exc:
            raise StoreUnreachable("The model store cannot be read.", detail=f"{self.uri}: {exc}") from None

    def _read_if_changed(self, key: str, tag: str | None) -> tuple[bytes, str] | None:
        new_tag = self._tag(self._path(key))
        if new_tag is None:
            raise _Missing(key)
        return None if new_tag == tag else (self._read(key), new_tag)

    def _create(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            # The name appears only with complete contents, and os.link refuses to replace a file.
            temporary = self._write_beside(path, data)
            try:
                os.link(temporary, path)
            finally:
                os.unlink(temporary)
        except FileExistsError:
            raise _Conflict(key) from None
        except OSError as exc:
            raise StoreAccessDenied("The model store cannot be written.", detail=f"{self.uri}: {exc}") from None

    def _replace(self, key: str, data: bytes, tag: str | None) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The lock makes check-then-replace atomic among writers on this machine.
            with open(path.parent / f".{path.name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if self._tag(path) != tag:
                    raise _Conflict(key)
                os.replace(self._write_beside(path, data), path)
        except OSError as exc:
            raise StoreAccessDenied("The model store cannot be written.", detail=f"{self.uri}: {exc}") from None

    @staticmethod
    def _tag(path: Path) -> str | None:
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return f"{stat.st_mtime_ns}-{stat.st_size}-{stat.st_ino}"

    @staticmethod
    def _write_beside(path: Path, data: bytes) -> str:
        """Write `data` to a new temporary file in `path`'s directory; returns its name."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as temporary:
            temporary.write(data)
        return temporary.name

    def _list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return [
            path.relative_to(self.root).as_posix()
            for path in base.rglob("*")
            if path.is_file() and not path.name.startswith(".")  # temporary and lock files
        ]


class S3Store(ModelStore):
    """A store under `s3://bucket/prefix`. Writes of a version are conditional (If-None-Match: *)."""

    def __init__(self, bucket: str, prefix: str, client: BaseClient | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client

    @property
    def client(self) -> BaseClient:
        if self._client is None:
            self._client = make_s3_client()
        return self._client

    def connect(self) -> None:
        self.client  # noqa: B018 - creating it imports boto3 and builds the client: CPU, not waiting

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _read(self, key: str) -> bytes:
        with self._translate(key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def _read_if_changed(self, key: str, tag: str | None) -> tuple[bytes, str] | None:
        conditional = {"IfNoneMatch": tag} if tag else {}
        with self._translate(key, not_modified_ok=True):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **conditional)
            return response["Body"].read(), response["ETag"]
        return None  # 304 Not Modified

    def _create(self, key: str, data: bytes) -> None:
        self._put(key, data, IfNoneMatch="*")  # S3 refuses (412) to overwrite: versions stay immutable

    def _replace(self, key: str, data: bytes, tag: str | None) -> None:
        condition = {"IfMatch": tag} if tag else {"IfNoneMatch": "*"}
        self._put(key, data, ContentType="application/json", **condition)

    def _put(self, key: str, data: bytes, **options: str) -> None:
        with self._translate(key):
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ChecksumAlgorithm="SHA256", **options
            )

    def _list(self, prefix: str) -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        with self._translate(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root + prefix)
            for page in pages:
                keys.extend(item["Key"][len(root) :] for item in page.get("Contents", []))
        return keys

    def _translate(self, key: str, not_modified_ok: bool = False) -> _S3Errors:
        return _S3Errors(self.uri, self.bucket, key, not_modified_ok)


class _S3Errors:
    """Context manager that turns botocore failures into lambda-forest errors (the adapter boundary).

    `root` and `key` name the object in messages; `noun` says what it is ("model store", "batch input").
    """

    def __init__(
        self, root: str, bucket: str, key: str, not_modified_ok: bool = False, noun: str = "model store"
    ) -> None:
        self.root = root
        self.bucket = bucket
        self.key = key
        self.not_modified_ok = not_modified_ok
        self.noun = noun

    def __enter__(self) -> _S3Errors:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"{self.root}/{self.key}"
        if isinstance(exc, OutOfTime):
            raise StoreUnreachable(f"The {self.noun} did not answer in time.", detail=f"{where}: {exc}") from None
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 304 and self.not_modified_ok:
                return True
            if code in ("NoSuchKey", "404", "NotFound"):
                raise _Missing(self.key) from None
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                raise _Conflict(self.key) from None
            if code == "NoSuchBucket":
                raise StoreAccessDenied(
                    f"The {self.noun}'s bucket does not exist.",
                    detail=f"bucket {self.bucket!r} ({where}): create it or check the URI",
                ) from None
            if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreAccessDenied(
                    f"Access to the {self.noun} was refused.",
                    detail=f"{where}: {code}; check the credentials and the bucket policy",
                ) from None
            raise StoreUnreachable(f"The {self.noun} returned an error.", detail=f"{where}: {code}") from None
        if isinstance(exc, NoCredentialsError):
            raise StoreAccessDenied(
                f"No AWS credentials were found for the {self.noun}.",
                detail=f"{where}: configure credentials (aws configure, AWS_PROFILE or env vars)",
            ) from None
        if isinstance(exc, BotoCoreError):
            raise StoreUnreachable(
                f"The {self.noun} cannot be reached.", detail=f"{where}: {type(exc).__name__}: {exc}"
            ) from None
        return False


# Other S3 adapters (the batch scorer's input and output) share this translation of AWS errors.
ObjectMissing = _Missing
WriteConflict = _Conflict
S3Errors = _S3Errors


def make_s3_client(max_attempts: int = S3_MAX_ATTEMPTS, read_timeout: float = S3_READ_TIMEOUT_SECONDS) -> BaseClient:
    """An S3 client with explicit timeouts and standard retries.

    The endpoint honours AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (boto3 reads them), which is how local
    runs and tests point at moto's server.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
    )
    return bounded(boto3.client("s3", config=config))


def open_store(uri: str) -> ModelStore:
    """The store at `uri`: `s3://bucket/prefix`, `file:///path`, or a plain local path."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(f"The store URI {uri!r} names no bucket; expected s3://BUCKET/PREFIX.")
        return S3Store(bucket, prefix)
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"The store URI {uri!r} is not supported; expected s3://BUCKET/PREFIX or a local directory.")
    return LocalStore(Path(uri.removeprefix("file://")).expanduser().resolve())
