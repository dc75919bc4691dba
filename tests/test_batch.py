"""Batch scoring: the API's predictions exactly, locally and through the BatchScore state machine's steps."""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lambda_forest.batch import ScoreRequest
from lambda_forest.errors import InvalidInput
from tests.conftest import BUCKET, EVENTS, api_event, data_scientists_model, publish_model
from training.score import score_file

INPUT_BUCKET = "lambda-forest-test-batch"


def quiet(_: str) -> None:
    pass


def iris_table(trained: Any, rows: int = 150) -> tuple[list[str], np.ndarray]:
    X = np.resize(trained.data.X, (rows, trained.data.X.shape[1]))
    return trained.data.feature_names, X


def write_csv(path: Path, names: list[str], X: np.ndarray, extra_rows: list[list[Any]] = ()) -> Path:  # type: ignore[assignment]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["customer", *names, "note"])
        for index, row in enumerate(X):
            # Quoted fields, delimiters and newlines inside them, in the columns the model ignores.
            writer.writerow([f"c{index}", *map(repr, row.tolist()), 'said "hi",\nthen left' if index % 7 == 0 else ""])
        writer.writerows(extra_rows)
    return path


def read_predictions(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def api_predictions(handler: Any, store: Any, X: np.ndarray) -> dict[str, Any]:
    reply = handler(store)(api_event("POST", "/predict", {"instances": X.tolist()}))
    assert reply.status == 200
    return reply.body


def test_local_csv_scoring_gives_the_apis_predictions_exactly(
    tmp_path: Path, local_store: Any, trained_iris: Any, handler: Any
) -> None:
    manifest = publish_model(local_store, trained_iris)
    names, X = iris_table(trained_iris, 400)
    source = write_csv(tmp_path / "customers.csv", names, X, [["broken", "abc", "1", "2", "3", ""], ["short", "1"]])
    output = tmp_path / "out" / "predictions.csv"

    summary = score_file(
        ScoreRequest(str(source), str(output), "iris", id_column="customer", chunk_bytes=1500), local_store, quiet
    )

    assert (summary.rows, summary.scored, summary.errors, summary.failed_chunks) == (402, 400, 2, [])
    assert summary.chunks > 5  # several chunks, some boundaries inside quoted newlines
    predicted = read_predictions(output)
    expected = api_predictions(handler, local_store, X)
    assert [row["customer"] for row in predicted] == [f"c{i}" for i in range(400)]
    assert [int(row["row"]) for row in predicted] == list(range(400))
    assert [row["prediction"] for row in predicted] == expected["predictions"]
    probabilities = [[float(row[f"probability_{label}"]) for label in expected["classes"]] for row in predicted]
    assert probabilities == expected["probabilities"]  # floats written as text round-trip exactly
    assert {row["model_version"] for row in predicted} == {manifest.version}
    estimator_proba = trained_iris.estimator.predict_proba(X)
    assert np.array_equal(np.asarray(probabilities), estimator_proba)

    errors = [json.loads(line) for line in (tmp_path / "out" / "predictions.errors.jsonl").read_text().splitlines()]
    assert [(error["row"], error["id"]) for error in errors] == [(400, "broken"), (401, "short")]
    assert "sepal length (cm)" in errors[0]["reason"] and "header names 6 columns" in errors[1]["reason"]
    assert not (tmp_path / "out" / ".predictions.csv.parts").exists()


def test_json_lines_and_parquet_give_the_same_predictions(
    tmp_path: Path, local_store: Any, trained_diabetes: Any
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    publish_model(local_store, trained_diabetes, name="diabetes")
    names, X = trained_diabetes.data.feature_names, trained_diabetes.data.X[:300]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"id": i, **dict(zip(names, row, strict=True))}) + "\n" for i, row in enumerate(X))
    )
    table = pa.table({"id": list(range(300)), **{name: X[:, j] for j, name in enumerate(names)}})
    parquet = tmp_path / "rows.parquet"
    pq.write_table(table, parquet, row_group_size=64)
    expected = trained_diabetes.estimator.predict(X)

    for source, output in ((jsonl, "from-jsonl.jsonl"), (parquet, "from-parquet.parquet")):
        summary = score_file(
            ScoreRequest(str(source), str(tmp_path / output), "diabetes", id_column="id", chunk_bytes=5000),
            local_store,
            quiet,
        )
        assert (summary.scored, summary.errors) == (300, 0)
    from_jsonl = [json.loads(line) for line in (tmp_path / "from-jsonl.jsonl").read_text().splitlines()]
    from_parquet = pq.read_table(tmp_path / "from-parquet.parquet").to_pylist()
    assert [row["prediction"] for row in from_jsonl] == expected.tolist()
    assert [row["prediction"] for row in from_parquet] == expected.tolist()
    assert [row["id"] for row in from_parquet] == [str(i) for i in range(300)]


def test_a_rerun_skips_the_parts_already_written(tmp_path: Path, local_store: Any, trained_iris: Any) -> None:
    publish_model(local_store, trained_iris)
    names, X = iris_table(trained_iris, 300)
    source = write_csv(tmp_path / "in.csv", names, X)
    output = tmp_path / "parts"
    request = ScoreRequest(str(source), f"{output}/", "iris", chunk_bytes=3000)
    score_file(request, local_store, quiet)
    first = {part.name: part.read_bytes() for part in output.glob("part-*")}
    (output / "part-00002.csv").unlink()  # as if the worker for chunk 2 had timed out
    messages: list[str] = []

    summary = score_file(request, local_store, messages.append)

    assert {part.name: part.read_bytes() for part in output.glob("part-*")} == first
    assert sum("already scored" in message for message in messages) == len(first) - 1
    assert summary.status == "succeeded" and summary.scored == 300


def test_a_rerun_keeps_the_version_it_started_with(tmp_path: Path, local_store: Any, trained_iris: Any) -> None:
    first = publish_model(local_store, trained_iris)
    names, X = iris_table(trained_iris, 50)
    source = write_csv(tmp_path / "in.csv", names, X)
    request = ScoreRequest(str(source), f"{tmp_path}/parts/", "iris", chunk_bytes=1000)
    score_file(request, local_store, quiet)
    from dataclasses import replace

    from training.forest import build_artifact, publish

    later = replace(trained_iris, created_at=trained_iris.created_at.replace(year=2030))
    manifest, files = build_artifact("iris", later)
    publish(local_store, manifest, files)
    local_store.set_alias("iris", "live", manifest.version)

    assert score_file(request, local_store, quiet).model["version"] == first.version
    with pytest.raises(InvalidInput, match=r"holds another run, started with the model \(iris"):
        score_file(replace(request, model_version=manifest.version), local_store, quiet)


def test_problems_with_the_whole_input_are_refused_before_scoring(
    tmp_path: Path, local_store: Any, trained_iris: Any
) -> None:
    publish_model(local_store, trained_iris)
    names, X = iris_table(trained_iris, 5)
    source = write_csv(tmp_path / "in.csv", names[:3], X[:, :3])
    with pytest.raises(InvalidInput, match=r"no column.*petal width"):
        score_file(ScoreRequest(str(source), str(tmp_path / "o.csv"), "iris"), local_store, quiet)
    with pytest.raises(InvalidInput, match="compressed"):
        score_file(ScoreRequest(str(tmp_path / "in.csv.gz"), str(tmp_path / "o.csv"), "iris"), local_store, quiet)
    unpaired = tmp_path / "unpaired.csv"
    unpaired.write_text(",".join(["id", *names]) + '\n"c0,1,2,3,4\nc1,1,2,3,4\n')
    with pytest.raises(InvalidInput, match="quote characters do not pair up"):
        score_file(ScoreRequest(str(unpaired), str(tmp_path / "o.csv"), "iris"), local_store, quiet)
    assert not (tmp_path / "o.csv").exists()


def test_rows_that_cannot_be_read_are_errors_with_their_ids_and_the_rest_score(
    tmp_path: Path, local_store: Any, trained_iris: Any
) -> None:
    """A cell that is not UTF-8 text fails its row, not its chunk; quotes inside a field are read as pandas
    and the API's CSV bodies read them (`5 "inch"` stays text, `"a"b` is `ab`)."""
    import pandas as pd

    publish_model(local_store, trained_iris)
    names, X = iris_table(trained_iris, 60)
    source = write_csv(tmp_path / "in.csv", names, X)
    lines = source.read_bytes().split(b"\n")
    header, body = lines[0], b"\n".join(lines[1:])
    odd = [
        b"latin,5.1,3.5,1.4,0.2,caf\xe9",  # a Latin-1 byte in a column the model ignores: still not UTF-8
        b'quoted,5.1,3.5,1.4,0.2,"said"hi',  # a quote inside a field, after the closing one
        b'inch,5.1,3.5,1.4,0.2,5 "inch" screen',  # quotes inside an unquoted field, paired
    ]
    source.write_bytes(header + b"\n" + b"\n".join(odd) + b"\n" + body)

    summary = score_file(
        ScoreRequest(str(source), str(tmp_path / "p.csv"), "iris", id_column="customer", chunk_bytes=700),
        local_store,
        quiet,
    )

    assert (summary.rows, summary.scored, summary.errors, summary.failed_chunks) == (63, 62, 1, [])
    [error] = [json.loads(line) for line in (tmp_path / "p.errors.jsonl").read_text().splitlines()]
    assert (error["row"], error["id"], error["code"]) == (0, "latin", "invalid_row")
    assert "not UTF-8 text" in error["reason"] and "--encoding" in error["reason"]
    predicted = read_predictions(tmp_path / "p.csv")
    assert [row["customer"] for row in predicted[:2]] == ["quoted", "inch"]
    table = pd.read_csv(source, encoding="latin-1")  # what a data scientist reads, and its answers
    expected = trained_iris.estimator.predict_proba(table[names].to_numpy()[1:])
    labels = trained_iris.estimator.classes_
    assert np.array_equal([[float(row[f"probability_{c}"]) for c in labels] for row in predicted], expected)


def test_a_json_lines_file_may_start_with_a_byte_order_mark(
    tmp_path: Path, local_store: Any, trained_iris: Any
) -> None:
    publish_model(local_store, trained_iris)
    names, X = iris_table(trained_iris, 20)
    source = tmp_path / "rows.jsonl"
    lines = [json.dumps(dict(zip(names, row, strict=True))) for row in X.tolist()]
    source.write_bytes(b"\xef\xbb\xbf" + "\n".join([*lines, "{broken"]).encode())

    summary = score_file(ScoreRequest(str(source), str(tmp_path / "p.jsonl"), "iris"), local_store, quiet)

    assert (summary.scored, summary.errors) == (20, 1)
    [error] = [json.loads(line) for line in (tmp_path / "p.errors.jsonl").read_text().splitlines()]
    assert error["row"] == 20 and error["reason"].startswith("row 20 is not valid JSON: ")


# The state machine's data flow: its own definition walked over moto S3, each Task calling the handler
# its FunctionName names. Not Step Functions: the walker follows Next, Map (ItemReader, ItemSelector,
# ResultWriter), Parameters/Payload, ResultSelector, ResultPath and Choice as the definition states them.


@pytest.fixture
def batch_s3(s3_store: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto S3 with the model store (s3_store) and the batch bucket; the batch functions pointed at both."""
    import batch_app

    client = s3_store.client
    client.create_bucket(Bucket=INPUT_BUCKET)
    monkeypatch.setattr(batch_app, "_s3", client)
    monkeypatch.setattr(batch_app, "_store", s3_store)
    yield client


@functools.cache
def state_machine() -> dict[str, Any]:
    from tests.test_template import transformed

    resources = transformed()["Resources"]
    return resources["BatchScoreStateMachine"]["Properties"]


def resolve(template: Any, state: Any, context: dict[str, Any]) -> Any:
    """Parameters/ItemSelector/ResultSelector: keys ending in `.$` take JSONPath values ($ or $$)."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = path_value(value, state, context)
            else:
                out[key] = resolve(value, state, context)
        return out
    if isinstance(template, list):
        return [resolve(item, state, context) for item in template]
    return template


def path_value(path: str, state: Any, context: dict[str, Any]) -> Any:
    if path.startswith("States.Format("):
        fmt, *args = [part.strip() for part in path[len("States.Format(") : -1].split(",")]
        return fmt.strip("'").format(*(path_value(arg, state, context) for arg in args))
    root, rest = (context, path[2:]) if path.startswith("$$") else (state, path[1:])
    value = root
    for key in filter(None, rest.split(".")):
        value = value[key]
    return value


def set_path(state: dict[str, Any], path: str | None, result: Any) -> Any:
    if path is None:
        return state
    if path == "$":
        return result
    state = dict(state)
    state[path[2:]] = result  # only top-level ResultPaths are used
    return state


MAP_RUN_ID = "5f1c3a9e-8d2b-4c7a-9e61-2b4d8f0a7c13"
STATE_MACHINE_MAP_RUNS = "arn:aws:states:us-east-1:123456789012:mapRun:lambda-forest-dev-batch-score"


class Walker:
    """Runs the definition's states in order, calling `functions[name](payload)` for each Lambda task."""

    def __init__(self, definition: dict[str, Any], functions: dict[str, Callable[[dict[str, Any]], Any]], s3: Any):
        self.definition = definition
        self.functions = functions
        self.s3 = s3
        self.visited: list[str] = []
        self.first_events: dict[str, dict[str, Any]] = {}  # each step's first event, as its function gets it

    def run(self, states: dict[str, Any], start: str, state: Any, context: dict[str, Any]) -> tuple[str, Any]:
        name = start
        while True:
            self.visited.append(name)
            spec = states[name]
            kind = spec["Type"]
            if kind == "Task":
                result = self.task(spec, state, context)
                state = self.output(spec, state, result, context)
            elif kind == "Map":
                result = self.map(name, spec, state, context)
                state = set_path(state, spec.get("ResultPath", "$"), result)
            elif kind == "Choice":
                name = next(
                    (
                        c["Next"]
                        for c in spec["Choices"]
                        if path_value(c["Variable"], state, context) > c["NumericGreaterThan"]
                    ),
                    spec["Default"],
                )
                continue
            elif kind in ("Succeed", "Fail"):
                return kind, state
            if spec.get("End"):
                return "Succeed", state
            name = spec["Next"]

    def task(self, spec: dict[str, Any], state: Any, context: dict[str, Any]) -> Any:
        assert spec["Resource"] == "arn:aws:states:::lambda:invoke"
        assert any(retry["BackoffRate"] > 1 for retry in spec["Retry"])
        parameters = resolve(spec["Parameters"], state, context)
        payload = json.loads(json.dumps(parameters["Payload"]))  # what Lambda receives is JSON
        self.first_events.setdefault(payload["step"], payload)
        return {"Payload": json.loads(json.dumps(self.functions[parameters["FunctionName"]](payload)))}

    def output(self, spec: dict[str, Any], state: Any, result: Any, context: dict[str, Any]) -> Any:
        if "ResultSelector" in spec:
            result = resolve(spec["ResultSelector"], result, context)
        if "OutputPath" in spec:
            return path_value(spec["OutputPath"], result, context)
        return set_path(state, spec.get("ResultPath", "$"), result)

    def map(self, name: str, spec: dict[str, Any], state: Any, context: dict[str, Any]) -> Any:
        reader = resolve(spec["ItemReader"]["Parameters"], state, context)
        items = json.loads(self.s3.get_object(Bucket=reader["Bucket"], Key=reader["Key"])["Body"].read())
        assert path_value(spec["MaxConcurrencyPath"], state, context) >= 1
        processor = spec["ItemProcessor"]
        assert processor["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        writer = resolve(spec["ResultWriter"]["Parameters"], state, context)
        for index, item in enumerate(items):
            item_context = {**context, "Map": {"Item": {"Value": item, "Index": index}}}
            selected = resolve(spec["ItemSelector"], state, item_context)
            self.run(processor["States"], processor["StartAt"], selected, item_context)
        key = f"{writer['Prefix']}/{MAP_RUN_ID}/manifest.json"  # where Step Functions writes it
        manifest = {"ResultFiles": {"FAILED": [], "SUCCEEDED": []}}
        self.s3.put_object(Bucket=writer["Bucket"], Key=key, Body=json.dumps(manifest).encode())
        return {
            "MapRunArn": f"{STATE_MACHINE_MAP_RUNS}/{name}:{MAP_RUN_ID}",
            "ResultWriterDetails": {"Bucket": writer["Bucket"], "Key": key},
        }


def run_state_machine(execution_input: dict[str, Any], s3: Any) -> tuple[str, Any, Walker]:
    import batch_app

    properties = state_machine()
    functions = {
        "BatchPlanFunctionArn": lambda event: batch_app.plan_handler(event, LambdaContextStub()),
        "ScoreChunkFunctionArn": lambda event: batch_app.chunk_handler(event, LambdaContextStub()),
    }
    substitutions = {f"${{{name}}}": name for name in properties["DefinitionSubstitutions"]}
    definition = json.loads(_substitute(json.dumps(properties["Definition"]), substitutions))
    walker = Walker(definition, functions, s3)
    context = {"Execution": {"StartTime": "2026-12-01T10:00:00.000Z"}}
    status, state = walker.run(definition["States"], definition["StartAt"], execution_input, context)
    return status, state, walker


def _substitute(text: str, substitutions: dict[str, str]) -> str:
    for placeholder, name in substitutions.items():
        text = text.replace(placeholder, name)
    return text


class LambdaContextStub:
    function_name = "batch"
    memory_limit_in_mb = 1769
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:batch"
    aws_request_id = "test-request"


BATCH_EVENTS = EVENTS / "batch"


def upload_csv(s3: Any, key: str, names: list[str], X: np.ndarray) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["customer", *names])
    writer.writerows([f"c{index},\nx", *map(repr, row.tolist())] for index, row in enumerate(X))
    s3.put_object(Bucket=INPUT_BUCKET, Key=key, Body=buffer.getvalue().encode())
    return f"s3://{INPUT_BUCKET}/{key}"


def read_parts(s3: Any, prefix: str) -> list[dict[str, str]]:
    listing = s3.list_objects_v2(Bucket=INPUT_BUCKET, Prefix=f"{prefix}/part-")["Contents"]
    rows: list[dict[str, str]] = []
    for item in sorted(listing, key=lambda entry: entry["Key"]):
        body = s3.get_object(Bucket=INPUT_BUCKET, Key=item["Key"])["Body"].read().decode()
        rows += csv.DictReader(io.StringIO(body, newline=""))
    return rows


def test_state_machine_data_flow_on_moto_scores_every_row_once(
    batch_s3: Any, s3_store: Any, trained_iris: Any, handler: Any
) -> None:
    manifest = publish_model(s3_store, trained_iris)
    names, X = iris_table(trained_iris, 500)
    source = upload_csv(batch_s3, "input/customers.csv", names, X)
    output = f"s3://{INPUT_BUCKET}/output/run-1"
    execution_input = {
        "input": source,
        "output": output,
        "model_name": "iris",
        "id_column": "customer",
        "chunk_bytes": 4000,
    }

    status, state, walker = run_state_machine(execution_input, batch_s3)

    assert status == "Succeed"
    assert walker.visited[:2] == ["Plan", "Scan"] and walker.visited[-2:] == ["AllChunksScored", "Done"]
    assert state["summary"]["rows"] == state["index"]["rows"] == 500
    predicted = read_parts(batch_s3, "output/run-1")
    expected = api_predictions(handler, s3_store, X)
    assert [row["customer"] for row in predicted] == [f"c{i},\nx" for i in range(500)]
    assert [row["prediction"] for row in predicted] == expected["predictions"]
    assert [[float(row[f"probability_{c}"]) for c in expected["classes"]] for row in predicted] == expected[
        "probabilities"
    ]
    summary = json.loads(batch_s3.get_object(Bucket=INPUT_BUCKET, Key="output/run-1/_summary.json")["Body"].read())
    assert summary["model"] == {"name": "iris", "version": manifest.version}
    assert summary["status"] == "succeeded" and summary["failed_chunks"] == []
    assert summary["chunks"] == state["index"]["chunks"] > 3
    assert summary["started_at"] == "2026-12-01T10:00:00.000Z"

    # A second execution of the same input resumes: every part is there, so nothing is rescored.
    before = {item["Key"]: item["ETag"] for item in batch_s3.list_objects_v2(Bucket=INPUT_BUCKET)["Contents"]}
    status, _, _ = run_state_machine(execution_input, batch_s3)
    after = {item["Key"]: item["ETag"] for item in batch_s3.list_objects_v2(Bucket=INPUT_BUCKET)["Contents"]}
    assert status == "Succeed"
    assert {key: tag for key, tag in after.items() if "/part-" in key} == {
        key: tag for key, tag in before.items() if "/part-" in key
    }


def test_the_batch_sample_events_are_what_the_state_machine_sends_each_step(
    batch_s3: Any, s3_store: Any, trained_iris: Any
) -> None:
    """events/batch/: the state machine's input (`aws stepfunctions start-execution --input
    file://events/batch/execution.json`) and the first event each step's function gets from it
    (`sam local invoke BatchPlanFunction -e events/batch/plan.json`, ...), kept in step with the definition."""
    publish_model(s3_store, trained_iris)
    execution = json.loads((BATCH_EVENTS / "execution.json").read_text())
    names, X = iris_table(trained_iris, 500)
    upload_csv(batch_s3, execution["input"].removeprefix(f"s3://{INPUT_BUCKET}/"), names, X)

    status, _, walker = run_state_machine(execution, batch_s3)

    assert status == "Succeed"
    assert set(walker.first_events) == {"plan", "scan", "index", "score", "summarize"}
    assert sorted(path.name for path in BATCH_EVENTS.glob("*.json")) == sorted(
        ["execution.json", *(f"{step}.json" for step in walker.first_events)]
    )
    for step, event in walker.first_events.items():
        assert json.loads((BATCH_EVENTS / f"{step}.json").read_text()) == event, f"events/batch/{step}.json"


def test_a_chunk_without_its_part_fails_the_run_and_is_named(batch_s3: Any, s3_store: Any, trained_iris: Any) -> None:
    import batch_app

    publish_model(s3_store, trained_iris)
    names, X = iris_table(trained_iris, 200)
    source = upload_csv(batch_s3, "input/in.csv", names, X)
    output = f"s3://{INPUT_BUCKET}/output/failing"
    real = batch_app.CHUNK_STEPS["score"]

    def flaky(event: dict[str, Any]) -> dict[str, Any]:
        if event["chunk"]["index"] == 1:
            return {"failed": True}  # as if every retry of this worker had timed out
        return real(event)

    batch_app.CHUNK_STEPS["score"] = flaky
    try:
        status, state, _ = run_state_machine(
            {"input": source, "output": output, "model_name": "iris", "chunk_bytes": 3000}, batch_s3
        )
    finally:
        batch_app.CHUNK_STEPS["score"] = real
    assert status == "Fail" and state["summary"]["failed_chunks"] == 1
    summary = json.loads(batch_s3.get_object(Bucket=INPUT_BUCKET, Key="output/failing/_summary.json")["Body"].read())
    assert summary["status"] == "failed" and [chunk["index"] for chunk in summary["failed_chunks"]] == [1]
    assert summary["scored"] == 200 - summary["failed_chunks"][0]["rows"]

    status, state, _ = run_state_machine(
        {"input": source, "output": output, "model_name": "iris", "chunk_bytes": 3000}, batch_s3
    )
    assert status == "Succeed" and state["summary"]["scored"] == 200


@pytest.fixture
def ten_rows_on_s3(batch_s3: Any, s3_store: Any, trained_iris: Any) -> str:
    """The iris model published to the S3 store, and ten of its rows as a CSV in the input prefix."""
    publish_model(s3_store, trained_iris)
    names, X = iris_table(trained_iris, 10)
    return upload_csv(batch_s3, "input/in.csv", names, X)


def test_the_batch_functions_refuse_what_their_role_may_not_touch(ten_rows_on_s3: str) -> None:
    import batch_app

    cases = [
        ({"input": f"s3://{BUCKET}/models/iris/x.csv"}, "outside s3://lambda-forest-test-batch/input"),
        ({"output": f"s3://{INPUT_BUCKET}/elsewhere"}, "outside s3://lambda-forest-test-batch/output"),
        ({"model_name": "other"}, "scores model iris, not other"),
        ({"input": f"s3://{INPUT_BUCKET}/input/missing.csv"}, "does not exist"),
        ({"input_format": "parquet"}, "Parquet input is scored locally only"),
        ({"surprise": 1}, "Unknown field"),
    ]
    for change, message in cases:
        request = {"input": ten_rows_on_s3, "output": f"s3://{INPUT_BUCKET}/output/r", "model_name": "iris", **change}
        with pytest.raises(InvalidInput, match=message):
            batch_app.plan_handler({"step": "plan", "request": request}, LambdaContextStub())
    with pytest.raises(InvalidInput, match="Unknown step"):
        batch_app.chunk_handler({"step": "plan"}, LambdaContextStub())


def test_a_run_file_pointed_outside_the_input_prefix_is_refused_by_every_later_step(
    batch_s3: Any, ten_rows_on_s3: str
) -> None:
    """Someone who can write the output prefix must not turn a planned run onto other objects."""
    import batch_app

    output = f"s3://{INPUT_BUCKET}/output/forged"
    batch_app.plan_handler(
        {"step": "plan", "request": {"input": ten_rows_on_s3, "output": output, "model_name": "iris"}},
        LambdaContextStub(),
    )
    key = "output/forged/_batch/run.json"
    run = json.loads(batch_s3.get_object(Bucket=INPUT_BUCKET, Key=key)["Body"].read())
    run["input"] = f"s3://{BUCKET}/models/iris/aliases/live.json"
    batch_s3.put_object(Bucket=INPUT_BUCKET, Key=key, Body=json.dumps(run).encode())
    chunk = {"index": 0, "start": 0, "end": 100, "first_row": 0, "rows": 1}
    steps = [
        (batch_app.plan_handler, {"step": "index", "output": output}),
        (batch_app.plan_handler, {"step": "summarize", "output": output}),
        (batch_app.chunk_handler, {"step": "scan", "output": output, "range": {"start": 0, "end": 100}}),
        (batch_app.chunk_handler, {"step": "score", "output": output, "chunk": chunk}),
    ]
    for handler, event in steps:
        with pytest.raises(InvalidInput, match="outside s3://lambda-forest-test-batch/input"):
            handler(event, LambdaContextStub())


# --on aws: moto's Step Functions holds the state machine and records the execution and its input (it does
# not run Lambda tasks); the execution's progress is scripted by a fake, as Step Functions would report it.


class ScriptedStepFunctions:
    """Starts executions on moto; reports the statuses and map-run counts it is given, one per poll."""

    def __init__(
        self, moto: Any, script: list[tuple[str, list[dict[str, int]]]], failure: dict[str, str] | None = None
    ):
        self.moto = moto
        self.script = script
        self.failure = failure or {}
        self.polls = 0

    def start_execution(self, **arguments: Any) -> dict[str, Any]:
        return self.moto.start_execution(**arguments)

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        self.moto.describe_execution(executionArn=executionArn)  # it exists
        status = self.script[min(self.polls, len(self.script) - 1)][0]
        self.polls += 1
        return {"executionArn": executionArn, "status": status, **(self.failure if status == "FAILED" else {})}

    def list_map_runs(self, executionArn: str) -> dict[str, Any]:
        counts = self.script[min(self.polls - 1, len(self.script) - 1)][1]
        return {"mapRuns": [{"mapRunArn": f"run-{i}", "startDate": str(i)} for i in range(len(counts))]}

    def describe_map_run(self, mapRunArn: str) -> dict[str, Any]:
        counts = self.script[min(self.polls - 1, len(self.script) - 1)][1]
        return {"itemCounts": counts[int(mapRunArn.split("-")[1])]}


@pytest.fixture
def moto_state_machine(batch_s3: Any) -> tuple[Any, str]:
    import boto3

    definition = json.dumps(state_machine()["Definition"])
    client = boto3.client("stepfunctions")
    arn = client.create_state_machine(
        name="lambda-forest-batch-score", definition=definition, roleArn="arn:aws:iam::123456789012:role/batch"
    )["stateMachineArn"]
    return client, arn


def test_score_on_aws_starts_the_state_machine_and_follows_it_to_the_summary(
    batch_s3: Any, moto_state_machine: tuple[Any, str]
) -> None:
    from training.score_aws import score_on_aws

    moto, arn = moto_state_machine
    output = f"s3://{INPUT_BUCKET}/output/nightly"
    summary = {
        "status": "succeeded",
        "input": "x",
        "output": output,
        "model": {"name": "iris", "version": "v1"},
        "rows": 10,
        "scored": 9,
        "errors": 1,
        "chunks": 2,
    }
    batch_s3.put_object(Bucket=INPUT_BUCKET, Key="output/nightly/_summary.json", Body=json.dumps(summary).encode())
    script = [
        ("RUNNING", []),
        ("RUNNING", [{"succeeded": 3, "total": 3}, {"succeeded": 1, "running": 1, "total": 2}]),
        ("SUCCEEDED", [{"succeeded": 3, "total": 3}, {"succeeded": 2, "total": 2}]),
    ]
    fake = ScriptedStepFunctions(moto, script)
    messages: list[str] = []
    request = ScoreRequest(f"s3://{INPUT_BUCKET}/input/in.csv", output, "iris", model_version="v1", concurrency=7)

    result = score_on_aws(request, arn, messages.append, client=fake, sleep=lambda _: None)

    assert (result.scored, result.errors) == (9, 1)
    assert messages[1:] == ["running", "running - scan 3/3, score 1/2 (1 running)", "succeeded - scan 3/3, score 2/2"]
    [execution] = moto.list_executions(stateMachineArn=arn)["executions"]
    sent = json.loads(moto.describe_execution(executionArn=execution["executionArn"])["input"])
    assert sent == {
        "input": request.input,
        "output": output,
        "model_name": "iris",
        "model_version": "v1",
        "delimiter": ",",
        "encoding": "utf-8",
        "chunk_bytes": request.chunk_bytes,
        "concurrency": 7,
    }
    assert ScoreRequest.from_event(sent) == request  # what the Plan step reads back


def test_score_on_aws_reports_a_failed_execution_by_its_message(
    batch_s3: Any, moto_state_machine: tuple[Any, str]
) -> None:
    from training.score_aws import BatchRunFailed, score_on_aws

    moto, arn = moto_state_machine
    cause = json.dumps(
        {
            "errorMessage": "The input has no column(s) 'petal width (cm)'.",
            "errorType": "InvalidInput",
            "stackTrace": ["File batch_app.py ..."],
        }
    )
    fake = ScriptedStepFunctions(moto, [("FAILED", [])], {"error": "InvalidInput", "cause": cause})
    request = ScoreRequest(f"s3://{INPUT_BUCKET}/input/in.csv", f"s3://{INPUT_BUCKET}/output/x", "iris")
    with pytest.raises(BatchRunFailed) as raised:
        score_on_aws(request, arn, quiet, client=fake, sleep=lambda _: None)
    assert raised.value.message == "The batch run failed: The input has no column(s) 'petal width (cm)'. (InvalidInput)"


def test_cli_score_locally_and_its_errors(tmp_path: Path, local_store: Any, trained_iris: Any, capsys: Any) -> None:
    from training.cli import main

    publish_model(local_store, trained_iris)
    names, X = iris_table(trained_iris, 20)
    source = write_csv(tmp_path / "in.csv", names, X)
    common = ["--store", str(local_store.root), "score", "--name", "iris", "--input", str(source)]

    assert main([*common, "--output", str(tmp_path / "p.jsonl"), "--id-column", "customer"]) == 0
    out = capsys.readouterr().out
    assert "scored 20 of 20 rows" in out
    first = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert set(first) == {"row", "id", "prediction", "probabilities", "model_version"} and first["id"] == "c0"

    assert main([*common, "--output", "s3://bucket/out", "--on", "aws", "--state-machine", "arn:x"]) == 1
    assert "error: --on aws reads and writes S3" in capsys.readouterr().err
    assert main([*common, "--output", str(tmp_path / "q.csv"), "--id-column", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: The input has no id column 'nope'") and "Traceback" not in err


# Mixed tables (issue 9's loans table: text and integer categories, booleans, blanks, an id column).


@pytest.fixture(scope="module")
def loans(tmp_path_factory: pytest.TempPathFactory, trained_loans: Any) -> tuple[Any, Path]:
    """The shared loans model, and a file to score: its table with a category unseen in training."""
    from tests.conftest import mixed_frame

    frame = mixed_frame()
    frame.loc[3, "region"] = "east"  # a warning, still scored
    path = tmp_path_factory.mktemp("loans") / "loans.csv"
    frame.to_csv(path, index=False)
    return trained_loans, path


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_mixed_tables_score_as_the_api_answers(
    tmp_path: Path, local_store: Any, handler: Any, loans: tuple[Any, Path], file_format: str
) -> None:
    import pandas as pd

    from training.forest import json_rows

    trained, csv_path = loans
    manifest = publish_model(local_store, trained, name="loans")
    source = csv_path
    if file_format == "parquet":
        source = tmp_path / "loans.parquet"
        pd.read_csv(csv_path).to_parquet(source, row_group_size=50)
    output = tmp_path / "scored.csv"

    summary = score_file(
        ScoreRequest(str(source), str(output), "loans", id_column="customer_id", chunk_bytes=2000), local_store, quiet
    )

    table = pd.read_csv(csv_path)
    reply = handler(local_store, name="loans")(
        api_event("POST", "/predict", {"instances": json_rows(table[manifest.feature_names], trained.data.features)})
    )
    assert reply.status == 200, reply.body
    predicted = read_predictions(output)
    assert (summary.rows, summary.scored, summary.errors) == (len(table), len(table), 0)
    assert summary.warnings == len(reply.body["warnings"]) == 1
    assert [row["customer_id"] for row in predicted] == table["customer_id"].tolist()
    assert [row["prediction"] for row in predicted] == reply.body["predictions"]
    classes = reply.body["classes"]
    assert [[float(row[f"probability_{c}"]) for c in classes] for row in predicted] == reply.body["probabilities"]


@pytest.mark.parametrize(
    ("delimiter", "typed", "encoding"), [(";", ";", "latin-1"), ("\t", "\\t", "cp1252"), (",", ",", "utf-8-sig")]
)
def test_cli_score_reads_csv_with_the_delimiter_and_encoding_training_reads(
    tmp_path: Path, local_store: Any, loans: tuple[Any, Path], capsys: Any, delimiter: str, typed: str, encoding: str
) -> None:
    """The same --delimiter and --encoding as `train`: a Windows-written file (another separator, a
    one-byte encoding or a byte order mark, CRLF, quoted separators and line ends) scores as model.joblib
    answers on that file."""
    import pandas as pd

    from training.cli import main

    trained, csv_path = loans
    manifest = publish_model(local_store, trained, name="loans")
    frame = pd.read_csv(csv_path)
    frame["customer_id"] = [f"Zoë {index}" for index in range(len(frame))]
    frame["note"] = [f"crème{delimiter} brûlée\r\nsecond line" if index % 5 == 0 else "" for index in range(len(frame))]
    source = tmp_path / "loans.csv"
    frame.to_csv(source, sep=delimiter, encoding=encoding, index=False, lineterminator="\r\n")
    output = tmp_path / "scored.csv"
    common = ["--store", str(local_store.root), "score", "--name", "loans", "--input", str(source)]

    dialect = ["--delimiter", typed, "--encoding", encoding]
    status = main([*common, "--output", str(output), "--id-column", "customer_id", *dialect, "--chunk-mb", "0.002"])

    assert status == 0, capsys.readouterr().err
    assert f"scored {len(frame)} of {len(frame)} rows" in capsys.readouterr().out
    table = pd.read_csv(source, sep=delimiter, encoding=encoding)  # what the data scientist reads
    model = data_scientists_model(local_store, manifest)
    predicted = read_predictions(output)
    assert [row["customer_id"] for row in predicted] == table["customer_id"].tolist()
    assert [row["prediction"] for row in predicted] == model.predict(table[manifest.feature_names]).tolist()
    probabilities = [[float(row[f"probability_{c}"]) for c in model.classes_] for row in predicted]
    assert np.array_equal(probabilities, model.predict_proba(table[manifest.feature_names]))


def test_cli_score_says_which_delimiter_and_encoding_to_pass(
    tmp_path: Path, local_store: Any, trained_iris: Any, capsys: Any
) -> None:
    from training.cli import main

    publish_model(local_store, trained_iris)
    names, X = iris_table(trained_iris, 20)
    source = tmp_path / "in.csv"
    source.write_text("\n".join([";".join(["customer", *names]), *(";".join(["c", *map(str, row)]) for row in X)]))
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(json.dumps(dict(zip(names, row, strict=True))) for row in X.tolist()))
    common = ["--store", str(local_store.root), "score", "--name", "iris"]
    output = tmp_path / "p.csv"

    def refused(*arguments: str) -> str:
        assert main([*common, "--output", str(output), *arguments]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and not output.exists()
        return err

    assert "separates its values with ';', not ','; pass --delimiter ';'" in refused("--input", str(source))
    assert "not an encoding Python knows" in refused("--input", str(source), "--delimiter", ";", "--encoding", "nope")
    assert "convert the file to UTF-8" in refused("--input", str(source), "--delimiter", ";", "--encoding", "utf-16")
    assert "are for CSV input" in refused("--input", str(jsonl), "--encoding", "latin-1")

    parts = f"{tmp_path}/parts/"
    assert main([*common, "--input", str(source), "--output", parts, "--delimiter", ";"]) == 0
    capsys.readouterr()
    assert main([*common, "--input", str(source), "--output", parts, "--delimiter", ";", "--encoding", "cp1252"]) == 1
    assert "holds another run, started with the delimiter and encoding (';', utf-8)" in capsys.readouterr().err


def test_the_100_million_row_projection_runs_whole_chunks_in_waves() -> None:
    """`python -m benchmarks.batch`'s projection: 100 M rows in 64 MB chunks, `concurrency` chunks at a time."""
    from benchmarks.batch import S3_MB_PER_SECOND, project

    def chunk_seconds(figures: dict[str, float], rows_per_chunk: float) -> float:
        per_row = (figures["scan_s"] + figures["score_s"]) / figures["rows"]
        return rows_per_chunk * (per_row + 2 * figures["mb"] / S3_MB_PER_SECOND / figures["rows"])

    short_rows = {"rows": 1_000_000, "mb": 25.6, "scan_s": 1.0, "score_s": 9.0}  # 2.5 M rows a chunk: 40 chunks
    wide_rows = {"rows": 100_000, "mb": 64.0, "scan_s": 1.0, "score_s": 9.0}  # 100,000 rows a chunk: 1,000 chunks

    def minutes(figures: dict[str, float], concurrency: int) -> float:
        return project(figures, concurrency, 64)["hundred_million_minutes"]

    assert minutes(short_rows, 100) * 60 == pytest.approx(chunk_seconds(short_rows, 2.5e6))  # one wave
    assert minutes(wide_rows, 100) * 60 == pytest.approx(10 * chunk_seconds(wide_rows, 1e5))  # ten waves
    assert minutes(wide_rows, 1000) * 60 == pytest.approx(chunk_seconds(wide_rows, 1e5))
