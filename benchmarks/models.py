"""The benchmark's models: the iris forest and a large one, each published for both serving paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lambda_forest.store import LocalStore
from training.data import Dataset, _fingerprint, load_builtin
from training.forest import ForestParams, build_artifact, publish, train

CACHE = Path(__file__).resolve().parent / ".cache"
LARGE_ROWS, LARGE_FEATURES, LARGE_TREES = 100_000, 50, 100
PATHS = ("sklearn", "compiled")


@dataclass(frozen=True)
class BenchModel:
    label: str
    rows: np.ndarray  # request rows drawn from the training distribution
    store: LocalStore

    def name(self, path: str) -> str:
        return f"{self.label}-{path}"


def large_dataset() -> Dataset:
    from sklearn.datasets import make_classification

    X, y = make_classification(LARGE_ROWS, LARGE_FEATURES, n_informative=20, n_redundant=10, random_state=0)
    labels = np.asarray(["no", "yes"])[y]
    return Dataset(
        X,
        labels,
        [f"f{i}" for i in range(LARGE_FEATURES)],
        "label",
        "classification",
        "synthetic:make_classification",
        _fingerprint(X, labels),
    )


def prepare(store_root: Path = CACHE / "store", labels: tuple[str, ...] = ("iris", "large")) -> list[BenchModel]:
    """Train and publish (once; later runs reuse the cache) iris and the large forest, for both paths."""
    store = LocalStore(store_root)
    models = []
    for label, load, trees in (("iris", lambda: load_builtin("iris"), 100), ("large", large_dataset, LARGE_TREES)):
        if label not in labels:
            continue
        data = load()
        if not all(store.read_alias(f"{label}-{path}", "live") for path in PATHS):
            print(f"training the {label} forest ({trees} trees, {data.rows} rows x {data.X.shape[1]} features)")
            model = train(data, ForestParams(n_estimators=trees), progress=lambda message: None)
            for path in PATHS:
                manifest, files = build_artifact(f"{label}-{path}", model, compile=path == "compiled")
                publish(store, manifest, files)
                store.set_alias(manifest.name, "live", manifest.version)
        models.append(BenchModel(label, data.X, store))
    return models
