"""The arm64 build (the template's default architecture), run under qemu user mode: with either layer its
handler answers published models exactly as the x86_64 build and scikit-learn do, walking natively.

`make arm64` runs this file alone; `local_lambda.arm64` fetches the tools it needs once.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lambda_forest.native import LIBRARY_FILE
from local_lambda import arm64
from local_lambda.emulator import local_environment
from local_lambda.events import json_event
from tests.conftest import publish_model
from tests.test_built_function import LEAN_LAYER_TARGET
from training.forest import json_rows, table_of

pytestmark = pytest.mark.slow

# Batch sizes around the walker's lockstep width (16) and, at 2001 rows, split across two threads.
BATCHES = (1, 17, 2001)


@pytest.fixture(scope="session")
def toolchain() -> arm64.Toolchain:
    try:
        return arm64.prepare(say=lambda _: None)
    except arm64.Arm64Unavailable as error:
        if os.environ.get("CI"):
            raise  # CI must run it
        pytest.skip(f"the arm64 tools are not available here: {error}")


@pytest.fixture(scope="session")
def arm64_build(toolchain: arm64.Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("sam-arm64")
    arm64.build(toolchain, target)
    return target


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, trained_iris: Any, trained_diabetes: Any, trained_loans: Any):
    """A store with a classifier, a regressor and a mixed table (categories, missing values), and the
    events each is asked: its hold-out rows as a client sends them, at several batch sizes."""
    from lambda_forest.store import LocalStore

    store = LocalStore(tmp_path_factory.mktemp("arm64-store"))
    models = {}
    for name, trained in (("iris", trained_iris), ("diabetes", trained_diabetes), ("loans", trained_loans)):
        publish_model(store, trained, name=name)
        rows = json_rows(trained.holdout_X, trained.data.features)
        batches = [(rows * (size // len(rows) + 1))[:size] for size in BATCHES]
        models[name] = (trained, batches)
    return store, models


def events_for(batches: list[list[list[Any]]]) -> list[dict[str, Any]]:
    return [json_event("POST", "/predict", {"instances": rows}) for rows in batches]


def bodies(invocation: arm64.Invocation) -> list[Any]:
    assert all(response["statusCode"] == 200 for response in invocation.responses), invocation.responses
    return [json.loads(response["body"]) for response in invocation.responses]


def test_the_arm64_layers_carry_an_aarch64_walker_and_the_lean_one_fits(arm64_build: Path) -> None:
    for lean in (False, True):
        library = (arm64.layer_dir(arm64_build, lean).parent / "lib" / LIBRARY_FILE).read_bytes()
        assert library[:4] == b"\x7fELF" and library[18:20] == b"\xb7\x00"  # EM_AARCH64
    lean_layer = arm64.layer_dir(arm64_build, lean=True).parent
    size = sum(path.stat().st_size for path in lean_layer.rglob("*") if path.is_file())
    print(f"\narm64 lean layer {size / 1e6:.1f} MB")
    assert size < LEAN_LAYER_TARGET
    assert "aarch64-linux-gnu-strip not found" not in (arm64_build / "build-lean.log").read_text()


@pytest.mark.parametrize("lean", [False, True], ids=["full", "lean"])
@pytest.mark.parametrize("name", ["iris", "diabetes", "loans"])
def test_arm64_answers_bit_for_bit_as_x86_64_and_scikit_learn(
    toolchain: arm64.Toolchain, arm64_build: Path, build_dir: Path, published: Any, name: str, lean: bool
) -> None:
    store, models = published
    trained, batches = models[name]
    events = events_for(batches)
    environment = local_environment(str(store.root), name, POWERTOOLS_LOG_LEVEL="INFO")
    with ThreadPoolExecutor(2) as pool:  # the emulated process and this host's, side by side
        emulated = pool.submit(
            arm64.invoke, arm64_build, environment, events, lean=lean, command=toolchain.python_command()
        )
        on_x86_64 = arm64.invoke(build_dir, environment, events, lean=lean)
        on_arm64 = emulated.result()
    assert '"walk":"native"' in on_arm64.logs and '"walk":"native"' in on_x86_64.logs
    assert bodies(on_arm64) == bodies(on_x86_64)  # JSON floats round-trip: equal bodies are equal bits
    schema = trained.data.features
    for rows, body in zip(batches, bodies(on_arm64), strict=True):
        table = table_of(rows, schema, trained.holdout_X)
        assert body["predictions"] == trained.estimator.predict(table).tolist()
        if "probabilities" in body:
            assert np.array_equal(np.array(body["probabilities"]), trained.estimator.predict_proba(table))
