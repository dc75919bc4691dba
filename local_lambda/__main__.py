"""`python -m local_lambda`: the built function under the Runtime Interface Emulator, without Docker.

python -m local_lambda invoke events/predict.json   # the twin of `sam local invoke PredictFunction -e ...`
python -m local_lambda serve                        # the twin of `sam local start-api`, on 127.0.0.1:3000
python -m local_lambda serve --api-type url         # ... behind a function URL (or `http`: an HTTP API)

Captured predictions and labels (CAPTURE_SAMPLE_RATE, 1 here unless --capture-sample-rate says otherwise)
land in the store's captures/ and labels/, as the subscription filters and Firehose put them there in AWS.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from lambda_forest.config import default_store
from lambda_forest.errors import LambdaForestError
from lambda_forest.front_doors import FRONT_DOORS, FUNCTION_URL, HTTP_API, REST_API
from lambda_forest.manifest import Manifest
from lambda_forest.store import DEFAULT_ALIAS, ModelStore, open_store
from local_lambda.emulator import BUILD_DIR, Emulator, EmulatorError, local_environment
from local_lambda.http_api import make_server
from local_lambda.shipper import RecordShipper

DOOR_NAMES = {REST_API: "a REST API", HTTP_API: "an HTTP API", FUNCTION_URL: "a function URL"}
CURL_EXAMPLE = """\
lambda-forest is serving {name} on http://{host}:{port} behind {door} (Ctrl-C stops it). Try:

  curl -s http://{host}:{port}/health
  curl -s http://{host}:{port}/model
  curl -s -X POST http://{host}:{port}/predict -H 'Content-Type: application/json' \\
       -d '{predict}'
  curl -s -X POST http://{host}:{port}/feedback -H 'Content-Type: application/json' \\
       -d '{feedback}'

{capture}
"""
CAPTURE_NOTE = """{share} of predictions and every label are recorded under {store}/{name}/captures/ and labels/; then
  .venv/bin/lambda-forest monitor --store {store} --name {name} --since 1h"""


# The banner's example when the served model cannot be read yet (iris, as `make serve` trains it).
IRIS_EXAMPLE = (
    {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], "ids": ["a-1", "a-2"]},
    {"labels": [{"id": "a-1", "label": "setosa"}, {"id": "a-2", "label": "virginica"}]},
)


def example_requests(store: ModelStore, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A /predict body of two rows the served model takes (a list and an object, with a missing value when
    it allows one), and /feedback labels for them: the banner's curl examples."""
    try:
        alias = store.read_alias(name, DEFAULT_ALIAS)
        manifest = Manifest.from_json(store.read_manifest(name, alias.version)) if alias else None
    except LambdaForestError:
        manifest = None
    if manifest is None:
        return IRIS_EXAMPLE
    features = manifest.features or [
        {"name": feature, "type": "numeric", "stats": manifest.feature_stats.get(feature, {}), "missing_allowed": False}
        for feature in manifest.feature_names
    ]
    typical = [
        feature["categories"][0] if feature["type"] == "categorical" else _rounded(feature["stats"].get("mean", 0.0))
        for feature in features
    ]
    second = dict(zip(manifest.feature_names, typical, strict=True))
    gap = next((feature["name"] for feature in features if feature.get("missing_allowed")), None)
    if gap is not None:
        second[gap] = None
    if manifest.is_classifier and manifest.classes:
        labels = [manifest.classes[0], manifest.classes[-1]]
    else:
        labels = [_rounded((manifest.prediction_baseline or {}).get("stats", {}).get("mean", 0.0))] * 2
    return (
        {"instances": [typical, second], "ids": ["a-1", "a-2"]},
        {"labels": [{"id": row_id, "label": label} for row_id, label in zip(["a-1", "a-2"], labels, strict=True)]},
    )


def _rounded(number: float) -> float:
    """A training mean as a person would type it: 4 significant digits, whole numbers from 1000 on."""
    return float(round(number)) if abs(number) >= 1000 else float(f"{number:.4g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local_lambda", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--store",
        default=default_store(),
        help="MODEL_STORE: a local directory or s3://BUCKET/PREFIX (default %(default)s)",
    )
    parser.add_argument("--name", default="iris", help="MODEL_NAME (default %(default)s)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another environment variable for the function (repeatable)",
    )
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    parser.add_argument("--lean", action="store_true", help="run with the lean layer (compiled forests only)")
    parser.add_argument(
        "--capture-sample-rate",
        type=float,
        default=1.0,
        help="CAPTURE_SAMPLE_RATE: share of predictions recorded in the store's captures/ (default %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    invoke = commands.add_parser("invoke", help="invoke the function once with an event file")
    invoke.add_argument("event", type=Path)
    serve = commands.add_parser("serve", help="serve the HTTP API locally")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument(
        "--api-type",
        choices=FRONT_DOORS,
        default=REST_API,
        help="the front door to emulate, as template.yaml's ApiType (default %(default)s)",
    )
    serve.add_argument(
        "--cors-allow-origins",
        default="",
        metavar="ORIGINS",
        help="comma-separated browser origins allowed to call the API, as template.yaml's CorsAllowOrigins",
    )
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the emulator on `kill` too
    store = args.store if args.store.startswith("s3://") else str(Path(args.store).resolve())
    extra = {"CAPTURE_SAMPLE_RATE": str(args.capture_sample_rate), **dict(item.split("=", 1) for item in args.env)}
    door = getattr(args, "api_type", REST_API)
    cors_origins = tuple(item.strip() for item in getattr(args, "cors_allow_origins", "").split(",") if item.strip())
    if door == REST_API and cors_origins:  # the REST API leaves CORS to the function; the others answer it natively
        extra.setdefault("CORS_ALLOW_ORIGINS", ",".join(cors_origins))
    environment = local_environment(store, args.name, **extra)
    try:
        with Emulator(environment, build_dir=args.build_dir, lean=args.lean) as emulator:
            assert emulator.log_path is not None
            shipper = RecordShipper(emulator.log_path, open_store(store), args.name)
            if args.command == "invoke":
                event = json.loads(args.event.read_text())
                print(json.dumps(emulator.invoke(event), indent=2))
                init = emulator.init_duration_ms()
                if init is not None:
                    print(f"INIT REPORT durationMs {init:.1f}", file=sys.stderr)
                shipper.stop()
                return 0
            server = make_server(
                emulator,
                args.host,
                args.port,
                front_door=door,
                cors_origins=cors_origins,
                after_invoke=shipper.ship_or_warn,
            )
            capture = CAPTURE_NOTE.format(share=f"{args.capture_sample_rate:.0%}", store=store, name=args.name)
            predict, feedback = (json.dumps(body) for body in example_requests(shipper.store, args.name))
            banner = CURL_EXAMPLE.format(
                name=args.name,
                host=args.host,
                port=args.port,
                door=DOOR_NAMES[door],
                capture=capture,
                predict=predict,
                feedback=feedback,
            )
            print(banner, flush=True)
            shipper.start()
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
            finally:
                server.server_close()
                shipper.stop()
            return 0
    except (EmulatorError, OSError, LambdaForestError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
