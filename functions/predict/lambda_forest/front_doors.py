"""The front doors a request can come through, and how the function tells them apart by the event's shape.

Named as template.yaml's `ApiType` parameter names them: `rest` (API Gateway REST API, payload 1.0),
`http` (API Gateway HTTP API, payload 2.0) and `url` (a Lambda function URL, payload 2.0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REST_API, HTTP_API, FUNCTION_URL = "rest", "http", "url"
FRONT_DOORS = (REST_API, HTTP_API, FUNCTION_URL)


def front_door(event: Mapping[str, Any]) -> str:
    """The front door that sent `event`.

    Payload 2.0 comes from an HTTP API or a function URL, told apart by the domain the request reached
    (function URLs live on `<url-id>.lambda-url.<region>.on.aws`); payload 1.0 (`httpMethod`) from a REST
    API (or an HTTP API set to payload 1.0, which has the same shape). Anything else is no HTTP request.
    """
    if event.get("version") == "2.0":
        domain = (event.get("requestContext") or {}).get("domainName") or ""
        return FUNCTION_URL if ".lambda-url." in domain else HTTP_API
    if "httpMethod" in event:
        return REST_API
    raise ValueError(
        f"Not an HTTP request (keys {', '.join(sorted(event)[:8]) or 'none'}): the function answers API Gateway "
        "REST API, HTTP API and function URL events."
    )
