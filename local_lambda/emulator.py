"""Run the `sam build` output under AWS's Lambda Runtime Interface Emulator, without Docker.

The emulator (`aws-lambda-rie`, shipped inside the aws-sam-cli wheel) speaks the real Lambda Runtime
API to AWS's runtime interface client (`awslambdaric`). The function runs with Python's `-S` flag and a
path laid out like Lambda's: the function's code (/var/task), then the layer (/opt/python), then a
runtime directory holding awslambdaric and boto3 (/var/runtime). Nothing from the development
environment leaks in, so an import the layer lacks fails here as it would on Lambda.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / ".aws-sam" / "build"
RUNTIME_DIR = ROOT / ".aws-sam" / "lambda-runtime"
RUNTIME_REQUIREMENTS = ROOT / "requirements" / "lambda-runtime.txt"
FUNCTION = "PredictFunction"
HANDLER = "app.lambda_handler"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
INIT_REPORT = re.compile(r"INIT REPORT.*?durationMs[:=]\s*([\d.]+)", re.IGNORECASE)


class EmulatorError(RuntimeError):
    """The emulator could not start or answer."""


def host_architecture() -> str:
    """The SAM name of this machine's architecture (the only one the emulator can run here)."""
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


def layer_dir(build_dir: Path = BUILD_DIR, lean: bool = False) -> Path:
    """The built layer for this machine: the full one, or the lean one (compiled forests only)."""
    variant = "LeanLayer" if lean else "ForestLayer"
    return build_dir / f"{variant}{'Arm64' if host_architecture() == 'arm64' else 'X8664'}" / "python"


def emulator_binary() -> Path:
    spec = importlib.util.find_spec("samcli")
    if spec is None or spec.origin is None:
        raise EmulatorError("aws-sam-cli is not installed; run `make setup` first.")
    binary = Path(spec.origin).parent / "local" / "rapid" / f"aws-lambda-rie-{host_architecture()}"
    if not binary.exists():
        raise EmulatorError(f"The aws-sam-cli wheel has no emulator at {binary}.")
    return binary


def ensure_runtime(runtime_dir: Path = RUNTIME_DIR) -> Path:
    """Install awslambdaric and boto3 into the stand-in for /var/runtime once."""
    stamp = runtime_dir / ".requirements"
    wanted = RUNTIME_REQUIREMENTS.read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return runtime_dir
    subprocess.run(  # this Python's pip, this repository's requirements file  # nosec B603
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
            str(runtime_dir),
            "-r",
            str(RUNTIME_REQUIREMENTS),
        ],
        check=True,
    )
    stamp.write_text(wanted)
    return runtime_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_environment(store: str, name: str, **settings: str) -> dict[str, str]:
    """The function's environment as template.yaml sets it, pointed at a local (or moto) store."""
    env = {
        "MODEL_STORE": store,
        "MODEL_NAME": name,
        "POWERTOOLS_SERVICE_NAME": "lambda-forest",
        "POWERTOOLS_METRICS_NAMESPACE": "LambdaForest",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
        "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    # Credentials and endpoint overrides pass through (moto's server for an S3 store).
    for key in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(settings)
    return env


@dataclass
class Emulator:
    """The built function under the emulator; use as a context manager."""

    environment: dict[str, str]
    build_dir: Path = BUILD_DIR
    lean: bool = False
    port: int = field(default_factory=free_port)
    runtime_api_port: int = field(default_factory=free_port)  # the emulator's default, 9001, may be taken
    memory_mb: int = 1024
    timeout_s: int = 20
    log_path: Path | None = None
    function: str = FUNCTION  # the build's function directory, and its handler (the batch functions share the code)
    handler: str = HANDLER
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{INVOKE_PATH}"

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def start(self) -> None:
        task_root = self.build_dir / self.function
        layer = layer_dir(self.build_dir, self.lean)
        if not (task_root / f"{self.handler.split('.')[0]}.py").exists() or not layer.exists():
            raise EmulatorError(f"No built function in {self.build_dir}; run `make build` (sam build) first.")
        runtime = ensure_runtime()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(task_root),
            "PYTHONPATH": os.pathsep.join(map(str, (task_root, layer, runtime))),
            # Lambda's own order (/var/task, /var/task/lib, /opt/lib): the native walker is in the layer's lib/.
            "LD_LIBRARY_PATH": os.pathsep.join(map(str, (task_root, task_root / "lib", layer.parent / "lib"))),
            "AWS_LAMBDA_FUNCTION_NAME": "lambda-forest-predict",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_s),
            **self.environment,
        }
        self.log_path = self.log_path or self.build_dir.parent / f"emulator-{self.port}.log"
        log = self.log_path.open("wb")
        command = [
            str(emulator_binary()),
            "--log-level",
            "info",
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self.port}",
            "--runtime-api-address",
            f"127.0.0.1:{self.runtime_api_port}",
            sys.executable,
            "-S",
            "-m",
            "awslambdaric",
            self.handler,
        ]
        # The emulator binary from the aws-sam-cli wheel and this Python: no shell, no caller input.
        self._process = subprocess.Popen(command, cwd=task_root, env=env, stdout=log, stderr=subprocess.STDOUT)  # nosec B603
        self._wait_until_listening()

    def _wait_until_listening(self, limit_s: float = 10) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise EmulatorError(f"The emulator exited at start; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise EmulatorError(f"The emulator did not listen on port {self.port} within {limit_s} s")

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke the function once; returns its response (or the runtime's error payload)."""
        request = urllib.request.Request(self.url, data=json.dumps(event).encode(), method="POST")
        try:
            # self.url is always http://127.0.0.1:PORT/..., never a caller's scheme.
            with urllib.request.urlopen(request, timeout=self.timeout_s + 10) as response:  # nosec B310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise EmulatorError(f"The emulator answered {error.code}: {error.read()[:500]!r}") from None
        except urllib.error.URLError as error:
            raise EmulatorError(f"The emulator did not answer: {error.reason}") from None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def init_duration_ms(self) -> float | None:
        """The init phase's duration as the emulator reports it (INIT REPORT), once the first invoke ran."""
        match = INIT_REPORT.search(self.logs())
        return float(match.group(1)) if match else None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
