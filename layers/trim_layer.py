"""Trim, precompile and check a Lambda layer's `python/` directory (run by the layers' Makefiles).

    python trim_layer.py LAYER/python --python-version 3.13 [--strip strip] [--check numpy,sklearn.ensemble]

- Drops what never runs on Lambda: test suites, Cython sources, type stubs, bytecode for other Pythons,
  and the AWS SDK that the Lambda runtime already provides.
- Strips debug symbols from extension modules, but never inside `*.libs/` (auditwheel's vendored
  libraries break when stripped: "ELF load command address/offset not page-aligned").
- Precompiles with unchecked-hash bytecode: /opt is read-only, so without .pyc every cold start
  compiles, and hash-based .pyc stay valid whatever timestamps the zip gives the sources.
- Imports the given modules from the trimmed layer (when this host can run it) and fails if any breaks.

Notes go to stdout: `sam build` shows a Makefile's stdout and hides its stderr unless the build fails.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

# The Lambda Python runtime ships these; a copy in the layer only adds size and shadows the runtime's.
# (jmespath stays: Powertools imports it at start-up, and the import check runs without the runtime.)
PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer", "urllib3", "dateutil", "six")
DROP_DIRS = ("tests", "test", "__pycache__")
DROP_SUFFIXES = (".pyx", ".pxd", ".pxi", ".pyi", ".c", ".cpp", ".h")
# Build-time tools and type stubs nothing imports at run time (the import check below confirms).
# (numpy/f2py only where asked: scipy reaches numpy.f2py through numpy's lazy attributes.)
DROP_GLOBS = ("bin", "numpy/_pyinstaller", "*-stubs")
DEFAULT_CHECKS = "numpy,scipy,sklearn.ensemble,joblib,orjson,aws_lambda_powertools,aws_xray_sdk"


def size_mb(root: Path) -> float:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file()) / 1e6


def drop_runtime_packages(root: Path) -> None:
    for name in PROVIDED_BY_RUNTIME:
        shutil.rmtree(root / name, ignore_errors=True)
        dist_name = "python_dateutil" if name == "dateutil" else name
        for dist in root.glob(f"{dist_name}-*.dist-info"):
            shutil.rmtree(dist)
    (root / "six.py").unlink(missing_ok=True)


def drop_unused_files(root: Path, extra_globs: list[str]) -> None:
    for pattern in (*DROP_GLOBS, *extra_globs):
        for path in root.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and path.name in DROP_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in DROP_SUFFIXES:
            path.unlink()


def strip_extensions(root: Path, strip: str | None) -> None:
    tool = shutil.which(strip) if strip else None
    if tool is None:
        print(f"trim_layer: {strip or 'strip'} not found; extension modules keep their symbols (larger layer)")
        return
    for path in root.rglob("*.so*"):
        if not any(part.endswith(".libs") for part in path.relative_to(root).parts):
            subprocess.run([tool, "--strip-unneeded", str(path)], check=True)


def precompile(root: Path, python_version: str) -> bool:
    if f"{sys.version_info.major}.{sys.version_info.minor}" != python_version:
        print(
            f"trim_layer: this is Python {platform.python_version()}, not {python_version}; "
            "the layer ships without bytecode (slower cold starts)",
        )
        return False
    return compileall.compile_dir(
        root, quiet=1, workers=0, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )


def check_imports(root: Path, modules: list[str], python_version: str, platform_tag: str) -> None:
    host_arch = platform.machine().replace("arm64", "aarch64")
    same_python = f"{sys.version_info.major}.{sys.version_info.minor}" == python_version
    if not same_python or not platform_tag.endswith(host_arch):
        print(
            f"trim_layer: cannot run a {platform_tag} Python {python_version} layer here; imports not checked",
        )
        return
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(root)}
    # -S: no site-packages, so only the layer (and the standard library) can satisfy the imports.
    result = subprocess.run([sys.executable, "-S", "-c", code, *modules], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"trim_layer: the trimmed layer fails to import:\n{result.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--python-version", required=True)
    parser.add_argument("--platform", required=True, help="the wheel platform tag the layer was built for")
    parser.add_argument("--strip", help="the strip tool for the target architecture")
    parser.add_argument("--check", default=DEFAULT_CHECKS, help="comma-separated modules that must import")
    parser.add_argument("--drop", action="append", default=[], help="another path glob to remove (repeatable)")
    args = parser.parse_args()

    before = size_mb(args.root)
    drop_runtime_packages(args.root)
    drop_unused_files(args.root, args.drop)
    strip_extensions(args.root, args.strip)
    compiled = precompile(args.root, args.python_version)
    check_imports(args.root, args.check.split(","), args.python_version, args.platform)
    print(
        f"trim_layer: {args.root} {before:.1f} MB -> {size_mb(args.root):.1f} MB"
        f"{' (with bytecode)' if compiled else ''}"
    )


if __name__ == "__main__":
    main()
