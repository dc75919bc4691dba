"""Request shapes as data: the one description that both validates request envelopes and becomes the
OpenAPI document (`lambda_forest.openapi`).

A shape is a JSON Schema (2020-12, as OpenAPI 3.1 uses it) restricted to what `check` reads: `type`,
`properties`, `required`, `additionalProperties` (false, or a shape for the other keys), `items`,
`minItems`, `minProperties`, `maxProperties`, `minLength`, `maxLength`, `enum`, and `oneOf` of shapes
told apart by their JSON type or, for objects, by their first required key; `x-expected` words what a
shape expects in messages. Other keywords (`description`, `default`, `title`...) only document.

Marks (private keywords, left out of the OpenAPI document):
- `ROWS_MARK`: request rows. `check` stops there, because rows are checked (and encoded) by the model's
  feature schema (`lambda_forest.features`), and the OpenAPI document puts the served model's row
  schema in its place.
- `CHECKED_BY`: documented here and checked by the code it names (where the check needs more than the
  shape, such as one id per row).
- `MAX_ROWS_MARK`: a list of at most `MAX_BATCH_ROWS` entries (a 413 above it, counted by the route's
  code); the document gives it that `maxItems`.
- `MODEL_MARK`: checked here as it is; the document narrows it to the served model's own (its classes).
- `ERROR_MARK`: what is wrong inside this shape is that error code's (`invalid_labels`), not
  `invalid_request`.

`check` is written here rather than taken from `jsonschema`: importing jsonschema 4.26 took 140-165 ms
here (fresh processes, 2026-12-01, a loaded machine), about the function's whole init, and pydantic (what
Powertools' validation uses) 93 ms; and their messages ("[] is too short") say less than these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lambda_forest.errors import InvalidLabels, InvalidRequest, RequestError
from lambda_forest.features import json_type, quote

ROWS_MARK = "x-lambda-forest-rows"  # rows: checked by the feature schema; the document fills in the model's
CHECKED_BY = "x-lambda-forest-checked-by"  # a value whose checks need more than its shape (names the code)
MAX_ROWS_MARK = "x-lambda-forest-max-rows"  # a list bounded by MAX_BATCH_ROWS
MODEL_MARK = "x-lambda-forest-model"  # the served document puts the model's own in its place (names what)
ERROR_MARK = "x-lambda-forest-error"  # the error code of what is wrong inside the shape
ERRORS = {error.code: error for error in (InvalidRequest, InvalidLabels)}
JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


ROW = "row"  # a list in feature_names order, or an object by feature name
POSITIONAL_ROW = "positional row"  # a list whose order another key gives (MLflow's dataframe_split columns)


def rows(description: str, *, min_items: int = 1, row: str = ROW) -> dict[str, Any]:
    """A list of request rows (`ROW`, or `POSITIONAL_ROW`: a list in an order the request names)."""
    return {
        "type": "array",
        "minItems": min_items,
        "description": description,
        "items": {ROWS_MARK: row},
        "x-expected": "a non-empty list of rows",
        MAX_ROWS_MARK: True,
    }


def obj(
    properties: Mapping[str, Any], required: tuple[str, ...] = (), description: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An object shape that takes only `properties`."""
    shape: dict[str, Any] = {"type": "object", "properties": dict(properties), "additionalProperties": False}
    if required:
        shape["required"] = list(required)
    if description:
        shape["description"] = description
    return shape | extra


def check(
    value: Any, shape: Mapping[str, Any], where: str = "The request body", error: type[RequestError] = InvalidRequest
) -> Any:
    """Check `value` against `shape`; raise `error` (InvalidRequest) saying what was wrong and what was expected.

    Returns the `oneOf` alternative that matched (or `shape`), so a caller knows which form it got.
    """
    if ROWS_MARK in shape or CHECKED_BY in shape:
        return shape
    if ERROR_MARK in shape:
        error = ERRORS[shape[ERROR_MARK]]
    if "oneOf" in shape:
        return _check_one_of(value, shape, where, error)
    expected = shape.get("type")
    if expected is not None and not _has_type(value, expected):
        raise error(f"{where} is a JSON {json_type(value)}; expected {_describe(shape)}.")
    if "enum" in shape and value not in shape["enum"]:
        shown = ", ".join(quote(option) if isinstance(option, str) else str(option) for option in shape["enum"])
        raise error(f"{where} is {quote(value)}; expected one of {shown}.")
    if isinstance(value, dict):
        _check_object(value, shape, where, error)
    elif isinstance(value, list):
        if len(value) < shape.get("minItems", 0):
            raise error(f"{where} is empty; expected {_describe(shape)}.")
        items = shape.get("items")
        if items is not None and ROWS_MARK not in items:
            for index, item in enumerate(value):
                check(item, items, f"{where[:-1]}[{index}]'" if where.endswith("'") else f"{where}[{index}]", error)
    elif isinstance(value, str):
        if len(value) < shape.get("minLength", 0):
            counted = "an empty string" if not value else f"{len(value)} characters long"
            raise error(f"{where} is {counted}; expected {_describe(shape)}.")
        if len(value) > shape.get("maxLength", len(value)):
            raise error(f"{where} is {len(value)} characters long; at most {shape['maxLength']} are accepted.")
    return shape


def _check_object(value: dict[str, Any], shape: Mapping[str, Any], where: str, error: type[RequestError]) -> None:
    properties = shape.get("properties", {})
    others = shape.get("additionalProperties", True)
    if others is False and not value.keys() <= properties.keys():
        unknown = [key for key in value if key not in properties]
        if unknown:
            raise error(
                f"{where} has unknown key(s) {', '.join(map(quote, unknown[:5]))}; "
                f"expected only {', '.join(map(repr, properties))}."
            )
    required = shape.get("required", ())
    if required and not all(key in value for key in required):
        missing = [key for key in required if key not in value]
        raise error(f"{where} has no {', '.join(map(repr, missing))}; expected {_describe(shape)}.")
    if not shape.get("minProperties", 0) <= len(value) <= shape.get("maxProperties", len(value)):
        counted = "is empty" if not value else f"has {len(value)} key(s)"
        raise error(f"{where} {counted}; expected {_describe(shape)}.")
    for key, item in value.items():
        inner = properties.get(key, others)
        if type(inner) is dict and ROWS_MARK not in inner and CHECKED_BY not in inner:
            check(item, inner, _path(where, key), error)


def _path(where: str, key: str) -> str:
    """How messages name a key: 'instances' at the top, 'dataframe_split.columns' below."""
    if where == "The request body":
        return f"'{key}'"
    return f"{where[:-1]}.{key}'" if where.endswith("'") else f"{where}.{key}"


_ONE_OF_KEYS: dict[int, list[str] | None] = {}  # id(shape) -> its alternatives' keys (None: told apart by type)


def _check_one_of(value: Any, shape: Mapping[str, Any], where: str, error: type[RequestError]) -> Any:
    """Alternatives of different JSON types are told apart by type; objects by their first required key."""
    alternatives = shape["oneOf"]
    if id(shape) not in _ONE_OF_KEYS:  # shapes are module constants: work out each one's keys once
        by_key = all(alternative.get("required") for alternative in alternatives)
        _ONE_OF_KEYS[id(shape)] = [alternative["required"][0] for alternative in alternatives] if by_key else None
    keys = _ONE_OF_KEYS[id(shape)]
    if keys is None:
        typed = [alternative for alternative in alternatives if _has_type(value, alternative["type"])]
        if not typed:
            expected = " or ".join(_describe(alternative) for alternative in alternatives)
            raise error(f"{where} is a JSON {json_type(value)}; expected {expected}.")
        check(value, typed[0], where, error)
        return typed[0]
    if not isinstance(value, dict):
        raise error(f"{where} is a JSON {json_type(value)}; expected an object with {_either(keys)}.")
    present = [alternative for alternative, key in zip(alternatives, keys, strict=True) if key in value]
    if len(present) == 1:
        check(value, present[0], where, error)
        return present[0]
    if not present:
        raise error(f"{where} has none of {_either(keys)}; expected exactly one of them.")
    given = [key for key in keys if key in value]
    raise error(f"{where} has {' and '.join(map(repr, given))}; expected only one of them.")


def _has_type(value: Any, expected: str | list[str]) -> bool:
    for name in [expected] if isinstance(expected, str) else expected:
        if name in ("number", "integer"):
            if type(value) in (int, float) and (name == "number" or float(value).is_integer()):
                return True
        elif type(value) is JSON_TYPES[name]:
            return True
    return False


def _describe(shape: Mapping[str, Any]) -> str:
    if "x-expected" in shape:
        return shape["x-expected"]
    kind = shape.get("type")
    names = [kind] if isinstance(kind, str) else list(kind or ["a value"])
    words = {
        "object": "an object",
        "array": "a non-empty array" if shape.get("minItems") else "an array",
        "string": "a string",
        "boolean": "true or false",
        "number": "a number",
        "integer": "an integer",
        "null": "null",
    }
    described = " or ".join(words.get(name, name) for name in names)
    if kind == "object" and shape.get("required"):
        described += f" with {', '.join(map(repr, shape['required']))}"
    return described


def _either(keys: list[str]) -> str:
    return ", ".join(map(repr, keys[:-1])) + f" or {keys[-1]!r}" if len(keys) > 1 else repr(keys[0])
