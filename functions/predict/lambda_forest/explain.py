"""Why the forest decided: exact per-feature contributions to each prediction, in the native walker
(`forest_walk.c`) where it loads, else with numpy alone (the same sums, to rounding).

Both methods work on the compiled forest's arrays (`compiled.py`) and give, for each row, a bias (the
forest's output before it sees the row: the mean of the trees' root values) and one contribution per
feature, which add up to the row's probability (classifiers) or value (regressors):

- `path` (Saabas): along the route the row takes through each tree, the change of the node value at
  each split is credited to the split's feature. The native walker adds each step's change as it
  walks, in the same walk that predicts; numpy climbs back from the leaves the prediction reached.
- `shap`: path-dependent Tree SHAP (Lundberg et al., 2020), the Shapley values of the game
  v(S) = E[f(x) | x_S] in which a split on a feature outside S sends the row down both sides, weighted
  by the training samples (cover) that went each way. A feature in S that the row is missing (NaN)
  follows the split's missing-value route, exactly as the prediction does.

Tree SHAP is computed leaf by leaf (the decomposition GPUTreeShap uses): for a leaf with value v whose
path splits on m distinct features, let o_j be 1 when the row satisfies every split on feature j along
the path (else 0) and z_j the product of those splits' cover fractions. The leaf is the game
v * prod_{j in S} o_j * prod_{j not in S} z_j, and feature i's Shapley value in it is

    v * (o_i - z_i) * integral over u in [0, 1] of prod_{j != i} (z_j + (o_j - z_j) u) du

(the Shapley weights |S|! (m - |S| - 1)! / m! are the Beta integrals of u^|S| (1 - u)^(m - |S| - 1)).
The integrand is a polynomial of degree m - 1, so Gauss-Legendre quadrature with ceil(m / 2) nodes
gives it exactly. A tree's Shapley values are the sums over its leaves; the forest's, the mean over trees.
The native walker (lf_shap_values) computes the same formula row by row, about 6x faster than numpy.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lambda_forest.artifact import Prediction, Predictor, read_arrays
from lambda_forest.config import vcpu_share
from lambda_forest.errors import ExplainOverBudget, ExplainUnsupported, InvalidArtifact, InvalidRequest
from lambda_forest.native import ShapPaths, native_walk

PATH = "path"
SHAP = "shap"
METHODS = (PATH, SHAP)
DEFAULT_METHOD = PATH

EXPLAIN_FILE = "explain.npz"
EXPLAIN_FORMAT = 1
# Tree SHAP's speed on one full vCPU (1,769 MB of Lambda memory), in quadrature terms per second, with numpy:
# measured 12-26 million on the large benchmark forest on a loaded 2-core machine (see README), rounded up a
# little; in the native walker 62-73 million under the same load (load average 8-10), about 6x numpy's.
SHAP_TERMS_PER_SECOND = 30e6
NATIVE_SHAP_TERMS_PER_SECOND = 100e6
# Tree SHAP holds (rows x path elements x quadrature nodes) floats at a time: at most this many (32 MB).
SHAP_CHUNK_FLOATS = 4_000_000


def explanation_arrays(estimator: Any) -> dict[str, np.ndarray]:
    """What Tree SHAP needs beyond the compiled forest: each node's cover (weighted training samples)."""
    cover = np.concatenate([tree.tree_.weighted_n_node_samples for tree in estimator.estimators_])
    return {"format": np.array(EXPLAIN_FORMAT), "cover": cover.astype(np.float64)}


def read_explanation_arrays(data: bytes) -> dict[str, np.ndarray]:
    arrays = read_arrays(data, "explanation data")
    if arrays.get("format") is None or int(arrays["format"]) != EXPLAIN_FORMAT or set(arrays) != {"format", "cover"}:
        raise InvalidArtifact(f"The explanation data is not format {EXPLAIN_FORMAT}; republish the model.")
    return arrays


@dataclass(frozen=True)
class Contributions:
    """Explanations of some rows: `bias[k] + contributions[row, :, k].sum()` is output k of the row.

    `outputs` is each row's explained output (its predicted class), with one column in `bias` and
    `contributions` per row's choice: contributions[row, :, 0] is for outputs[row]. None: every output.
    """

    method: str
    bias: np.ndarray  # (outputs,) every output's bias
    contributions: np.ndarray  # (rows, features, explained outputs)
    outputs: np.ndarray | None


class ForestExplainer:
    """Path contributions and Tree SHAP over the arrays of `compile_forest` (and the covers, for SHAP)."""

    def __init__(self, forest: Mapping[str, np.ndarray], cover: np.ndarray | None = None, native: bool = True) -> None:
        """`forest`: the arrays of `compile_forest`; `cover`: each node's weighted training samples (for SHAP)."""
        children = forest["children"]
        self.n_features = int(forest["n_features"])
        self.n_trees = int(forest["n_trees"])
        self.max_depth = int(forest["depths"].max())
        self.roots = forest["roots"].astype(np.int64)
        self.feature = forest["feature"]
        self.threshold = forest["threshold"]
        self.missing_left = forest["missing_left"]
        value = forest["value"]
        self.value = value.reshape(value.shape[0], -1)  # (nodes, outputs): regressors have one output
        nodes = np.arange(self.value.shape[0], dtype=children.dtype)
        self.right, self.left = children[0::2], children[1::2]
        self.internal = self.left != nodes
        self.parent = nodes.copy()  # a root is its own parent
        self.parent[self.left[self.internal]] = nodes[self.internal]
        self.parent[self.right[self.internal]] = nodes[self.internal]
        # The change of value on entering each node from its parent (zero at a root), credited to the parent's feature.
        self.gain = self.value - self.value[self.parent]
        self.gain_feature = self.feature[self.parent].astype(np.int64)
        self.bias = self.value[self.roots].sum(axis=0) / self.n_trees
        self.cover: np.ndarray | None = None
        self._leaf_paths: LeafPaths | None = None
        self._native_shap_paths: ShapPaths | None = None  # the leaf paths as the native walker reads them
        # The native walker's path walk when its library loads (as it does wherever predictions use it).
        self.native = native_walk(forest, self.n_trees, self.n_features)[0] if native else None
        if cover is not None:
            self.attach_cover(cover)

    def attach_cover(self, cover: np.ndarray) -> None:
        if cover.shape != (self.value.shape[0],) or not (cover > 0).all():
            raise InvalidArtifact("The explanation data does not match the compiled forest.")
        self.cover = cover

    @property
    def methods(self) -> tuple[str, ...]:
        return METHODS if self.cover is not None else (PATH,)

    def native_path_contributions(
        self, X: np.ndarray, outputs: np.ndarray | None, predicted: bool = False, predict: bool = False
    ) -> tuple[np.ndarray | None, Contributions]:
        """Saabas contributions of float32 rows `X` in one native walk (the same sums, tree by tree): of
        `outputs[row]` (every output when None), or (`predicted`) of each row's predicted output; with the
        prediction (the mean output) the same walk gives when `predict` or `predicted`, else None."""
        assert self.native is not None
        walk = self.native.path_contributions(X, self.gain, outputs, predicted=predicted, predict=predict)
        return walk.mean, Contributions(PATH, self.bias, walk.contributions, walk.outputs)

    def path_contributions(self, leaves: np.ndarray, outputs: np.ndarray | None) -> Contributions:
        """Saabas contributions from the leaves each row reached, `leaves[row, tree]` (global node ids)."""
        rows = leaves.shape[0]
        explained = 1 if outputs is not None else self.value.shape[1]
        total = np.zeros((rows * self.n_features, explained))
        row_of = np.repeat(np.arange(rows, dtype=np.int64), self.n_trees)
        node = leaves.reshape(-1).astype(np.int64)
        for _ in range(self.max_depth):
            climbing = node != self.parent[node]
            if not climbing.all():
                node, row_of = node[climbing], row_of[climbing]
                if node.size == 0:
                    break
            slot = row_of * self.n_features + self.gain_feature[node]
            if outputs is not None:
                total[:, 0] += np.bincount(slot, self.gain[node, outputs[row_of]], minlength=total.shape[0])
            else:
                for k in range(explained):
                    total[:, k] += np.bincount(slot, self.gain[node, k], minlength=total.shape[0])
            node = self.parent[node]
        total /= self.n_trees
        return Contributions(PATH, self.bias, total.reshape(rows, self.n_features, explained), outputs)

    def shap_values(self, X: np.ndarray, outputs: np.ndarray | None) -> Contributions:
        """Path-dependent Tree SHAP values of the rows `X` (float32, as the prediction saw them)."""
        paths = self.leaf_paths
        if self.native is not None:
            summed = self.native.shap_values(X, self.native_shap_paths, outputs)
            summed /= self.n_trees
            return Contributions(SHAP, self.bias, summed, outputs)
        rows = X.shape[0]
        explained = 1 if outputs is not None else self.value.shape[1]
        total = np.zeros((rows * self.n_features, explained))
        for bucket in paths.buckets:
            m, q = bucket.feature.shape[1], bucket.nodes.size
            leaves_at_once = max(1, SHAP_CHUNK_FLOATS // (m * q))
            rows_at_once = max(1, SHAP_CHUNK_FLOATS // (m * q * bucket.feature.shape[0]))
            for first_leaf in range(0, bucket.feature.shape[0], leaves_at_once):
                part = bucket.part(slice(first_leaf, first_leaf + leaves_at_once))
                for first_row in range(0, rows, rows_at_once):
                    some = slice(first_row, min(rows, first_row + rows_at_once))
                    phi = part.shapley(X[some])  # (rows, leaves, m): per unit of leaf value
                    slot = (np.arange(some.start, some.stop)[:, None, None] * self.n_features + part.feature).ravel()
                    if outputs is not None:
                        leaf_value = part.leaf_value[:, outputs[some]].T[:, :, None]  # (rows, leaves, 1)
                        total[:, 0] += np.bincount(slot, (phi * leaf_value).ravel(), minlength=total.shape[0])
                    else:
                        for k in range(explained):
                            weights = (phi * part.leaf_value[None, :, k, None]).ravel()
                            total[:, k] += np.bincount(slot, weights, minlength=total.shape[0])
        total /= self.n_trees
        return Contributions(SHAP, self.bias, total.reshape(rows, self.n_features, explained), outputs)

    @property
    def has_leaf_paths(self) -> bool:
        return self._leaf_paths is not None

    @property
    def leaf_paths(self) -> LeafPaths:
        """Every leaf's path as merged per-feature conditions; built on first use and kept."""
        if self._leaf_paths is None:
            if self.cover is None:
                raise ValueError("Tree SHAP needs the nodes' covers")
            self._leaf_paths = LeafPaths.build(self)
        return self._leaf_paths

    @property
    def native_shap_paths(self) -> ShapPaths:
        """The leaf paths as the native walker reads them; built on first use and kept."""
        assert self.native is not None
        if self._native_shap_paths is None:
            self._native_shap_paths = self.native.shap_paths(self.leaf_paths.buckets)
        return self._native_shap_paths

    @property
    def shap_terms_per_second(self) -> float:
        return NATIVE_SHAP_TERMS_PER_SECOND if self.native is not None else SHAP_TERMS_PER_SECOND

    def shap_cost_per_row(self) -> int:
        """Tree SHAP's work for one row: path elements times quadrature nodes, summed over leaves."""
        return self.leaf_paths.cost_per_row


@dataclass(frozen=True)
class PathBucket:
    """The leaves whose paths split on exactly m distinct features, as (leaves, m) arrays."""

    feature: np.ndarray  # (leaves, m) int64
    lower: np.ndarray  # (leaves, m) float32: the row goes this way when lower < x <= upper
    upper: np.ndarray
    missing_ok: np.ndarray  # (leaves, m) bool: a missing value goes this way
    zero_fraction: np.ndarray  # (leaves, m) float64: the share of training cover that goes this way
    leaf_value: np.ndarray  # (leaves, outputs)
    nodes: np.ndarray  # Gauss-Legendre nodes on [0, 1]
    weights: np.ndarray

    def part(self, leaves: slice) -> PathBucket:
        return PathBucket(
            self.feature[leaves],
            self.lower[leaves],
            self.upper[leaves],
            self.missing_ok[leaves],
            self.zero_fraction[leaves],
            self.leaf_value[leaves],
            self.nodes,
            self.weights,
        )

    def shapley(self, X: np.ndarray) -> np.ndarray:
        """(rows, leaves, m): each element's Shapley value in its leaf's game, per unit of leaf value."""
        x = X[:, self.feature]  # (rows, leaves, m)
        one = ((x > self.lower) & (x <= self.upper)) | (np.isnan(x) & self.missing_ok)
        slope = one - self.zero_fraction  # o - z
        factor = self.zero_fraction[..., None] + slope[..., None] * self.nodes  # (rows, leaves, m, q)
        product = factor.prod(axis=2, keepdims=True)
        # Every factor is positive at the interior quadrature nodes (z > 0), so dividing one out is exact enough.
        return slope * ((product / factor) @ self.weights)


@dataclass(frozen=True)
class LeafPaths:
    buckets: list[PathBucket]
    cost_per_row: int

    @classmethod
    def build(cls, explainer: ForestExplainer) -> LeafPaths:
        """Climb from every leaf to its root, then merge each path's splits per feature."""
        assert explainer.cover is not None
        cover = explainer.cover
        leaves = np.flatnonzero(~explainer.internal)
        leaf_of, edge_feature, lower, upper, missing_ok, fraction = [], [], [], [], [], []
        child, owner = leaves.astype(np.int64), np.arange(leaves.size)
        while child.size:
            parent = explainer.parent[child].astype(np.int64)
            climbing = parent != child
            child, owner, parent = child[climbing], owner[climbing], parent[climbing]
            went_left = explainer.left[parent] == child
            threshold = explainer.threshold[parent]
            leaf_of.append(owner)
            edge_feature.append(explainer.feature[parent].astype(np.int64))
            upper.append(np.where(went_left, threshold, np.float32(np.inf)))
            lower.append(np.where(went_left, np.float32(-np.inf), threshold))
            missing_ok.append(explainer.missing_left[parent] == went_left)
            fraction.append(cover[child] / cover[parent])
            child = parent
        leaf_of_e, feature_e = np.concatenate(leaf_of), np.concatenate(edge_feature)
        if leaf_of_e.size == 0:  # every tree is a single leaf: its value is all bias
            return cls([], 0)
        order = np.lexsort((feature_e, leaf_of_e))
        leaf_of_e, feature_e = leaf_of_e[order], feature_e[order]
        starts = np.flatnonzero(np.r_[True, (np.diff(leaf_of_e) != 0) | (np.diff(feature_e) != 0)])
        element_leaf = leaf_of_e[starts]
        element = {
            "feature": feature_e[starts].astype(np.int32),
            "lower": np.maximum.reduceat(np.concatenate(lower)[order], starts),
            "upper": np.minimum.reduceat(np.concatenate(upper)[order], starts),
            "missing_ok": np.logical_and.reduceat(np.concatenate(missing_ok)[order], starts),
            "zero_fraction": np.multiply.reduceat(np.concatenate(fraction)[order], starts),
        }
        length = np.bincount(element_leaf, minlength=leaves.size)
        first = np.r_[0, np.cumsum(length)[:-1]]
        buckets, cost = [], 0
        for m in np.unique(length[length > 0]):
            members = np.flatnonzero(length == m)
            take = (first[members][:, None] + np.arange(m)).ravel()
            quadrature = math.ceil(m / 2)
            nodes, weights = np.polynomial.legendre.leggauss(quadrature)
            buckets.append(
                PathBucket(
                    **{name: values[take].reshape(members.size, m) for name, values in element.items()},
                    leaf_value=explainer.value[leaves[members]],
                    nodes=(nodes + 1) / 2,
                    weights=weights / 2,
                )
            )
            cost += members.size * int(m) * quadrature
        # A tree that is a single leaf has no path (m = 0): its value is all bias.
        return cls(buckets, cost)


@dataclass(frozen=True)
class ExplainOptions:
    """What a request asked to explain: the method, and every class's output or only the predicted one."""

    method: str = DEFAULT_METHOD
    all_classes: bool = False

    @classmethod
    def parse(cls, value: Any) -> ExplainOptions | None:
        """The request's `explain` value: true, false, "path", "shap" or {"method": ..., "classes": ...}."""
        expected = (
            'expected true, false, "path", "shap" or an object like {"method": "shap", "classes": "all"} '
            '(classes: "predicted", the default, or "all")'
        )
        if value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, str) and value in METHODS:
            return cls(value)
        if isinstance(value, dict) and set(value) <= {"method", "classes"}:
            method, classes = value.get("method", DEFAULT_METHOD), value.get("classes", "predicted")
            if method in METHODS and classes in ("predicted", "all"):
                return cls(method, classes == "all")
        raise InvalidRequest(f"'explain' is {_shown(value)}; {expected}.")


# The request's "explain" option, as the OpenAPI document shows it; ExplainOptions.parse checks it.
EXPLAIN_SHAPE: dict[str, Any] = {
    "oneOf": [
        {"type": "boolean"},
        {"type": "string", "enum": list(METHODS)},
        {
            "type": "object",
            "properties": {
                "method": {"type": "string", "enum": list(METHODS), "default": DEFAULT_METHOD},
                "classes": {"type": "string", "enum": ["predicted", "all"], "default": "predicted"},
            },
            "additionalProperties": False,
        },
    ],
    "default": False,
    "description": (
        "per-feature contributions to each row's predicted-class probability (or value): true or "
        '"path" (Saabas path contributions), "shap" (path-dependent Tree SHAP), or {"method", "classes": '
        '"all"} for every class'
    ),
    "x-lambda-forest-checked-by": "lambda_forest.explain.ExplainOptions.parse",
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


class ModelExplainer:
    """A served model's explainer, built on first use (fetching the covers only when SHAP is asked for)."""

    def __init__(
        self,
        forest_arrays: Callable[[], Mapping[str, np.ndarray]],
        read_cover: Callable[[], np.ndarray] | None,
        feature_names: list[str],
        classes: list[Any] | None,
        prediction_of: Callable[[np.ndarray, bool], Prediction] | None = None,
    ) -> None:
        """`prediction_of(mean output, with_probabilities)`: the served prediction of the forest's mean output,
        when the model serves from these arrays (the compiled forest): one native walk then predicts and
        explains. Without it (model.joblib), the predictor predicts and the walk explains its classes."""
        self._forest_arrays = forest_arrays
        self._prediction_of = prediction_of
        self._read_cover = read_cover
        self.feature_names = feature_names
        self.classes = classes
        self._explainer: ForestExplainer | None = None
        self._lock = threading.Lock()

    @property
    def methods(self) -> tuple[str, ...]:
        return METHODS if self._read_cover is not None else (PATH,)

    def describe(self) -> dict[str, Any]:
        """What GET /model says about explanations."""
        return {"methods": list(self.methods), "default": DEFAULT_METHOD}

    def explainer(self, method: str) -> ForestExplainer:
        if method not in self.methods:
            raise ExplainUnsupported(
                f"This model version has no data for {method!r} explanations (it was published before they "
                f"existed); it supports {', '.join(map(repr, self.methods))}. Republish it to explain with {method!r}."
            )
        with self._lock:  # a failed load (say, the store is down) is retried by the next request
            if self._explainer is None:
                self._explainer = ForestExplainer(self._forest_arrays())
            if method == SHAP and self._explainer.cover is None:
                assert self._read_cover is not None
                self._explainer.attach_cover(self._read_cover())
            return self._explainer

    def check_budget(self, options: ExplainOptions, rows: int, seconds: float) -> None:
        """Refuse (400) Tree SHAP that would outrun the function's timeout (the response size is checked later)."""
        if options.method != SHAP:
            return
        explainer = self.explainer(SHAP)
        if not explainer.has_leaf_paths:  # the first SHAP request builds them, on its own time
            started = time.perf_counter()
            explainer.leaf_paths  # noqa: B018
            seconds = max(0.0, seconds - (time.perf_counter() - started))
        cost = explainer.shap_cost_per_row()
        share = min(1.0, vcpu_share() or 1.0)  # one thread's (the native walker may split rows across more)
        speed = explainer.shap_terms_per_second * share
        affordable = int(seconds * speed // max(1, cost))
        if rows > affordable:
            per_row_ms = cost / speed * 1000
            raise ExplainOverBudget(
                f"Tree SHAP on this model takes about {per_row_ms:.3g} ms per row here, and explanations get "
                f"{seconds:.3g} s of the function's time: at most {affordable} rows per request with 'shap' "
                f"({rows} sent). Send fewer rows, or use 'path', which costs about as much as the prediction."
            )

    def predict_and_explain(
        self, predictor: Predictor, rows: np.ndarray, with_probabilities: bool, options: ExplainOptions
    ) -> tuple[Prediction, Contributions]:
        """The prediction of `rows` (float64, as validated) and its explanation, in as few walks as it takes."""
        explainer = self.explainer(options.method)
        X = np.ascontiguousarray(rows, dtype=np.float32)
        if options.method == PATH and explainer.native is not None:
            if self._prediction_of is not None:  # one walk predicts and explains
                every = options.all_classes and self.classes is not None
                mean, explained = explainer.native_path_contributions(X, None, predicted=not every, predict=True)
                assert mean is not None
                return self._prediction_of(mean, with_probabilities), explained
            result = predictor.predict(rows, with_probabilities)
            return result, explainer.native_path_contributions(X, self.outputs_of(result.predictions, options))[1]
        if options.method == PATH:  # the numpy walk: one walk to the leaves serves the prediction and the climb
            result, leaves = predictor.predict_with_leaves(rows, with_probabilities)
            return result, explainer.path_contributions(leaves, self.outputs_of(result.predictions, options))
        result = predictor.predict(rows, with_probabilities)
        return result, explainer.shap_values(X, self.outputs_of(result.predictions, options))

    def outputs_of(self, predictions: list[Any], options: ExplainOptions) -> np.ndarray | None:
        """The output explained for each row: its predicted class, 0 (a regressor's value), or None for every class."""
        if self.classes is None:
            return np.zeros(len(predictions), dtype=np.int64)
        if options.all_classes:
            return None
        index = {label: k for k, label in enumerate(self.classes)}
        return np.fromiter((index[label] for label in predictions), dtype=np.int64, count=len(predictions))

    def to_json(self, explained: Contributions, predictions: list[Any]) -> list[dict[str, Any]]:
        """One `{"class", "bias", "contributions"}` per row (shared/DESIGN.md section 3)."""
        names = self.feature_names
        body = []
        if explained.outputs is None:  # every class: lists aligned with `classes`, like probabilities
            bias = explained.bias.tolist()
            for label, row in zip(predictions, explained.contributions.tolist(), strict=True):
                body.append({"class": label, "bias": bias, "contributions": dict(zip(names, row, strict=True))})
            return body
        bias = explained.bias[explained.outputs].tolist()
        values = explained.contributions[:, :, 0].tolist()
        for label, row_bias, row in zip(predictions, bias, values, strict=True):
            entry = {"class": label} if self.classes is not None else {}
            entry.update(bias=row_bias, contributions=dict(zip(names, row, strict=True)))
            body.append(entry)
        return body
