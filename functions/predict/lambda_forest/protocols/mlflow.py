"""MLflow's scoring protocol: the bodies `mlflow models serve` takes, on `/invocations` (SageMaker's path)
and, answered in the native shape, on `/predict`.

A JSON body has exactly one of `dataframe_split` (pandas' split orient: `columns` and `data`),
`dataframe_records` (a list of objects by column name), `inputs` (rows, or an object of columns) or
`instances` (rows); `/invocations` also takes `params`, which must be empty (this model takes none).
`text/csv` bodies are read by `lambda_forest.protocols.csv_body`. Answers are `{"predictions": [...]}`,
errors `{"error_code": "BAD_REQUEST", "message": ...}` as MLflow's scoring server writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lambda_forest.errors import InvalidInstances, LambdaForestError
from lambda_forest.features import RowLabel, instances_row, json_type
from lambda_forest.protocols.shapes import POSITIONAL_ROW, ROWS_MARK, obj, rows

# MLflow's error codes (mlflow.protos.databricks_pb2), by HTTP status.
ERROR_CODES = {400: "BAD_REQUEST", 404: "RESOURCE_DOES_NOT_EXIST", 503: "TEMPORARILY_UNAVAILABLE"}
PARAMS = {
    "type": "object",
    "maxProperties": 0,
    "description": "MLflow inference parameters; this model takes none.",
    "x-expected": "an empty object (this model takes no parameters)",
}
COLUMNS_OF_INPUTS = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": {"type": "array", "minItems": 1, "items": {ROWS_MARK: "cell"}},
    "description": "one array of values per feature, all of one length",
}


def request_forms(options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The MLflow bodies, each with `options` (the native options on /predict, `params` on /invocations)."""
    split = obj(
        {
            "columns": {"type": "array", "items": {"type": "string"}, "description": "the names of data's columns"},
            "data": rows(
                "rows as lists, in `columns` order (feature_names order without `columns`)", row=POSITIONAL_ROW
            ),
            "index": {"type": "array", "description": "row labels (ignored)"},
        },
        required=("data",),
    )
    return [
        obj({"dataframe_split": split, **options}, required=("dataframe_split",), title="MLflow dataframe_split"),
        obj(
            {"dataframe_records": rows("rows as objects by feature name"), **options},
            required=("dataframe_records",),
            title="MLflow dataframe_records",
        ),
        obj(
            {
                "inputs": {
                    "oneOf": [rows("rows, as in `instances`"), COLUMNS_OF_INPUTS],
                    "description": "rows, or one array per feature",
                },
                **options,
            },
            required=("inputs",),
            title="MLflow inputs",
        ),
    ]


INVOCATIONS_REQUEST = {
    "oneOf": [
        obj(
            {"instances": rows("rows as lists in feature_names order or objects by feature name"), "params": PARAMS},
            required=("instances",),
            title="MLflow instances",
        ),
        *request_forms({"params": PARAMS}),
    ]
}
INVOCATIONS_RESPONSE = obj(
    {"predictions": {"type": "array", "description": "one prediction per row: a class label, or a number"}},
    required=("predictions",),
)
ERROR_RESPONSE = obj(
    {"error_code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": ["string", "null"]}},
    required=("error_code", "message"),
)


def rows_of(payload: dict[str, Any]) -> tuple[list[Any], RowLabel]:
    """The rows of a checked MLflow body, and how messages name them."""
    if "instances" in payload:
        return payload["instances"], instances_row
    if "dataframe_records" in payload:
        return payload["dataframe_records"], lambda index: f"dataframe_records[{index}]"
    if "dataframe_split" in payload:
        return _split_rows(payload["dataframe_split"])
    inputs = payload["inputs"]
    if isinstance(inputs, list):
        return inputs, lambda index: f"inputs[{index}]"
    return _column_rows(inputs)


def _split_rows(split: dict[str, Any]) -> tuple[list[Any], RowLabel]:
    data, columns = split["data"], split.get("columns")

    def label(index: int) -> str:
        return f"dataframe_split.data[{index}]"

    order = "'columns' order" if columns is not None else "feature_names order (there is no 'columns')"
    for index, row in enumerate(data):
        if type(row) is not list:
            raise InvalidInstances(f"{label(index)} is a JSON {json_type(row)}; expected a list in {order}.")
    if columns is None:
        return data, label
    records = []
    for index, row in enumerate(data):
        if len(row) != len(columns):
            raise InvalidInstances(f"{label(index)} has {len(row)} values; 'columns' names {len(columns)}.")
        records.append(dict(zip(columns, row, strict=True)))
    return records, label


def _column_rows(columns: dict[str, list[Any]]) -> tuple[list[Any], RowLabel]:
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name!r}: {length}" for name, length in list(lengths.items())[:5])
        raise InvalidInstances(f"The columns of 'inputs' differ in length ({shown}); expected one length.")
    names = list(columns)
    records = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    return records, lambda index: f"inputs (row {index})"


def error_body(error: LambdaForestError, request_id: str | None) -> dict[str, Any]:
    code = ERROR_CODES.get(error.status, "BAD_REQUEST" if error.status < 500 else "INTERNAL_ERROR")
    return {"error_code": code, "message": error.message, "request_id": request_id}
