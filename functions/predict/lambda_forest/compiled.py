"""The compiled forest: a fitted scikit-learn random forest as flat numpy arrays (`forest.npz`).

Serving from it needs numpy only: no scikit-learn, no scipy, no pickle (`np.load(allow_pickle=False)`).
It reproduces scikit-learn's arithmetic step for step, so its answers are the estimator's own:

- rows are cast to float32, as the tree code does, and compared `x <= t` with each float64 threshold
  rounded down to float32 (`float32_at_or_below`: the same answer for every float32 x);
  NaN follows the node's `missing_go_to_left`;
- a classifier tree's leaf values are the class fractions `DecisionTreeClassifier.predict_proba` returns;
- per-tree outputs are summed in tree order (`np.add.accumulate` is strictly sequential, like the
  forest's loop) and divided by the number of trees.

Two walks over the same arrays give the same answers: the native walker (`forest_walk.c`, see
`lambda_forest.native`), which serves whenever its library loads, and the numpy walk, which serves when it
does not. The numpy walk takes small batches through all trees at once, level by level (few numpy
calls), and large batches one tree at a time (each tree's arrays stay in cache), dropping rows from the
walk once they reach a leaf.
"""

from __future__ import annotations

import io
from typing import Any, NoReturn

import numpy as np

from lambda_forest.artifact import Prediction, read_arrays, verify
from lambda_forest.errors import InvalidArtifact
from lambda_forest.features import FeatureSchema
from lambda_forest.manifest import Manifest
from lambda_forest.native import native_walk

COMPILED_FILE = "forest.npz"
COMPILED_FORMAT = 1
# Format 2 = format 1 + the category tables of a model with categorical features (`FeatureSchema.category_arrays`).
CATEGORIES_FORMAT = 2
CATEGORY_ARRAYS = {"categorical_features", "category_counts", "categories"}
# Below this many (row, tree) pairs, walk every tree at once; above it, tree by tree.
ALL_TREES_MAX_PAIRS = 20_000
ARRAYS = {
    "format",
    "n_features",
    "n_trees",
    "depths",
    "classify",
    "roots",
    "children",
    "feature",
    "threshold",
    "missing_left",
    "value",
}
COMPACT_EVERY = 8  # levels between dropping rows that reached a leaf
# The walks address nodes, features and trees with int32 (the native walker) or int64 numbers.
INT32_MAX = 2**31 - 1
NODE_ID_TYPES = (np.dtype(np.int32), np.dtype(np.int64))
NATIVE, NUMPY = "native", "numpy"  # the walks


def compile_forest(estimator: Any) -> dict[str, np.ndarray]:
    """Flatten a fitted RandomForestClassifier/Regressor (single output) into the arrays serving reads."""
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise ValueError("only single-output forests can be compiled")
    classify = hasattr(estimator, "classes_")
    lefts, rights, features, thresholds, missing_left, values, roots, depths = [], [], [], [], [], [], [], []
    offset = 0
    for tree_estimator in estimator.estimators_:
        tree = tree_estimator.tree_
        left = tree.children_left.astype(np.int64)
        leaf = left == -1
        ids = np.arange(tree.node_count, dtype=np.int64) + offset
        # Leaves point at themselves, so a walk can run past a shallow leaf without moving.
        lefts.append(np.where(leaf, ids, left + offset))
        rights.append(np.where(leaf, ids, tree.children_right + offset))
        features.append(np.where(leaf, 0, tree.feature))
        thresholds.append(np.where(leaf, np.inf, tree.threshold))
        missing = getattr(tree, "missing_go_to_left", np.zeros(tree.node_count, dtype=np.uint8))
        missing_left.append(np.asarray(missing, dtype=bool))
        values.append(_tree_values(tree, classify, estimator))
        roots.append(offset)
        depths.append(tree.max_depth)
        offset += tree.node_count
    index = np.int32 if 2 * offset < 2**31 else np.int64
    # children[2 * node + went_left]: one gather picks the next node.
    children = np.empty(2 * offset, dtype=index)
    children[0::2] = np.concatenate(rights)
    children[1::2] = np.concatenate(lefts)
    return {
        "format": np.array(COMPILED_FORMAT),
        "n_features": np.array(estimator.n_features_in_),
        "n_trees": np.array(len(estimator.estimators_)),
        "depths": np.asarray(depths, dtype=np.int32),
        "classify": np.array(classify),
        "roots": np.asarray(roots, dtype=index),
        "children": children,
        "feature": np.concatenate(features).astype(index),
        "threshold": float32_at_or_below(np.concatenate(thresholds)),
        "missing_left": np.concatenate(missing_left),
        "value": np.concatenate(values),
    }


def float32_at_or_below(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 threshold.

    For any float32 x, `x <= t` holds exactly when `x <= float32_at_or_below(t)`: scikit-learn's float32
    rows compared with its float64 thresholds give the same answers in half the bytes.
    """
    rounded = threshold.astype(np.float32)
    too_high = rounded.astype(np.float64) > threshold
    return np.where(too_high, np.nextafter(rounded, np.float32(-np.inf)), rounded)


def _tree_values(tree: Any, classify: bool, estimator: Any) -> np.ndarray:
    if not classify:
        return tree.value[:, 0, 0].astype(np.float64)
    # scikit-learn (>= 1.4) stores class fractions, and predict_proba returns them as they are.
    return np.ascontiguousarray(tree.value[:, 0, : len(estimator.classes_)], dtype=np.float64)


def with_categories(arrays: dict[str, np.ndarray], schema: FeatureSchema) -> dict[str, np.ndarray]:
    """The compiled forest of a model with categorical features carries their tables (format 2)."""
    if schema.is_numeric_only:
        return arrays
    return {**arrays, **schema.category_arrays(), "format": np.array(CATEGORIES_FORMAT)}


def to_npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class CompiledForest:
    """Predicts from the flat arrays of `compile_forest`.

    Walks address nodes by slot (2 x node id): `next_slot[slot + went_left]` is the next node's slot,
    so a level costs one add instead of a multiply and an add; the per-node arrays are laid out by slot.

    `walk` is the walk that serves (`native` unless its library cannot be loaded, or `native=False`);
    `native_unavailable` says why the native walk does not serve.
    """

    def __init__(self, arrays: dict[str, np.ndarray], classes: list[Any] | None, native: bool = True) -> None:
        self.arrays = arrays  # as in forest.npz, for the explainer
        self.classify = bool(arrays["classify"])
        self.n_features = int(arrays["n_features"])
        self.n_trees = int(arrays["n_trees"])
        self.depths = arrays["depths"]
        self.max_depth = int(self.depths.max())
        self.value = arrays["value"]
        self.classes = np.asarray(classes, dtype=object) if classes is not None else None
        children = arrays["children"]
        self.index = children.dtype
        self.root_slots = 2 * arrays["roots"]
        self.next_slot = 2 * children
        self.feature = np.repeat(arrays["feature"], 2)
        self.threshold = np.repeat(arrays["threshold"], 2)
        self.missing_left = np.repeat(arrays["missing_left"], 2)
        self.native, self.native_unavailable = (
            native_walk(arrays, self.n_trees, self.n_features) if native else (None, "turned off")
        )

    @property
    def walk(self) -> str:
        return NATIVE if self.native is not None else NUMPY

    @property
    def walks(self) -> list[str]:
        """The walks that can serve this forest here (every one gives the same answers)."""
        return [NATIVE, NUMPY] if self.native is not None else [NUMPY]

    def _walk_all_trees(self, X: np.ndarray, missing: bool) -> np.ndarray:
        """Every row down every tree at once, level by level: few numpy calls, for small batches."""
        row_start = (np.arange(X.shape[0], dtype=self.index) * X.shape[1])[:, np.newaxis]
        slots = np.broadcast_to(self.root_slots, (X.shape[0], self.n_trees))
        flat = X.ravel()
        for level in range(self.max_depth):
            x = flat[row_start + self.feature[slots]]
            went_left = x <= self.threshold[slots]
            if missing:  # NaN never compares true; it follows the node's missing-value route
                went_left |= np.isnan(x) & self.missing_left[slots]
            following = self.next_slot[slots + went_left]
            if level % 4 == 3 and np.array_equal(following, slots):
                break  # every row sits on a leaf
            slots = following
        return slots >> 1

    def _walk_one_tree(self, X: np.ndarray, tree: int, missing: bool) -> np.ndarray:
        """All rows down one tree, in preallocated buffers; rows on a leaf drop out every few levels."""
        n = X.shape[0]
        flat = X.ravel()
        position_type = np.int32 if n * X.shape[1] < 2**31 else np.int64
        rows = np.arange(n, dtype=position_type)
        row_start = rows * X.shape[1]
        slots = np.full(n, self.root_slots[tree], dtype=self.index)
        following = np.empty_like(slots)
        leaves = np.empty_like(slots)
        position = np.empty(n, dtype=position_type)
        x = np.empty(n, dtype=np.float32)
        threshold = np.empty(n, dtype=self.threshold.dtype)
        went_left = np.empty(n, dtype=bool)
        active = n
        for level in range(int(self.depths[tree])):
            current = slots[:active]
            np.take(self.feature, current, out=position[:active])
            position[:active] += row_start[:active]
            np.take(flat, position[:active], out=x[:active])
            np.take(self.threshold, current, out=threshold[:active])
            np.less_equal(x[:active], threshold[:active], out=went_left[:active])
            if missing:
                went_left[:active] |= np.isnan(x[:active]) & self.missing_left[current]
            np.add(current, went_left[:active], out=following[:active])
            np.take(self.next_slot, following[:active], out=following[:active])
            if level % COMPACT_EVERY == COMPACT_EVERY - 1:
                moving = following[:active] != current  # a leaf's slot leads back to itself
                leaves[rows[:active][~moving]] = current[~moving]
                kept = int(np.count_nonzero(moving))
                rows[:kept] = rows[:active][moving]
                row_start[:kept] = row_start[:active][moving]
                slots[:kept] = following[:active][moving]
                active = kept
            else:
                slots, following = following, slots
        leaves[rows[:active]] = slots[:active]
        return leaves >> 1

    def mean_output(self, rows: np.ndarray, walk: str | None = None) -> np.ndarray:
        """What `predict_proba` (classifier) or `predict` (regressor) returns for these rows.

        Per-tree values are summed in tree order, as scikit-learn's forest sums them, then divided.
        `walk` picks one of `walks`; by default the native walk when it can serve.
        """
        X = np.ascontiguousarray(rows, dtype=np.float32)
        walk = walk or self.walk
        if walk == NATIVE:
            if self.native is None:
                raise ValueError(f"the native walk cannot serve: {self.native_unavailable}")
            return self.native.mean_output(X)
        return self._numpy_mean_output(X)

    def _numpy_mean_output(self, X: np.ndarray) -> np.ndarray:
        return self.output_of_leaves(self._numpy_leaves(X))

    def _numpy_leaves(self, X: np.ndarray) -> np.ndarray:
        missing = bool(np.isnan(X).any())
        if X.shape[0] * self.n_trees <= ALL_TREES_MAX_PAIRS:
            return self._walk_all_trees(X, missing)
        by_tree = np.empty((self.n_trees, X.shape[0]), dtype=self.index)
        for tree in range(self.n_trees):
            by_tree[tree] = self._walk_one_tree(X, tree, missing)
        return by_tree.T

    def leaves(self, rows: np.ndarray) -> np.ndarray:
        """The leaf (global node id) each row reaches in each tree, shape (rows, trees)."""
        return self._numpy_leaves(np.ascontiguousarray(rows, dtype=np.float32))

    def output_of_leaves(self, leaves: np.ndarray) -> np.ndarray:
        """The forest's output for rows that reached `leaves`: the tree values summed in tree order, divided.

        Summed as scikit-learn's forest sums them (sequentially, from zeros), so the result is its own.
        """
        if leaves.shape[0] * self.n_trees <= ALL_TREES_MAX_PAIRS:
            # Strictly sequential; + 0.0 as scikit-learn starts from zeros (so no -0.0 survives).
            total = np.add.accumulate(self.value[leaves], axis=1)[:, -1] + 0.0
        else:
            total = np.zeros((leaves.shape[0], *self.value.shape[1:]))
            tree_values = np.empty_like(total)
            for tree in range(self.n_trees):
                total += np.take(self.value, leaves[:, tree], axis=0, out=tree_values)
        total /= self.n_trees
        return total

    def prediction_of(self, averaged: np.ndarray, with_probabilities: bool) -> Prediction:
        if not self.classify:
            return Prediction(averaged.tolist())
        assert self.classes is not None
        labels = self.classes.take(np.argmax(averaged, axis=1))
        return Prediction(labels.tolist(), averaged.tolist() if with_probabilities else None)

    def predict(self, rows: np.ndarray, with_probabilities: bool, walk: str | None = None) -> Prediction:
        if rows.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {rows.shape[1]}")
        return self.prediction_of(self.mean_output(rows, walk), with_probabilities)

    def predict_with_leaves(self, rows: np.ndarray, with_probabilities: bool) -> tuple[Prediction, np.ndarray]:
        """The prediction and the leaves it came from (one numpy walk serves both), for path explanations."""
        if rows.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {rows.shape[1]}")
        leaves = self.leaves(rows)
        return self.prediction_of(self.output_of_leaves(leaves), with_probabilities), leaves


def read_npz(data: bytes) -> dict[str, np.ndarray]:
    arrays = read_arrays(data, "compiled forest")
    expected = {COMPILED_FORMAT: ARRAYS, CATEGORIES_FORMAT: ARRAYS | CATEGORY_ARRAYS}
    if arrays.get("format") is None or set(arrays) != expected.get(int(arrays["format"])):
        raise InvalidArtifact(
            f"The compiled forest is not format {COMPILED_FORMAT} or {CATEGORIES_FORMAT}; retrain or republish it."
        )
    check_forest(arrays)
    return arrays


def check_forest(arrays: dict[str, np.ndarray]) -> None:
    """Refuse arrays that a walk could step outside of (`compile_forest`'s always pass).

    Both walks index memory with the numbers in these arrays, and the native walker checks no bounds: a
    forest.npz whose node ids, roots or feature numbers are out of range would make it read, or write,
    outside its arrays. A sha256 in the manifest proves nothing about who wrote the file (without a signing
    key anyone who can write the bucket can), so every type, shape and range is checked here, once per load.
    """

    def refuse(why: str) -> NoReturn:
        raise InvalidArtifact("The compiled forest is inconsistent; retrain or republish it.", detail=why)

    types = {name: arrays[name].dtype for name in ("roots", "children", "feature")}
    if any(dtype not in NODE_ID_TYPES for dtype in types.values()) or len(set(types.values())) != 1:
        refuse(f"node ids and features must all be int32 or all int64, not {types}")
    expected = {
        "n_features": np.integer,
        "n_trees": np.integer,
        "depths": np.integer,
        "threshold": np.float32,
        "value": np.float64,
        "missing_left": np.bool_,
        "classify": np.bool_,
    }
    for name, kind in expected.items():
        if not np.issubdtype(arrays[name].dtype, kind):
            refuse(f"{name} holds {arrays[name].dtype}")
    if any(arrays[name].shape != () for name in ("n_features", "n_trees", "classify")):
        refuse("n_features, n_trees and classify must be single values")
    n_features, n_trees = int(arrays["n_features"]), int(arrays["n_trees"])
    nodes = arrays["feature"].shape[0] if arrays["feature"].ndim == 1 else 0
    if not (1 <= n_features <= INT32_MAX and 1 <= n_trees <= INT32_MAX and n_trees <= nodes):
        refuse(f"{n_features} features, {n_trees} trees, {nodes} nodes")
    if types["children"] == np.int32 and 2 * nodes > INT32_MAX:
        refuse(f"{nodes} nodes do not fit int32 node ids")
    value = arrays["value"]
    shapes = {
        "threshold": (nodes,),
        "missing_left": (nodes,),
        "children": (2 * nodes,),
        "roots": (n_trees,),
        "depths": (n_trees,),
        "value": (nodes, *value.shape[1:2]) if bool(arrays["classify"]) else (nodes,),
    }
    for name, shape in shapes.items():
        if arrays[name].shape != shape or arrays[name].size == 0:
            refuse(f"{name} has shape {arrays[name].shape}, expected {shape}")
    for name, end in (("children", nodes), ("roots", nodes), ("feature", n_features), ("depths", nodes)):
        if arrays[name].min() < 0 or arrays[name].max() >= end:
            refuse(f"{name} holds values outside [0, {end})")


def load_compiled(manifest: Manifest, data: bytes) -> CompiledForest:
    """Verify `forest.npz` against the manifest, then read it (never unpickling anything)."""
    assert manifest.compiled is not None
    verify(manifest.compiled, data)
    arrays = read_npz(data)
    outputs = arrays["value"].shape[1] if arrays["value"].ndim == 2 else None
    if outputs != (len(manifest.classes) if manifest.is_classifier and manifest.classes else None):
        raise InvalidArtifact(
            "The compiled forest does not match its manifest.",
            detail=f"leaf values for {outputs} outputs; the manifest's task is {manifest.task}",
        )
    forest = CompiledForest(arrays, manifest.classes)
    if forest.n_features != len(manifest.feature_names):
        raise InvalidArtifact(
            "The compiled forest does not match its manifest.",
            detail=f"{forest.n_features} features vs {len(manifest.feature_names)} in the manifest",
        )
    if not manifest.schema.matches_category_arrays(arrays):
        raise InvalidArtifact(
            "The compiled forest does not match its manifest.",
            detail="its category tables differ from the manifest's features",
        )
    return forest
