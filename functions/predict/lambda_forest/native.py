"""The native walker (`forest_walk.c`) over a compiled forest's arrays, through ctypes.

The library is built for the target by the layers' Makefile (it lands in the layer's `lib/`, which Lambda
puts on `LD_LIBRARY_PATH` as /opt/lib) and for this machine by `make setup` (next to this file). When it
cannot be loaded, `load_library()` says why and the numpy walk serves instead; the answers are the same.

Python owns every array the walker reads or writes; the C side keeps nothing between calls.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lambda_forest.config import native_walker_enabled, vcpu_share

LIBRARY_FILE = "liblambda_forest_walk.so"
ABI_VERSION = 4  # LF_ABI_VERSION in forest_walk.c
EVERY, GIVEN, PREDICTED = 0, 1, 2  # the outputs lf_path_contributions explains (LF_EVERY, ...)
# Batches with fewer (row, tree) pairs than this per thread walk on one thread: a thread's start and join
# (tens of microseconds) would cost more than it saves. Measured in benchmarks (see README).
PAIRS_PER_THREAD = 20_000


class _Forest(ctypes.Structure):
    """`lf_forest` in forest_walk.c."""

    _fields_ = (
        ("n_trees", ctypes.c_int32),
        ("n_features", ctypes.c_int32),
        ("n_outputs", ctypes.c_int32),
        ("roots", ctypes.c_void_p),
        ("depths", ctypes.c_void_p),
        ("children", ctypes.c_void_p),
        ("feature", ctypes.c_void_p),
        ("threshold", ctypes.c_void_p),
        ("missing_left", ctypes.c_void_p),
        ("value", ctypes.c_void_p),
    )


class _Explanation(ctypes.Structure):
    """`lf_explanation` in forest_walk.c."""

    _fields_ = (
        ("delta", ctypes.c_void_p),
        ("way", ctypes.c_int32),
        ("mean", ctypes.c_void_p),
        ("contribution", ctypes.c_void_p),
        ("output", ctypes.c_void_p),
        ("scratch", ctypes.c_void_p),
    )


class _PathBucket(ctypes.Structure):
    """`lf_path_bucket` in forest_walk.c."""

    _fields_ = (
        ("n_leaves", ctypes.c_int64),
        ("m", ctypes.c_int32),
        ("q", ctypes.c_int32),
        ("feature", ctypes.c_void_p),
        ("lower", ctypes.c_void_p),
        ("upper", ctypes.c_void_p),
        ("missing_ok", ctypes.c_void_p),
        ("zero_fraction", ctypes.c_void_p),
        ("leaf_value", ctypes.c_void_p),
        ("nodes", ctypes.c_void_p),
        ("weights", ctypes.c_void_p),
    )


# lf_path_bucket's arrays: (field, dtype) in the order the struct lists them
_BUCKET_ARRAYS = (
    ("feature", np.int32),
    ("lower", np.float32),
    ("upper", np.float32),
    ("missing_ok", np.uint8),
    ("zero_fraction", np.float64),
    ("leaf_value", np.float64),
    ("nodes", np.float64),
    ("weights", np.float64),
)


@dataclass(frozen=True)
class ShapPaths:
    """The leaves' merged paths as lf_shap_values reads them, with the arrays their addresses point into."""

    buckets: Any  # a ctypes array of _PathBucket
    arrays: tuple[np.ndarray, ...]
    scratch_per_thread: int  # doubles: (m + 1) * q + m of the largest bucket


@dataclass(frozen=True)
class PathWalk:
    """What one walk of lf_path_contributions gives: contributions[row, :, j] explains output outputs[row]
    (j = 0), or output j of every row when `outputs` is None; `mean` is the prediction, when asked for."""

    mean: np.ndarray | None
    contributions: np.ndarray
    outputs: np.ndarray | None


@dataclass(frozen=True)
class Library:
    """The loaded walker, or why there is none."""

    cdll: ctypes.CDLL | None
    reason: str | None = None


def candidates() -> list[str]:
    """Where the library may be: beside this module (a development build), then the loader's search
    path (LD_LIBRARY_PATH: /opt/lib on Lambda, the layer's lib/ under the local emulator)."""
    return [str(Path(__file__).with_name(LIBRARY_FILE)), LIBRARY_FILE]


@functools.cache
def load_library() -> Library:
    """Load the walker once per process; a failure is remembered with its reason."""
    if not native_walker_enabled():
        return Library(None, "turned off by NATIVE_WALKER=false")
    failures = []
    for candidate in candidates():
        if "/" in candidate and not Path(candidate).exists():
            continue
        try:
            cdll = ctypes.CDLL(candidate)
        except OSError as error:
            failures.append(str(error))
            continue
        version = cdll.lf_abi_version()
        if version != ABI_VERSION:
            failures.append(f"{candidate} has ABI version {version}, this code needs {ABI_VERSION}")
            continue
        cdll.lf_predict.argtypes = (
            ctypes.POINTER(_Forest),
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_int,
        )
        cdll.lf_predict.restype = None
        cdll.lf_path_contributions.argtypes = (
            ctypes.POINTER(_Forest),
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.POINTER(_Explanation),
            ctypes.c_int,
        )
        cdll.lf_path_contributions.restype = ctypes.c_int
        cdll.lf_path_scratch_doubles.argtypes = (ctypes.POINTER(_Forest), ctypes.c_int64, ctypes.c_int)
        cdll.lf_path_scratch_doubles.restype = ctypes.c_int64
        cdll.lf_shap_values.argtypes = (
            ctypes.POINTER(_Forest),
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.POINTER(_PathBucket),
            ctypes.c_int32,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int,
        )
        cdll.lf_shap_values.restype = ctypes.c_int
        return Library(cdll)
    return Library(None, "; ".join(failures) or f"{LIBRARY_FILE} was not found")


@functools.cache
def usable_cpus() -> int:
    """CPUs this process may run on, capped by the CPU time Lambda's memory setting buys."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    share = vcpu_share()
    return max(1, min(cpus, math.ceil(share))) if share is not None else max(1, cpus)


class NativeWalk:
    """The walker bound to one compiled forest's arrays (kept alive here while the C side reads them)."""

    def __init__(self, library: ctypes.CDLL, arrays: dict[str, np.ndarray], n_trees: int, n_features: int) -> None:
        self._predict = library.lf_predict
        self._path_contributions = library.lf_path_contributions
        self._path_scratch_doubles = library.lf_path_scratch_doubles
        self._shap_values = library.lf_shap_values
        self.n_features = n_features
        self.value = np.ascontiguousarray(arrays["value"], dtype=np.float64)
        self.n_outputs = 1 if self.value.ndim == 1 else self.value.shape[1]
        self._arrays = {
            "roots": np.ascontiguousarray(arrays["roots"], dtype=np.int32),
            "depths": np.ascontiguousarray(arrays["depths"], dtype=np.int32),
            "children": np.ascontiguousarray(arrays["children"], dtype=np.int32),
            "feature": np.ascontiguousarray(arrays["feature"], dtype=np.int32),
            "threshold": np.ascontiguousarray(arrays["threshold"], dtype=np.float32),
            "missing_left": np.ascontiguousarray(arrays["missing_left"], dtype=np.uint8),
            "value": self.value,
        }
        self._forest = _Forest(
            n_trees, n_features, self.n_outputs, **{name: array.ctypes.data for name, array in self._arrays.items()}
        )
        self.n_trees = n_trees
        self._delta: np.ndarray | None = None  # the value changes last walked with, and their address
        self._delta_address = 0

    def threads_for(self, n_rows: int) -> int:
        return max(1, min(usable_cpus(), n_rows * self.n_trees // PAIRS_PER_THREAD))

    def mean_output(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """The per-tree values of float32 rows `X`, summed in tree order, divided by the number of trees."""
        assert X.dtype == np.float32 and X.flags.c_contiguous and X.shape[1] == self.n_features
        out = np.empty((X.shape[0], *self.value.shape[1:]), dtype=np.float64)
        n_threads = self.threads_for(X.shape[0]) if threads is None else threads
        self._predict(ctypes.byref(self._forest), X.ctypes.data, X.shape[0], out.ctypes.data, n_threads)
        return out

    def path_contributions(
        self,
        X: np.ndarray,
        delta: np.ndarray,
        outputs: np.ndarray | None = None,
        *,
        predicted: bool = False,
        predict: bool = False,
        threads: int | None = None,
    ) -> PathWalk:
        """Path contributions (Saabas) of float32 rows `X`, in one walk that can also predict.

        `delta[node]`: each node's value minus its parent's (0 at a root), (nodes, outputs). Explains every
        output, or `outputs[row]` of each row, or (`predicted`) each row's predicted output (its argmax,
        which needs the prediction: `predict` is then implied). `predict` also returns the prediction,
        bit for bit `mean_output`'s.
        """
        assert X.dtype == np.float32 and X.flags.c_contiguous and X.shape[1] == self.n_features
        if delta is not self._delta:  # the explainer passes the same array each time: take its address once
            assert delta.dtype == np.float64 and delta.flags.c_contiguous and delta.size == self.value.size
            self._delta, self._delta_address = delta, delta.ctypes.data
        n_rows, forest = X.shape[0], ctypes.byref(self._forest)
        n_threads = self.threads_for(n_rows) if threads is None else threads
        way = PREDICTED if predicted else GIVEN if outputs is not None else EVERY
        if way == GIVEN:
            assert outputs is not None
            outputs = np.ascontiguousarray(outputs, dtype=np.int32)
            assert outputs.shape == (n_rows,) and ((outputs >= 0) & (outputs < self.n_outputs)).all()
        # Everything the walk writes in one buffer (an array's address costs about a microsecond, a
        # noticeable share of one row's walk): the prediction, the contributions, the predicted outputs
        # (int32, two to a double) and the scratch, in that order.
        n_mean = n_rows * self.n_outputs if predict or predicted else 0
        n_contributions = n_rows * self.n_features * (self.n_outputs if way == EVERY else 1)
        n_outputs = (n_rows + 1) // 2 if way == PREDICTED else 0
        n_scratch = self._path_scratch_doubles(forest, n_rows, n_threads) if predicted and self.n_outputs > 1 else 0
        buffer = np.empty(n_mean + n_contributions + n_outputs + n_scratch)
        address, double = buffer.ctypes.data, buffer.itemsize
        mean = buffer[:n_mean].reshape(n_rows, *self.value.shape[1:]) if n_mean else None
        contributions = buffer[n_mean : n_mean + n_contributions].reshape(n_rows, self.n_features, -1)
        output_address = None
        if way == PREDICTED:
            outputs = buffer[n_mean + n_contributions : n_mean + n_contributions + n_outputs].view(np.int32)[:n_rows]
            output_address = address + (n_mean + n_contributions) * double
        elif outputs is not None:
            output_address = outputs.ctypes.data
        explanation = _Explanation(
            self._delta_address,
            way,
            address if n_mean else None,
            address + n_mean * double,
            output_address,
            address + (n_mean + n_contributions + n_outputs) * double if n_scratch else None,
        )
        status = self._path_contributions(forest, X.ctypes.data, n_rows, ctypes.byref(explanation), n_threads)
        assert status == 0, "lf_path_contributions refused its arguments"
        return PathWalk(mean, contributions, outputs)

    @staticmethod
    def shap_paths(buckets: Sequence[Any]) -> ShapPaths:
        """The leaves' merged paths (explain.PathBucket: one bucket per path length) for lf_shap_values."""
        arrays, structs = [], []
        for bucket in buckets:
            fields = {name: np.ascontiguousarray(getattr(bucket, name), dtype=dtype) for name, dtype in _BUCKET_ARRAYS}
            arrays.extend(fields.values())
            n_leaves, m = fields["feature"].shape
            assert fields["leaf_value"].shape[0] == n_leaves and fields["weights"].shape == fields["nodes"].shape
            addresses = {name: array.ctypes.data for name, array in fields.items()}
            structs.append(_PathBucket(n_leaves, m, fields["nodes"].size, **addresses))
        scratch = max((((m + 1) * q + m) for m, q in ((s.m, s.q) for s in structs)), default=1)
        return ShapPaths((_PathBucket * len(structs))(*structs), tuple(arrays), scratch)

    def shap_values(
        self, X: np.ndarray, paths: ShapPaths, outputs: np.ndarray | None, threads: int | None = None
    ) -> np.ndarray:
        """(rows, features, explained): path-dependent Tree SHAP of float32 rows `X`, summed over the trees
        (not yet divided by their number), for `outputs[row]` of each row, or every output when None."""
        assert X.dtype == np.float32 and X.flags.c_contiguous and X.shape[1] == self.n_features
        n_rows = X.shape[0]
        if outputs is not None:
            outputs = np.ascontiguousarray(outputs, dtype=np.int32)
            assert outputs.shape == (n_rows,) and ((outputs >= 0) & (outputs < self.n_outputs)).all()
        total = np.empty((n_rows, self.n_features, 1 if outputs is not None else self.n_outputs))
        n_threads = max(1, min(usable_cpus(), n_rows)) if threads is None else threads
        scratch = np.empty(n_threads * paths.scratch_per_thread)
        status = self._shap_values(
            ctypes.byref(self._forest),
            X.ctypes.data,
            n_rows,
            paths.buckets,
            len(paths.buckets),
            None if outputs is None else outputs.ctypes.data,
            total.ctypes.data,
            scratch.ctypes.data,
            paths.scratch_per_thread,
            n_threads,
        )
        assert status == 0, "lf_shap_values refused its scratch"
        return total


def native_walk(arrays: dict[str, np.ndarray], n_trees: int, n_features: int) -> tuple[NativeWalk | None, str | None]:
    """The native walk over these arrays, or None and the reason it cannot serve them."""
    library = load_library()
    if library.cdll is None:
        return None, library.reason
    if arrays["children"].dtype != np.int32:
        return None, "the forest has too many nodes for 32-bit node ids"
    return NativeWalk(library.cdll, arrays, n_trees, n_features), None
