"""The `sam build` output: its size, its pins, and the function answering under the Runtime Interface
Emulator and through the local HTTP API, exactly as the README's commands run it."""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lambda_forest.front_doors import FRONT_DOORS, REST_API
from lambda_forest.manifest import Manifest
from lambda_forest.native import LIBRARY_FILE
from local_lambda.emulator import Emulator, host_architecture, layer_dir, local_environment
from local_lambda.http_api import make_server
from tests.conftest import EVENTS, data_scientists_model, free_port, load_event, publish_model, request_rows
from tests.test_api import EXPECTED
from tests.test_template import run_tool

pytestmark = pytest.mark.slow

LAMBDA_UNZIPPED_LIMIT = 262_144_000  # 250 MB: function plus all its layers
LEAN_LAYER_TARGET = 60_000_000
LAYERS = {"arm64": "ForestLayerArm64", "x86_64": "ForestLayerX8664"}
LEAN_LAYERS = {"arm64": "LeanLayerArm64", "x86_64": "LeanLayerX8664"}


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def iris_store(tmp_path_factory: pytest.TempPathFactory, trained_iris: Any) -> Any:
    from lambda_forest.store import LocalStore

    store = LocalStore(tmp_path_factory.mktemp("store"))
    publish_model(store, trained_iris)
    return store


@pytest.fixture(scope="module")
def emulator(build_dir: Path, iris_store: Any) -> Iterator[Emulator]:
    with Emulator(local_environment(iris_store.uri, "iris"), build_dir=build_dir) as running:
        yield running


def test_function_and_layer_fit_lambdas_limit(build_dir: Path) -> None:
    function = tree_bytes(build_dir / "PredictFunction")
    for architecture, layer_name in LAYERS.items():
        layer = tree_bytes(build_dir / layer_name)
        total = function + layer
        print(
            f"\n{architecture}: layer {layer / 1e6:.1f} MB + function {function / 1e6:.2f} MB = "
            f"{total / 1e6:.1f} MB of {LAMBDA_UNZIPPED_LIMIT / 1e6:.1f} MB"
        )
        assert total < LAMBDA_UNZIPPED_LIMIT


def test_lean_layers_are_under_60_mb(build_dir: Path) -> None:
    for architecture, layer_name in LEAN_LAYERS.items():
        size = tree_bytes(build_dir / layer_name)
        print(f"\n{architecture}: lean layer {size / 1e6:.1f} MB")
        assert size < LEAN_LAYER_TARGET
        for unpickler in ("sklearn", "joblib"):  # what a pickled forest needs: the lean layer cannot load one
            assert not (build_dir / layer_name / "python" / unpickler).exists(), unpickler


def test_lean_layer_serves_a_compiled_model_and_refuses_one_without(
    build_dir: Path, iris_store: Any, trained_iris: Any
) -> None:
    publish_model(iris_store, trained_iris, name="iris-joblib", compile=False)
    with Emulator(local_environment(iris_store.uri, "iris"), build_dir=build_dir, lean=True) as lean:
        response = lean.invoke(load_event("predict.json"))
        logs = lean.logs()
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["predictions"] == ["setosa", "virginica"]
    assert '"walk":"native"' in logs
    pickles = local_environment(iris_store.uri, "iris-joblib", ALLOW_PICKLE="true")
    with Emulator(pickles, build_dir=build_dir, lean=True) as lean:
        response = lean.invoke(load_event("predict.json"))
    assert response["statusCode"] == 503
    assert "LayerVariant=full" in json.loads(response["body"])["error"]["message"]


def test_full_layer_unpickles_only_with_allow_pickle(build_dir: Path, iris_store: Any, trained_iris: Any) -> None:
    publish_model(iris_store, trained_iris, name="iris-pickled", compile=False)
    for allow, status in (("false", 503), ("true", 200)):
        environment = local_environment(iris_store.uri, "iris-pickled", ALLOW_PICKLE=allow)
        with Emulator(environment, build_dir=build_dir) as running:
            response = running.invoke(load_event("predict.json"))
        assert response["statusCode"] == status, response
    assert json.loads(response["body"])["predictions"] == ["setosa", "virginica"]


def test_every_layer_carries_the_native_walker_for_its_architecture(build_dir: Path) -> None:
    machine = {"x86_64": b"\x3e\x00", "arm64": b"\xb7\x00"}  # ELF e_machine: EM_X86_64, EM_AARCH64
    for layers in (LAYERS, LEAN_LAYERS):
        layer = build_dir / layers[host_architecture()]
        library = (layer / "lib" / LIBRARY_FILE).read_bytes()
        assert library[:4] == b"\x7fELF" and library[18:20] == machine[host_architecture()]
    assert not list((build_dir / "PredictFunction").rglob("*.so"))  # the function never ships this host's build


def test_layer_pins_the_versions_training_uses(build_dir: Path) -> None:
    layer = layer_dir(build_dir)
    for package in ("scikit-learn", "numpy", "scipy", "joblib"):
        [dist] = list(layer.glob(f"{package.replace('-', '_')}-*.dist-info"))
        assert dist.name.removesuffix(".dist-info").split("-")[1] == metadata.version(package), package


def test_layer_is_trimmed_and_precompiled(build_dir: Path) -> None:
    layer = layer_dir(build_dir)
    assert not list(layer.glob("*/tests"))
    assert not (layer / "botocore").exists()  # the Lambda runtime provides the AWS SDK
    assert list((layer / "sklearn" / "ensemble" / "__pycache__").glob("*.cpython-313.pyc"))
    assert list((build_dir / "PredictFunction" / "lambda_forest" / "__pycache__").glob("*.cpython-313.pyc"))


@pytest.mark.parametrize("event_file", sorted(EXPECTED))
def test_every_event_under_the_emulator(emulator: Emulator, event_file: str) -> None:
    status, code = EXPECTED[event_file]
    response = emulator.invoke(load_event(event_file))
    assert response["statusCode"] == status, response
    body = json.loads(response["body"])
    if code:
        assert body["error"]["code"] == code
    assert emulator.init_duration_ms() is not None


def test_emulated_predictions_equal_the_estimators(emulator: Emulator, trained_iris: Any) -> None:
    rows = trained_iris.holdout_X
    event = load_event("predict.json") | {"body": json.dumps({"instances": rows.tolist()}), "isBase64Encoded": False}
    body = json.loads(emulator.invoke(event)["body"])
    assert body["predictions"] == trained_iris.estimator.predict(rows).tolist()
    assert np.array_equal(np.array(body["probabilities"]), trained_iris.estimator.predict_proba(rows))
    assert '"walk":"native"' in emulator.logs()  # the layer's walker, found on LD_LIBRARY_PATH as on Lambda


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory: pytest.TempPathFactory, trained_loans: Any, trained_amounts: Any) -> Any:
    """The mixed table's classifier (loans) and regressor (amounts), published with their compiled forests."""
    from lambda_forest.store import LocalStore

    store = LocalStore(tmp_path_factory.mktemp("mixed"))
    publish_model(store, trained_loans, name="loans")
    publish_model(store, trained_amounts, name="amounts")
    return store


@pytest.mark.parametrize("name", ["loans", "amounts"], ids=["classifier", "regressor"])
def test_a_mixed_table_model_answers_exactly_through_the_built_function(
    build_dir: Path, mixed_store: Any, request: pytest.FixtureRequest, name: str
) -> None:
    from local_lambda.events import json_event
    from training.forest import table_of

    trained = request.getfixturevalue(f"trained_{name}")
    rows = request_rows(trained)  # list and object rows, unknown categories, nulls
    with Emulator(local_environment(mixed_store.uri, name), build_dir=build_dir) as running:
        response = running.invoke(json_event("POST", "/predict", {"instances": rows}))
        model_route = json.loads(running.invoke(json_event("GET", "/model", None))["body"])
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    schema = trained.data.features
    as_lists = [row if isinstance(row, list) else [row[feature] for feature in schema.names] for row in rows]
    raw = table_of(as_lists, schema, trained.holdout_X)
    (version,) = mixed_store.list_versions(name)
    model = data_scientists_model(mixed_store, Manifest.from_json(mixed_store.read_manifest(name, version)))
    assert body["predictions"] == model.predict(raw).tolist()  # bit for bit: floats compare exactly
    if name == "loans":
        assert np.array_equal(np.array(body["probabilities"]), model.predict_proba(raw))
    else:
        assert "probabilities" not in body
    assert {warning["feature"] for warning in body["warnings"]} == {"region", "employment", "cylinders"}
    assert [feature["type"] for feature in model_route["features"]][:2] == ["categorical", "numeric"]


def http(
    url: str, body: Any = None, method: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer_headers, payload = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, payload = error.code, dict(error.headers), error.read()
    return status, answer_headers, json.loads(payload) if payload else None


@contextmanager
def local_api(emulator: Emulator, door: str, cors_origins: tuple[str, ...] = ()) -> Iterator[str]:
    """The local HTTP API in front of `emulator` as `door`, on a free port; yields its base URL."""
    port = free_port()
    server = make_server(emulator, port=port, front_door=door, cors_origins=cors_origins)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_local_http_api_answers_a_real_client(emulator: Emulator, door: str) -> None:
    with local_api(emulator, door) as base:
        status, headers, body = http(f"{base}/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert (status, headers["Content-Type"]) == (200, "application/json")
        assert body["predictions"] == ["setosa"] and len(body["probabilities"][0]) == 3

        assert http(f"{base}/health")[2]["status"] == "ok"
        assert http(f"{base}/model")[2]["name"] == "iris"
        assert http(f"{base}/predict", b"{not json")[:1] == (400,)
        status, _, body = http(f"{base}/predict", {"instances": [[1, 2]]})
        assert (status, body["error"]["code"]) == (400, "invalid_instances")
        status, headers, body = http(f"{base}/predict", method="GET")
        assert (status, body["error"]["code"], headers["Allow"]) == (405, "method_not_allowed", "POST")
        assert http(f"{base}/nowhere")[0] == 404


ORIGIN = "https://app.example.com"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_browsers_get_cors_from_every_front_door(
    build_dir: Path, iris_store: Any, emulator: Emulator, door: str
) -> None:
    """The REST API's CORS is the function's (CORS_ALLOW_ORIGINS); the others' is the front door's own."""
    with ExitStack() as stack:
        if door == REST_API:
            env = local_environment(iris_store.uri, "iris", CORS_ALLOW_ORIGINS=ORIGIN)
            emulator = stack.enter_context(Emulator(env, build_dir=build_dir))
        base = stack.enter_context(local_api(emulator, door, cors_origins=(ORIGIN,)))
        status, headers, _ = http(f"{base}/predict", method="OPTIONS", headers=PREFLIGHT)
        assert (status, headers["Access-Control-Allow-Origin"]) == (204, ORIGIN)
        assert "POST" in headers["Access-Control-Allow-Methods"]
        status, headers, _ = http(f"{base}/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]}, headers={"Origin": ORIGIN})
        assert (status, headers["Access-Control-Allow-Origin"]) == (200, ORIGIN)
        status, headers, _ = http(f"{base}/health", headers={"Origin": "https://evil.example"})
        assert status == 200 and "Access-Control-Allow-Origin" not in headers


def test_emulated_function_reads_an_s3_store_on_motos_server(
    build_dir: Path, trained_iris: Any, served_s3_store: Any
) -> None:
    manifest = publish_model(served_s3_store, trained_iris)
    env = local_environment(served_s3_store.uri, "iris")
    with Emulator(env, build_dir=build_dir) as running:
        response = running.invoke(load_event("predict.json"))
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["model"]["version"] == manifest.version


def test_events_directory_is_what_the_readme_promises() -> None:
    assert (EVENTS / "predict.json").exists() and len(list(EVENTS.glob("*.json"))) == len(EXPECTED)


def test_front_door_samples_are_what_sam_local_generate_event_makes(tmp_path: Path) -> None:
    result = run_tool(sys.executable, "-m", "local_lambda.sample_events", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for made in sorted(tmp_path.glob("*.json")):
        assert json.loads(made.read_text()) == load_event(made.name), made.name


def test_the_local_loop_captures_takes_feedback_and_monitors(
    build_dir: Path, trained_iris: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make serve`, curl /predict and /feedback, then `python -m training monitor`, as the README shows."""
    from lambda_forest.store import CAPTURES, LABELS, LocalStore
    from local_lambda.shipper import RecordShipper
    from training.cli import main

    store = LocalStore(tmp_path / "store")
    publish_model(store, trained_iris)
    environment = local_environment(store.uri, "iris", CAPTURE_SAMPLE_RATE="1")
    with Emulator(environment, build_dir=build_dir) as running:
        assert running.log_path is not None
        shipper = RecordShipper(running.log_path, store, "iris")
        port = free_port()
        server = make_server(running, port=port, after_invoke=shipper.ship_or_warn)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        rows = trained_iris.holdout_X.tolist()
        try:
            ids = [f"row-{index}" for index in range(len(rows))]
            status, _, body = http(f"{base}/predict", {"instances": rows, "ids": ids})
            assert status == 200 and body["request_id"]
            truth = [str(label) for label in trained_iris.holdout_y]
            status, _, answer = http(
                f"{base}/feedback", {"labels": [{"id": i, "label": t} for i, t in zip(ids, truth, strict=True)]}
            )
            assert (status, answer["accepted"]) == (200, len(ids))
        finally:
            server.shutdown()
            server.server_close()
            shipper.stop()
    [capture] = store.list_records("iris", CAPTURES)
    assert json.loads(store.read_records(capture))["row_ids"] == ids
    assert len(store.list_records("iris", LABELS)) == 1
    html = tmp_path / "report.html"
    assert main(["--store", store.uri, "monitor", "--name", "iris", "--since", "1h", "--html", str(html)]) in (0, 1, 2)
    out = capsys.readouterr().out
    expected_accuracy = float(np.mean(np.array(body["predictions"]) == np.array(truth)))
    assert f"{len(ids)} labelled row(s): accuracy {expected_accuracy:.3f}" in out
    assert html.exists()


SCHEMATHESIS_CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(emulator: Emulator) -> None:
    """The contract: generated requests to every operation of GET /openapi.json (bounded: 5 examples per
    operation plus schemathesis' coverage cases, one seed) get no 5xx, and every answer matches the document."""
    with local_api(emulator, REST_API) as base:
        result = run_tool(
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{base}/openapi.json",
            "--url",
            base,
            "--checks",
            SCHEMATHESIS_CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "5",
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
            timeout=600,
        )
    summary = result.stdout[result.stdout.rfind("SUMMARY") :]
    print(summary)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_built_batch_functions_score_a_file_on_the_lean_layer(
    build_dir: Path, trained_iris: Any, served_s3_store: Any
) -> None:
    """BatchPlan and ScoreChunk as `sam build` made them (the predict function's code and lean layer),
    under the emulator, one step after another, reading and writing S3 on moto's server."""
    import csv
    import io

    publish_model(served_s3_store, trained_iris)
    client = served_s3_store.client
    bucket = f"{served_s3_store.bucket}-batch"
    client.create_bucket(Bucket=bucket)
    X = np.resize(trained_iris.data.X, (300, 4))
    text = io.StringIO(newline="")
    csv.writer(text).writerows(
        [["id", *trained_iris.data.feature_names], *([f"r{i}", *r] for i, r in enumerate(X.tolist()))]
    )
    client.put_object(Bucket=bucket, Key="in/rows.csv", Body=text.getvalue().encode())
    env = local_environment(
        served_s3_store.uri, "iris", BATCH_INPUT_PREFIX=f"s3://{bucket}/in", BATCH_OUTPUT_PREFIX=f"s3://{bucket}/out"
    )
    output = f"s3://{bucket}/out/run"
    plan_fn = Emulator(
        env, build_dir=build_dir, lean=True, function="BatchPlanFunction", handler="batch_app.plan_handler"
    )
    chunk_fn = Emulator(
        env, build_dir=build_dir, lean=True, function="ScoreChunkFunction", handler="batch_app.chunk_handler"
    )
    with plan_fn, chunk_fn:
        request = {"input": f"s3://{bucket}/in/rows.csv", "output": output, "model_name": "iris", "chunk_bytes": 3000}
        planned = plan_fn.invoke({"step": "plan", "request": request})
        assert planned.get("concurrency") == 100, planned
        ranges = json.loads(client.get_object(Bucket=bucket, Key=planned["ranges_key"])["Body"].read())
        for byte_range in ranges:
            assert "start" in chunk_fn.invoke({"step": "scan", "output": output, "range": byte_range})
        assert plan_fn.invoke({"step": "index", "output": output})["rows"] == 300
        chunks = json.loads(client.get_object(Bucket=bucket, Key=planned["chunks_key"])["Body"].read())
        for chunk in chunks:
            assert chunk_fn.invoke({"step": "score", "output": output, "chunk": chunk})["scored"] == chunk["rows"]
        summary = plan_fn.invoke({"step": "summarize", "output": output})
    assert (summary["status"], summary["scored"], summary["errors"]) == ("succeeded", 300, 0)
    rows = []
    for chunk in chunks:
        body = client.get_object(Bucket=bucket, Key=f"out/run/part-{chunk['index']:05d}.csv")["Body"].read().decode()
        rows += list(csv.DictReader(io.StringIO(body)))
    assert [row["prediction"] for row in rows] == trained_iris.estimator.predict(X).tolist()
    probabilities = [[float(row[f"probability_{c}"]) for c in trained_iris.estimator.classes_] for row in rows]
    assert np.array_equal(np.array(probabilities), trained_iris.estimator.predict_proba(X))
