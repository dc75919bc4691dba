"""Where batch scoring reads and writes: an input file read by byte range, and an output location.

Both are a local path or S3 (`s3://bucket/key`, `s3://bucket/prefix`). S3 failures become lambda-forest
errors here, through the model store's translation (`lambda_forest.store.S3Errors`).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lambda_forest.errors import ConfigError, InvalidInput
from lambda_forest.store import ObjectMissing, S3Errors, WriteConflict, make_s3_client

if TYPE_CHECKING:
    from botocore.client import BaseClient

# Batch workers make many large reads under load: S3 answers 503 SlowDown at times; retry it more.
BATCH_S3_MAX_ATTEMPTS = 8
BATCH_S3_READ_TIMEOUT_SECONDS = 60
READ_BLOCK_BYTES = 8 * 2**20  # S3's advice for ranged GETs: 8-16 MB


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigError(f"{uri!r} names no bucket; expected s3://BUCKET/KEY.")
    return bucket, key.strip("/")


def batch_s3_client() -> BaseClient:
    return make_s3_client(max_attempts=BATCH_S3_MAX_ATTEMPTS, read_timeout=BATCH_S3_READ_TIMEOUT_SECONDS)


class InputFile(ABC):
    """A file read by byte ranges; `fingerprint` changes whenever its content does."""

    uri: str
    size: int
    fingerprint: str

    @abstractmethod
    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end)."""

    def stream(self, start: int, end: int) -> io.BufferedReader:
        """Bytes [start, end) as a buffered stream, fetched a block at a time."""
        return io.BufferedReader(_RangeStream(self, start, end), buffer_size=READ_BLOCK_BYTES)


class _RangeStream(io.RawIOBase):
    def __init__(self, source: InputFile, start: int, end: int) -> None:
        self.source = source
        self.position = start
        self.end = end

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self.end - self.position, READ_BLOCK_BYTES)
        if wanted <= 0:
            return 0
        data = self.source.read(self.position, self.position + wanted)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


class LocalInput(InputFile):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.uri = str(path)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise InvalidInput(f"The input file {path} does not exist.") from None
        if not path.is_file():
            raise InvalidInput(f"The input {path} is not a file.")
        self.size = stat.st_size
        self.fingerprint = f"{stat.st_size}-{stat.st_mtime_ns}"

    def read(self, start: int, end: int) -> bytes:
        with self.path.open("rb") as file:
            file.seek(start)
            return file.read(end - start)


class S3Input(InputFile):
    def __init__(self, uri: str, client: BaseClient | None = None) -> None:
        self.uri = uri
        self.bucket, self.key = split_s3_uri(uri)
        self.client = client or batch_s3_client()
        with self._errors():
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
        self.size = int(head["ContentLength"])
        self.fingerprint = head["ETag"].strip('"')

    def read(self, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        with self._errors():
            # IfMatch: a file replaced mid-run is refused (412), never mixed with the planned one.
            response = self.client.get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{end - 1}", IfMatch=f'"{self.fingerprint}"'
            )
            return response["Body"].read()

    def _errors(self) -> _InputErrors:
        return _InputErrors(self.uri, S3Errors(f"s3://{self.bucket}", self.bucket, self.key, noun="batch input"))


class _InputErrors:
    """S3 errors on the input: a missing or replaced object is the caller's to fix (InvalidInput)."""

    def __init__(self, uri: str, translate: Any) -> None:
        self.uri = uri
        self.translate = translate

    def __enter__(self) -> _InputErrors:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        try:
            return self.translate.__exit__(exc_type, exc, tb)
        except ObjectMissing:
            raise InvalidInput(f"The input {self.uri} does not exist.") from None
        except WriteConflict:  # If-Match failed: 412
            raise InvalidInput(f"The input {self.uri} changed while it was being scored; start again.") from None


def open_input(uri: str, client: BaseClient | None = None) -> InputFile:
    if uri.startswith("s3://"):
        return S3Input(uri, client)
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"The input {uri!r} is not supported; expected s3://BUCKET/KEY or a local file.")
    return LocalInput(Path(uri.removeprefix("file://")).expanduser().resolve())


class OutputLocation(ABC):
    """A directory of named objects (names use '/'); objects carry a few string metadata values."""

    uri: str

    @abstractmethod
    def put(self, name: str, data: bytes, metadata: dict[str, str] | None = None) -> None: ...

    @abstractmethod
    def put_file(self, name: str, path: Path, metadata: dict[str, str] | None = None) -> None: ...

    @abstractmethod
    def get(self, name: str) -> bytes | None:
        """The object's bytes, None if absent."""

    @abstractmethod
    def metadata(self, name: str) -> dict[str, str] | None:
        """The object's metadata, None if absent."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Names under `prefix`, sorted."""

    def child(self, name: str) -> str:
        return f"{self.uri.rstrip('/')}/{name}"


class LocalOutput(OutputLocation):
    """A local directory; metadata sits in a hidden sidecar file beside each object."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = str(root)

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*name.split("/"))

    def _sidecar(self, name: str) -> Path:
        path = self._path(name)
        return path.with_name(f".{path.name}.meta")

    def put(self, name: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        with tempfile.NamedTemporaryFile(delete=False) as temporary:
            temporary.write(data)
        try:
            self.put_file(name, Path(temporary.name), metadata)
        finally:
            Path(temporary.name).unlink(missing_ok=True)

    def put_file(self, name: str, path: Path, metadata: dict[str, str] | None = None) -> None:
        import json

        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Metadata first, then the object appears whole (a rename): a reader never sees half a part.
        self._sidecar(name).write_text(json.dumps(metadata or {}))
        staged = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(path, staged)
        os.replace(staged, target)

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def metadata(self, name: str) -> dict[str, str] | None:
        import json

        if not self._path(name).is_file():
            return None
        try:
            return json.loads(self._sidecar(name).read_text())
        except FileNotFoundError:
            return {}

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in base.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )


class S3Output(OutputLocation):
    def __init__(self, uri: str, client: BaseClient | None = None) -> None:
        self.bucket, self.prefix = split_s3_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.client = client or batch_s3_client()

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _errors(self, name: str) -> Any:
        return S3Errors(self.uri, self.bucket, name, noun="batch output")

    def put(self, name: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        with self._errors(name):
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data, Metadata=metadata or {})

    def put_file(self, name: str, path: Path, metadata: dict[str, str] | None = None) -> None:
        with self._errors(name):  # multipart above 8 MB, by boto3's transfer manager
            self.client.upload_file(str(path), self.bucket, self._key(name), ExtraArgs={"Metadata": metadata or {}})

    def get(self, name: str) -> bytes | None:
        try:
            with self._errors(name):
                return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except ObjectMissing:
            return None

    def metadata(self, name: str) -> dict[str, str] | None:
        try:
            with self._errors(name):
                return self.client.head_object(Bucket=self.bucket, Key=self._key(name))["Metadata"]
        except ObjectMissing:
            return None

    def list(self, prefix: str) -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        names: list[str] = []
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root + prefix)
            for page in pages:
                names.extend(item["Key"][len(root) :] for item in page.get("Contents", []))
        return sorted(names)


def open_output(uri: str, client: BaseClient | None = None) -> OutputLocation:
    if uri.startswith("s3://"):
        return S3Output(uri, client)
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"The output {uri!r} is not supported; expected s3://BUCKET/PREFIX or a local directory.")
    return LocalOutput(Path(uri.removeprefix("file://")).expanduser().resolve())
