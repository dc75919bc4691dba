"""`python -m local_lambda.sample_events`: write events/ samples of every front door with `sam local generate-event`.

`sam local generate-event` works offline and knows the REST API (`apigateway aws-proxy`) and the HTTP API
(`apigateway http-api-proxy`) events, with quirks fixed here:
- `--path /x` gives `//x`: pass the path without its leading slash.
- Every event gets a base64-encoded body (`{"test":"body"}` by default, `""` with `--body ""`); the
  samples keep it for POST (API Gateway sends bodies base64-encoded too) and drop it for GET and OPTIONS.
- No `Content-Type` header; the HTTP API's header names are not lower-cased, as the real API sends them.
- The HTTP API's `rawPath` ignores `--stage`: a named stage is in the path the API sends (`/v1/predict`).
- It has no function URL event: that one is the HTTP API's, moved to a `*.lambda-url.*` domain with an
  IAM authorizer context, a plain-text JSON body and no path parameters or stage variables (the payload
  AWS documents for function URLs).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from lambda_forest.front_doors import FUNCTION_URL, HTTP_API, REST_API

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = ROOT / "events"
STAGE = "v1"  # template.yaml's default StageName
PREDICT_BODY = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
URL_ID = "abcdefghijklmnopqrstuvwxyz012345"
# file name prefix -> front door
PREFIXES = {REST_API: "rest-api", HTTP_API: "http-api", FUNCTION_URL: "function-url"}
# sample -> (method, path, body or None, extra headers)
SAMPLES: dict[str, tuple[str, str, Any, dict[str, str]]] = {
    "predict": ("POST", "predict", PREDICT_BODY, {"Content-Type": "application/json"}),
    "health": ("GET", "health", None, {}),
    "preflight": (
        "OPTIONS",
        "predict",
        None,
        {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
    ),
}


def generate(door: str, method: str, path: str, body: Any, headers: dict[str, str]) -> dict[str, Any]:
    """The event `door` sends for one request, made by `sam local generate-event` and corrected."""
    options = ["--stage", STAGE, "--method", method, "--body", json.dumps(body) if body is not None else ""]
    if door == REST_API:
        event = sam_event("aws-proxy", *options, "--path", path)
        event["headers"].update(headers)
        event["multiValueHeaders"].update({key: [value] for key, value in headers.items()})
    else:
        event = sam_event("http-api-proxy", *options, "--path", f"{STAGE}/{path}")
        event["headers"] = {key.lower(): value for key, value in {**event["headers"], **headers}.items()}
    if body is None:
        event["body"], event["isBase64Encoded"] = None, False
    if door == FUNCTION_URL:
        event = as_function_url(event, f"/{path}")
    return event


def as_function_url(event: dict[str, Any], path: str) -> dict[str, Any]:
    """An HTTP API event as a function URL sends it (AuthType AWS_IAM): its own domain, `$default` stage."""
    context = event["requestContext"]
    context.pop("authentication", None)
    context.update(
        apiId=URL_ID,
        domainName=f"{URL_ID}.lambda-url.us-east-1.on.aws",
        domainPrefix=URL_ID,
        stage="$default",
        authorizer={
            "iam": {
                "accessKey": "AKIAIOSFODNN7EXAMPLE",
                "accountId": "123456789012",
                "callerId": "AIDACKCEVSQ6C2EXAMPLE",
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": "arn:aws:iam::123456789012:user/data-scientist",
                "userId": "AIDACKCEVSQ6C2EXAMPLE",
            }
        },
    )
    context["http"]["path"] = path
    event.update(rawPath=path, pathParameters=None, stageVariables=None)
    if event["isBase64Encoded"]:  # a function URL passes JSON and text bodies as they are
        event.update(body=base64.b64decode(event["body"]).decode(), isBase64Encoded=False)
    return event


def sam_event(kind: str, *options: str) -> dict[str, Any]:
    sam = shutil.which("sam") or "sam"
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    command = [sam, "local", "generate-event", "apigateway", kind, *options]
    # The SAM CLI generating a sample event: a fixed argument list, no shell.
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout)  # nosec B603


def samples() -> dict[str, dict[str, Any]]:
    """Every sample event by file name; the REST API's preflight only (the others answer CORS natively)."""
    events = {}
    for door, prefix in PREFIXES.items():
        for sample, (method, path, body, headers) in SAMPLES.items():
            if sample == "preflight" and door != REST_API:
                continue
            events[f"{prefix}-{sample}.json"] = generate(door, method, path, body, headers)
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=EVENTS_DIR)
    args = parser.parse_args()
    for name, event in samples().items():
        (args.out / name).write_text(json.dumps(event, indent=2) + "\n")
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
