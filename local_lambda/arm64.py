"""The arm64 build on this x86_64 host: `sam build` for arm64, and the handler run under qemu user mode.

    python -m local_lambda.arm64 prepare                   # fetch the tools once (into .aws-sam/arm64)
    python -m local_lambda.arm64 build                     # sam build --parameter-overrides Architecture=arm64
    python -m local_lambda.arm64 invoke events/predict.json [--lean] [--store DIR] [--name iris]

No root, no binfmt, no Docker: Debian's packages are fetched with `apt-get download` through a private
APT configuration (its own sources list, state and cache, so the system's apt is untouched) and unpacked
with `dpkg-deb -x`:
- this host's `qemu-user-static` (qemu-aarch64-static) and `binutils-aarch64-linux-gnu` (the strip the
  layers' Makefile uses for aarch64 extension modules);
- an aarch64 Python 3.13 and the libraries it needs from Debian 13 (trixie) arm64, unpacked into a
  sysroot that `qemu-aarch64-static -L` resolves the interpreter's absolute paths against.
The function runs as the emulator runs it (shared/FACTS.md): `python -S`, the function's code, then the
layer, on PYTHONPATH; `LD_LIBRARY_PATH` in Lambda's order, so the layer's native walker loads from lib/.
Emulated timings say nothing about Graviton's speed; this is for answers, not figures.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import py_compile
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARM64_DIR = ROOT / ".aws-sam" / "arm64"
ARM64_BUILD_DIR = ROOT / ".aws-sam" / "build-arm64"
CONTEXT_MODULE = Path(__file__).resolve().parent / "context.py"  # imports nothing of the project
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# For this host (amd64), from its own Debian release.
HOST_PACKAGES = ("qemu-user-static", "binutils-aarch64-linux-gnu")
# The aarch64 Python 3.13 and what it loads, from Debian 13 (trixie), usr-merged.
PYTHON_SUITE = "trixie"
PYTHON_PACKAGES = (
    "python3.13",
    "python3.13-minimal",
    "libpython3.13-minimal",
    "libpython3.13-stdlib",
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "gcc-14-base",
    "libexpat1",
    "zlib1g",
    "libffi8",
    "libssl3t64",
    "libzstd1",
    "libbz2-1.0",
    "liblzma5",
    "libsqlite3-0",
    "libuuid1",
    "libncursesw6",
    "libtinfo6",
    "libreadline8t64",
    "libdb5.3t64",
)
ARCHITECTURE_INDEPENDENT = ("media-types", "netbase")
# Graviton2-class; 6-8x faster to emulate than `max`, which emulates pointer authentication.
QEMU_CPU = "neoverse-n1"
RUN_TIMEOUT_S = 600

# Runs inside the emulated Python: every event through the handler, responses and logs out.
DRIVER = """
import json, runpy, sys
events = json.load(open(sys.argv[1]))
context = runpy.run_path(sys.argv[3])["LocalContext"]()
import app
responses = [app.lambda_handler(event, context) for event in events]
json.dump(responses, open(sys.argv[2], "w"))
"""


class Arm64Unavailable(RuntimeError):
    """This host cannot fetch or run the arm64 tools."""


def _run(command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    # Fixed tools (apt-get, dpkg-deb, sam, qemu and the emulated Python) with arguments built here.
    return subprocess.run(command, capture_output=True, text=True, **options)  # nosec B603


def debian_mirror() -> str:
    """The Debian mirror this host's apt already uses."""
    for sources in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if not sources.exists():
            continue
        for line in sources.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1:
                return words[1]
            if words[:1] == ["deb"]:
                return next(word for word in words[1:] if not word.startswith("["))
    raise Arm64Unavailable("no Debian mirror found in /etc/apt; the arm64 tools come from Debian's packages")


def host_suite() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise Arm64Unavailable("not a Debian host (no VERSION_CODENAME in /etc/os-release)")


@dataclass(frozen=True)
class Toolchain:
    """qemu, the aarch64 strip and the aarch64 Python, unpacked under `root`."""

    root: Path

    @property
    def qemu(self) -> Path:
        return self.root / "tools" / "usr" / "bin" / "qemu-aarch64-static"

    @property
    def sysroot(self) -> Path:
        return self.root / "sysroot"

    @property
    def python(self) -> Path:
        return self.sysroot / "usr" / "bin" / "python3.13"

    @property
    def bin_dir(self) -> Path:
        """Put on PATH for `sam build`: aarch64-linux-gnu-strip (a wrapper that finds its libraries)."""
        return self.root / "tools" / "bin"

    def python_command(self, *args: str) -> list[str]:
        return [str(self.qemu), "-L", str(self.sysroot), str(self.python), "-S", *args]

    def ready(self) -> bool:
        return self.qemu.exists() and self.python.exists() and (self.bin_dir / "aarch64-linux-gnu-strip").exists()


def wanted_packages() -> str:
    return "\n".join((*HOST_PACKAGES, PYTHON_SUITE, *PYTHON_PACKAGES, *ARCHITECTURE_INDEPENDENT))


def prepare(root: Path = ARM64_DIR, say: Any = print) -> Toolchain:
    """Fetch and unpack the tools once; later calls reuse them (a stamp records what was fetched)."""
    toolchain = Toolchain(root)
    stamp = root / ".packages"
    if toolchain.ready() and stamp.exists() and stamp.read_text() == wanted_packages():
        return toolchain
    if platform.machine() != "x86_64":
        raise Arm64Unavailable(f"this host is {platform.machine()}; the emulation recipe is for x86_64 hosts")
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb") and KEYRING.exists()):
        raise Arm64Unavailable("apt-get, dpkg-deb and Debian's archive keyring are needed to fetch the arm64 tools")
    shutil.rmtree(root, ignore_errors=True)
    apt = root / "apt"
    for directory in (apt / "state" / "lists" / "partial", apt / "cache" / "archives" / "partial", root / "debs"):
        directory.mkdir(parents=True)
    (apt / "state" / "status").touch()
    mirror, suite = debian_mirror(), host_suite()
    signed = f"signed-by={KEYRING}"
    (apt / "sources.list").write_text(
        f"deb [arch=amd64 {signed}] {mirror} {suite} main\ndeb [arch=arm64 {signed}] {mirror} {PYTHON_SUITE} main\n"
    )
    (apt / "apt.conf").write_text(
        f'Dir::State "{apt}/state";\nDir::State::status "{apt}/state/status";\nDir::Cache "{apt}/cache";\n'
        f'Dir::Etc::SourceList "{apt}/sources.list";\nDir::Etc::SourceParts "{apt}/none";\n'
        'APT::Architecture "amd64";\nAPT::Architectures { "amd64"; "arm64"; };\nAcquire::Languages "none";\n'
    )
    env = {**os.environ, "APT_CONFIG": str(apt / "apt.conf")}
    say(f"arm64: fetching qemu, aarch64 binutils and an aarch64 Python 3.13 ({PYTHON_SUITE}) into {root}")
    for command, where in (
        (["apt-get", "update", "-q"], root),
        (
            [
                "apt-get",
                "download",
                "-q",
                *(f"{name}:amd64" for name in HOST_PACKAGES),
                *(f"{name}:arm64" for name in PYTHON_PACKAGES),
                *ARCHITECTURE_INDEPENDENT,
            ],
            root / "debs",
        ),
    ):
        result = _run(command, cwd=where, env=env, timeout=600)
        if result.returncode != 0:
            raise Arm64Unavailable(f"{' '.join(command[:2])} failed: {result.stderr.strip()[-1000:]}")
    for deb in sorted((root / "debs").glob("*.deb")):
        target = root / ("tools" if deb.name.endswith("_amd64.deb") else "sysroot")
        result = _run(["dpkg-deb", "-x", str(deb), str(target)], timeout=300)
        if result.returncode != 0:
            raise Arm64Unavailable(f"dpkg-deb -x {deb.name} failed: {result.stderr.strip()}")
    for name in ("lib", "bin"):  # trixie is usr-merged; the interpreter asks for /lib/ld-linux-aarch64.so.1
        (toolchain.sysroot / name).symlink_to(f"usr/{name}")
    _write_strip_wrapper(toolchain)
    _precompile_stdlib(toolchain)
    for tool in (root / "tools" / "usr" / "bin").iterdir():  # qemu-user-static brings every target
        if tool.name not in ("qemu-aarch64-static", "aarch64-linux-gnu-strip"):
            tool.unlink()
    shutil.rmtree(root / "debs")
    shutil.rmtree(apt)
    stamp.write_text(wanted_packages())
    return toolchain


def _write_strip_wrapper(toolchain: Toolchain) -> None:
    """aarch64-linux-gnu-strip needs its own libbfd, unpacked beside it rather than installed."""
    tools = toolchain.root / "tools"
    toolchain.bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = toolchain.bin_dir / "aarch64-linux-gnu-strip"
    wrapper.write_text(
        f'#!/bin/sh\nLD_LIBRARY_PATH="{tools}/usr/lib/x86_64-linux-gnu${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" '
        f'exec "{tools}/usr/bin/aarch64-linux-gnu-strip" "$@"\n'
    )
    wrapper.chmod(0o755)


def _precompile_stdlib(toolchain: Toolchain) -> None:
    """Bytecode for the emulated standard library, compiled by this host's Python 3.13 (same format),
    since compiling under emulation is slow and this machine never writes bytecode by itself."""
    if sys.version_info[:2] != (3, 13):
        return
    compileall.compile_dir(
        toolchain.sysroot / "usr" / "lib" / "python3.13",
        quiet=1,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )


def build(toolchain: Toolchain, build_dir: Path = ARM64_BUILD_DIR) -> None:
    """`sam build` of the arm64 function with each layer (full, lean), stripping with the aarch64 strip.

    One build per variant, side by side: naming the function builds only the layer the template gives it,
    where a plain `sam build` would build all four layers. Raises RuntimeError with sam's output on failure.
    """
    python_bin = Path(sys.executable).parent
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{toolchain.bin_dir}:{python_bin}:{os.environ['PATH']}"}
    builds = {
        variant: subprocess.Popen(  # this environment's sam, with arguments built here  # nosec B603
            [
                str(python_bin / "sam"),
                "build",
                "PredictFunction",
                "--build-dir",
                str(variant_dir(build_dir, variant == "lean")),
                "--cache-dir",
                str(build_dir / f"cache-{variant}"),
                "--parameter-overrides",
                "Architecture=arm64",
                f"LayerVariant={variant}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for variant in ("full", "lean")
    }
    for variant, process in builds.items():
        output, _ = process.communicate(timeout=900)
        (build_dir / f"build-{variant}.log").write_text(output)
        if process.returncode != 0:
            raise RuntimeError(f"sam build (arm64, {variant} layer) failed:\n{output[-3000:]}")


def variant_dir(build_dir: Path, lean: bool) -> Path:
    return build_dir / ("lean" if lean else "full")


def layer_dir(build_dir: Path, lean: bool) -> Path:
    return variant_dir(build_dir, lean) / ("LeanLayerArm64" if lean else "ForestLayerArm64") / "python"


@dataclass(frozen=True)
class Invocation:
    responses: list[dict[str, Any]]
    logs: str


def invoke(
    build_dir: Path,
    environment: dict[str, str],
    events: list[dict[str, Any]],
    *,
    lean: bool = False,
    command: list[str] | None = None,
) -> Invocation:
    """Every event through the built function's handler in one fresh process: under qemu with the arm64
    build (`command` = `Toolchain.python_command()`), or with this host's Python and build."""
    task_root = (variant_dir(build_dir, lean) if command else build_dir) / "PredictFunction"
    layer = layer_dir(build_dir, lean) if command else _host_layer(build_dir, lean)
    if not (task_root / "app.py").exists() or not layer.exists():
        raise Arm64Unavailable(f"no built function in {build_dir}")
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "QEMU_CPU": QEMU_CPU,
        "LAMBDA_TASK_ROOT": str(task_root),
        "PYTHONPATH": os.pathsep.join(map(str, (task_root, layer))),
        "LD_LIBRARY_PATH": os.pathsep.join(map(str, (task_root, task_root / "lib", layer.parent / "lib"))),
        "AWS_LAMBDA_FUNCTION_NAME": "lambda-forest-predict",
        **environment,
    }
    python = command or [sys.executable, "-S"]
    with tempfile.TemporaryDirectory() as scratch:
        events_file, responses_file = Path(scratch) / "events.json", Path(scratch) / "responses.json"
        events_file.write_text(json.dumps(events))
        result = _run(
            [*python, "-c", DRIVER, str(events_file), str(responses_file), str(CONTEXT_MODULE)],
            cwd=task_root,
            env=env,
            timeout=RUN_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise RuntimeError(f"the handler failed:\n{result.stderr[-3000:]}")
        return Invocation(json.loads(responses_file.read_text()), result.stdout + result.stderr)


def _host_layer(build_dir: Path, lean: bool) -> Path:
    from local_lambda.emulator import layer_dir as host_layer_dir

    return host_layer_dir(build_dir, lean)


def main(argv: list[str] | None = None) -> int:
    from lambda_forest.config import default_store
    from local_lambda.emulator import local_environment

    parser = argparse.ArgumentParser(
        prog="python -m local_lambda.arm64", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="fetch qemu, the aarch64 strip and an aarch64 Python")
    commands.add_parser("build", help="sam build the arm64 function and both layers")
    run = commands.add_parser("invoke", help="invoke the arm64 build's handler once under qemu")
    run.add_argument("event", type=Path)
    run.add_argument("--lean", action="store_true")
    run.add_argument("--store", default=default_store())
    run.add_argument("--name", default="iris")
    args = parser.parse_args(argv)
    try:
        toolchain = prepare(say=lambda message: print(message, file=sys.stderr))
        if args.command == "build":
            build(toolchain)
            for lean in (False, True):
                print(f"built {variant_dir(ARM64_BUILD_DIR, lean)}", file=sys.stderr)
            return 0
        if args.command == "invoke":
            store = args.store if args.store.startswith("s3://") else str(Path(args.store).resolve())
            event = json.loads(args.event.read_text())
            outcome = invoke(
                ARM64_BUILD_DIR,
                local_environment(store, args.name),
                [event],
                lean=args.lean,
                command=toolchain.python_command(),
            )
            print(outcome.logs, file=sys.stderr)
            print(json.dumps(outcome.responses[0], indent=2))
        return 0
    except (Arm64Unavailable, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
