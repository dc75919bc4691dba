"""Shared fixtures: fake AWS, tiny models trained on the fly, stores of both kinds, the handler."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local_lambda.events import LocalContext, proxy_event

# Before anything imports boto3 or the function: fake credentials, no profile, no real endpoint.
for _key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_key, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_SERVICE_NAME="predict",
    POWERTOOLS_METRICS_NAMESPACE="LambdaForestTests",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_LOG_LEVEL="WARNING",
    MODEL_STORE="/nonexistent/lambda-forest-store",
    MODEL_NAME="iris",
    BATCH_INPUT_PREFIX="s3://lambda-forest-test-batch/input",
    BATCH_OUTPUT_PREFIX="s3://lambda-forest-test-batch/output",
)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EVENTS = ROOT / "events"
BUCKET = "lambda-forest-test-models"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    """Unit tests never leave the machine: a connection to anything but loopback fails at once."""
    if isinstance(address, tuple) and address[0] not in LOOPBACK:
        raise ConnectionRefusedError(f"tests may not connect to {address[0]}")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only  # type: ignore[method-assign]


# Models: trained once per session, small enough to be quick.


@pytest.fixture(scope="session")
def trained_iris() -> Any:
    from training.data import load_builtin
    from training.forest import ForestParams, train

    return train(load_builtin("iris"), ForestParams(n_estimators=15, n_jobs=1), progress=lambda _: None)


@pytest.fixture(scope="session")
def trained_diabetes() -> Any:
    from training.data import load_builtin
    from training.forest import ForestParams, train

    return train(load_builtin("diabetes"), ForestParams(n_estimators=10, n_jobs=1), progress=lambda _: None)


def with_missing_values(rows: int, features: int, trees: int) -> tuple[Any, Any]:
    """A classifier fitted on data with 20% missing values (NaN), and that data."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, features))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    X[rng.random(X.shape) < 0.2] = np.nan
    return RandomForestClassifier(n_estimators=trees, random_state=0).fit(X, y), X


# A mixed table (text and integer categories, blanks, an id, two targets) and the models trained on it.

MIXED_ROWS = 300


def mixed_frame(seed: int = 0) -> Any:
    """A loans-like table: text and integer categories, blanks in numeric and text columns, an id, two targets."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "west"], MIXED_ROWS).astype(object)
    region[rng.random(MIXED_ROWS) < 0.1] = None
    income = rng.normal(50_000, 15_000, MIXED_ROWS).round(2)
    employment = rng.choice(["contract", "permanent", "self"], MIXED_ROWS).astype(object)
    employment[rng.random(MIXED_ROWS) < 0.1] = None
    cylinders = rng.choice([4, 6, 8], MIXED_ROWS)
    owner = rng.random(MIXED_ROWS) < 0.5
    score = (income / 10_000 + (region == "south") * 2 - (employment == "contract") * 1.5 + cylinders / 4).astype(float)
    income[rng.random(MIXED_ROWS) < 0.1] = np.nan
    outcome = np.where(score + rng.normal(0, 0.5, MIXED_ROWS) > np.nanmedian(score), "repaid", "defaulted").astype(
        object
    )
    outcome[:5] = None  # rows without a target: dropped and counted
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{index:05d}" for index in range(MIXED_ROWS)],
            "region": region,
            "income": income,
            "employment": employment,
            "cylinders": cylinders,
            "owner": owner,
            "outcome": outcome,
            "amount": (score * 1000 + rng.normal(0, 100, MIXED_ROWS)).round(2),
        }
    )
    return pd.concat([frame, frame.iloc[[10, 11]]], ignore_index=True)  # two duplicate rows


@pytest.fixture(scope="session")
def mixed_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tables") / "loans.csv"
    mixed_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def trained_loans(mixed_csv: Path) -> Any:
    from training.forest import ForestParams, train
    from training.tables import TableOptions, load_table

    data = load_table(str(mixed_csv), "outcome", options=TableOptions(categorical=("cylinders",), drop=("amount",)))
    return train(data, ForestParams(n_estimators=12, n_jobs=1), progress=lambda _: None)


@pytest.fixture(scope="session")
def trained_amounts(mixed_csv: Path) -> Any:
    from training.forest import ForestParams, train
    from training.tables import TableOptions, load_table

    data = load_table(str(mixed_csv), "amount", options=TableOptions(categorical=("cylinders",), drop=("outcome",)))
    return train(data, ForestParams(n_estimators=8, max_depth=8, n_jobs=1), progress=lambda _: None)


def data_scientists_model(store: Any, manifest: Any) -> Any:
    """model.joblib as a data scientist loads it (one thread, so its sums run in a fixed order)."""
    import io

    import joblib

    model = joblib.load(io.BytesIO(store.read_file(manifest.name, manifest.version, "model.joblib")))
    model[-1].n_jobs = None
    return model


def request_rows(trained: Any) -> list[Any]:
    """Hold-out rows as a client sends them, list- and object-shaped, plus unknown categories and nulls."""
    from training.forest import json_rows

    schema = trained.data.features
    rows: list[Any] = json_rows(trained.holdout_X, schema)
    rows += [
        ["east", 51_000.0, "retired", 6, False],
        [None, None, None, None, None],
        ["north", 48_000.5, "permanent", 12, True],
        {"region": "south", "income": 70_000, "employment": "self", "cylinders": "8", "owner": True},
    ]
    return rows


# Stores.


@pytest.fixture
def local_store(tmp_path: Path) -> Any:
    from lambda_forest.store import LocalStore

    return LocalStore(tmp_path / "model-store")


@pytest.fixture
def s3_store() -> Iterator[Any]:
    from moto import mock_aws

    from lambda_forest.store import S3Store, make_s3_client

    with mock_aws():
        client = make_s3_client()
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield S3Store(BUCKET, "models", client)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """moto's S3 server on a loopback port that can be stopped and started again (its data survives)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A running moto server that boto3 (and the emulated function) reach through AWS_ENDPOINT_URL_S3."""
    server = MotoServer()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def served_s3_store(moto_server: MotoServer) -> Any:
    """An S3 store in a new bucket on the moto server (the server's data outlives one test)."""
    from lambda_forest.store import S3Store, make_s3_client

    bucket = f"lambda-forest-{uuid.uuid4().hex[:12]}"
    client = make_s3_client()
    client.create_bucket(Bucket=bucket)
    return S3Store(bucket, "models", client)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_store")


def publish_model(store: Any, trained: Any, name: str = "iris", promote: bool = True, compile: bool = True) -> Any:
    """Publish a trained model (with its compiled forest unless `compile` is false); returns its manifest."""
    from training.forest import build_artifact, publish

    manifest, files = build_artifact(name, trained, compile=compile)
    publish(store, manifest, files)
    if promote:
        store.set_alias(name, "live", manifest.version)
    return manifest


@pytest.fixture
def published_iris(local_store: Any, trained_iris: Any) -> Any:
    return publish_model(local_store, trained_iris)


# The handler, invoked in-process with API Gateway REST proxy events.


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def api_event(method: str, path: str, body: Any = None, *, raw: str | None = None, b64: bool = False) -> dict[str, Any]:
    """An API Gateway REST proxy event with a JSON body (`raw` text as is; `b64` base64-encodes it)."""
    text = raw if raw is not None else (None if body is None else json.dumps(body))
    event = proxy_event(method, path, {"Content-Type": "application/json"}, (text or "").encode())
    if b64 and text is not None:
        event.update(body=base64.b64encode(text.encode()).decode(), isBase64Encoded=True)
    return event


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Callable[[dict[str, Any]], Reply]]:
    """`handler(store, name=..., **settings)` points the function at a store and returns `invoke(event)`.

    The lines the function would log for capture (predictions and labels) are kept in `invoke.lines`.
    """
    import random

    import app
    from lambda_forest.config import FunctionConfig

    def configure(store: Any, name: str = "iris", **settings: Any) -> Callable[[dict[str, Any]], Reply]:
        config = FunctionConfig(model_store=store.uri, model_name=name, **settings)
        cache = app.build_model_cache(config, store_opener=lambda _uri: store)
        capturer = app.build_capturer(config)
        lines: list[bytes] = []
        capturer.write, capturer.rng = lines.append, random.Random(0)
        monkeypatch.setattr(app, "config", config)
        monkeypatch.setattr(app, "models", cache)
        monkeypatch.setattr(app, "capturer", capturer)

        def invoke(event: dict[str, Any]) -> Reply:
            response = app.lambda_handler(event, LocalContext())
            headers = {key.lower(): value for key, value in (response.get("headers") or {}).items()}
            for key, values in (response.get("multiValueHeaders") or {}).items():
                headers[key.lower()] = ", ".join(values)
            body = json.loads(response["body"]) if response.get("body") else None
            return Reply(response["statusCode"], headers, body)

        invoke.lines = lines  # type: ignore[attr-defined]
        return invoke

    return configure


# Tools of the dev environment, and the `sam build` output (built once per session).


def run_tool(*command: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`timeout` caps a hung tool; it is no timing assertion (`sam build` of every layer took 4 min at load 15)."""
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` into a fresh directory, as `make build` runs it on this machine."""
    from local_lambda.emulator import host_architecture

    target = tmp_path_factory.mktemp("sam") / "build"
    # Every layer (full, lean, the native walker): minutes on a machine shared with other builds.
    result = run_tool(
        "sam",
        "build",
        "--build-dir",
        str(target),
        "--parameter-overrides",
        f"Architecture={host_architecture()}",
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return target
