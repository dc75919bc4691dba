"""The compiled forest: a fitted scikit-learn random forest as flat numpy arrays (`forest.npz`).

Serving from it needs numpy only: no scikit-learn, no scipy, no pickle (`np.load(allow_pickle=False)`).
It reproduces scikit-learn's arithmetic step for step, so its answers are the estimator's own:

- rows are cast to float32 and compared `x <= threshold` against float64 thresholds, as the tree code does;
  NaN follows the node's `missing_go_to_left`;
- a classifier tree's leaf values are the class fractions `DecisionTreeClassifier.predict_proba` returns;
- per-tree outputs are summed in tree order (`np.add.accumulate` is strictly sequential, like the
  forest's loop) and divided by the number of trees.

Small batches walk all trees at once, level by level (few numpy calls); large batches walk one tree at a
time (each tree's arrays stay in cache), trees shared among threads.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from lambda_forest.artifact import Prediction, verify
from lambda_forest.errors import InvalidArtifact
from lambda_forest.manifest import Manifest

COMPILED_FILE = "forest.npz"
COMPILED_FORMAT = 1
# Below this many (row, tree) pairs, walk every tree at once; above it, tree by tree.
ALL_TREES_MAX_PAIRS = 20_000


def compile_forest(estimator: Any) -> dict[str, np.ndarray]:
    """Flatten a fitted RandomForestClassifier/Regressor (single output) into arrays."""
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise ValueError("only single-output forests can be compiled")
    classify = hasattr(estimator, "classes_")
    lefts, rights, features, thresholds, missing_left, values, roots, depths = [], [], [], [], [], [], [], []
    offset = 0
    for tree_estimator in estimator.estimators_:
        tree = tree_estimator.tree_
        left = tree.children_left.astype(np.int64)
        right = tree.children_right.astype(np.int64)
        leaf = left == -1
        ids = np.arange(tree.node_count, dtype=np.int64) + offset
        # Leaves point at themselves, so a walk can run past a shallow leaf without moving.
        lefts.append(np.where(leaf, ids, left + offset))
        rights.append(np.where(leaf, ids, right + offset))
        features.append(np.where(leaf, 0, tree.feature))
        thresholds.append(np.where(leaf, np.inf, tree.threshold))
        missing = getattr(tree, "missing_go_to_left", np.zeros(tree.node_count, dtype=np.uint8))
        missing_left.append(np.asarray(missing, dtype=np.uint8))
        values.append(_tree_values(tree, classify, estimator))
        roots.append(offset)
        depths.append(tree.max_depth)
        offset += tree.node_count
    node_index = np.int32 if offset < 2**31 else np.int64
    return {
        "format": np.array(COMPILED_FORMAT),
        "n_features": np.array(estimator.n_features_in_),
        "n_trees": np.array(len(estimator.estimators_)),
        "max_depth": np.array(max(depths)),
        "classify": np.array(classify),
        "roots": np.asarray(roots, dtype=node_index),
        "left": np.concatenate(lefts).astype(node_index),
        "right": np.concatenate(rights).astype(node_index),
        "feature": np.concatenate(features).astype(np.int32),
        "threshold": np.concatenate(thresholds).astype(np.float64),
        "missing_left": np.concatenate(missing_left).astype(bool),
        "value": np.concatenate(values),
    }


def _tree_values(tree: Any, classify: bool, estimator: Any) -> np.ndarray:
    if not classify:
        return tree.value[:, 0, 0].astype(np.float64)
    # scikit-learn (>= 1.4) stores class fractions, and predict_proba returns them as they are.
    return np.ascontiguousarray(tree.value[:, 0, : len(estimator.classes_)], dtype=np.float64)


def to_npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class CompiledForest:
    """Predicts from the flat arrays of `compile_forest`."""

    def __init__(self, arrays: dict[str, np.ndarray], classes: list[Any] | None) -> None:
        self.classify = bool(arrays["classify"])
        self.n_features = int(arrays["n_features"])
        self.n_trees = int(arrays["n_trees"])
        self.max_depth = int(arrays["max_depth"])
        self.roots = arrays["roots"]
        self.feature = arrays["feature"]
        self.threshold = arrays["threshold"]
        self.missing_left = arrays["missing_left"]
        self.value = arrays["value"]
        self.classes = np.asarray(classes, dtype=object) if classes is not None else None
        self.has_missing_routes = bool(self.missing_left.any())
        # children[2 * node + went_left]: one gather picks the next node.
        left, right = arrays["left"], arrays["right"]
        self.children = np.empty(2 * len(left), dtype=left.dtype)
        self.children[0::2] = right
        self.children[1::2] = left
        self.workers = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 4))

    def apply(self, X: np.ndarray) -> np.ndarray:
        """The leaf that each row reaches in each tree: shape (rows, trees)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.shape[0] * self.n_trees <= ALL_TREES_MAX_PAIRS:
            return self._walk(X, self.roots[np.newaxis, :])
        leaves = np.empty((X.shape[0], self.n_trees), dtype=self.children.dtype)

        def walk_trees(trees: range) -> None:
            for tree in trees:
                leaves[:, tree] = self._walk(X, self.roots[tree : tree + 1])[:, 0]

        # numpy releases the GIL inside its loops, so threads over disjoint trees run in parallel.
        shares = [range(start, self.n_trees, self.workers) for start in range(self.workers)]
        if self.workers == 1:
            walk_trees(shares[0])
        else:
            with ThreadPoolExecutor(self.workers) as pool:
                list(pool.map(walk_trees, shares))
        return leaves

    def _walk(self, X: np.ndarray, roots: np.ndarray) -> np.ndarray:
        """Walk every row down the given trees, level by level, until all sit on leaves."""
        flat = X.ravel()
        row_start = (np.arange(X.shape[0], dtype=np.int64) * X.shape[1])[:, np.newaxis]
        nodes = np.broadcast_to(roots, (X.shape[0], roots.shape[-1]))
        for level in range(self.max_depth):
            x = flat[row_start + self.feature[nodes]]
            went_left = x <= self.threshold[nodes]
            if self.has_missing_routes:
                went_left |= np.isnan(x) & self.missing_left[nodes]
            following = self.children[2 * nodes + went_left]
            if level % 4 == 3 and np.array_equal(following, nodes):
                break  # every row is on a leaf (leaves point at themselves)
            nodes = following
        return nodes

    def _average(self, leaves: np.ndarray) -> np.ndarray:
        """The forest's mean of per-tree values, summed in tree order as scikit-learn sums them."""
        if leaves.size <= ALL_TREES_MAX_PAIRS:
            total = np.add.accumulate(self.value[leaves], axis=1)[:, -1]  # sequential, in tree order
        else:
            total = self.value[leaves[:, 0]].copy()
            for tree in range(1, self.n_trees):
                total += self.value[leaves[:, tree]]
        total /= self.n_trees
        return total

    def predict(self, rows: np.ndarray, with_probabilities: bool) -> Prediction:
        if rows.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {rows.shape[1]}")
        averaged = self._average(self.apply(rows))
        if not self.classify:
            return Prediction(averaged.tolist())
        assert self.classes is not None
        labels = self.classes.take(np.argmax(averaged, axis=1))
        return Prediction(labels.tolist(), averaged.tolist() if with_probabilities else None)


def read_npz(data: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, KeyError) as exc:
        raise InvalidArtifact("The compiled forest could not be read.", detail=repr(exc)) from None
    if arrays.get("format") is None or int(arrays["format"]) != COMPILED_FORMAT:
        raise InvalidArtifact(f"The compiled forest is not format {COMPILED_FORMAT}; retrain or republish it.")
    return arrays


def load_compiled(manifest: Manifest, data: bytes) -> CompiledForest:
    """Verify `forest.npz` against the manifest, then read it (never unpickling anything)."""
    assert manifest.compiled is not None
    verify(manifest.compiled, data)
    forest = CompiledForest(read_npz(data), manifest.classes)
    if forest.n_features != len(manifest.feature_names):
        raise InvalidArtifact(
            "The compiled forest does not match its manifest.",
            detail=f"{forest.n_features} features vs {len(manifest.feature_names)} in the manifest",
        )
    return forest
