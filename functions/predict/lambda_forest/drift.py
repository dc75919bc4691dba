"""Drift and live-quality statistics against the statistics frozen at training (numpy and the stdlib only).

Input drift compares live values with the manifest's frozen training distribution, bucket by bucket:
a numeric feature's quantile bins plus a bucket for missing values; a categorical feature's categories
plus buckets for missing and for unknown categories (a category training never saw).

- PSI, the population stability index: sum over buckets of (live - training) * ln(live / training),
  with both shares smoothed by half a row per bucket (Jeffreys) so an empty bucket is finite.
  Thresholds: 0.1 warn, 0.25 alert (Siddiqi, "Credit Risk Scorecards", 2006; see the README).
- Jensen-Shannon distance over category shares (natural log, the square root of the divergence, as
  scipy.spatial.distance.jensenshannon computes it); 0.1 warns (Evidently's default for it), above
  its own noise floor (`js_noise`).
- The normalised Wasserstein distance: the earth mover's distance between the live values and the
  training distribution at the bins' resolution, divided by the training standard deviation
  (Evidently's `wasserstein_distance_norm`; 0.1 is its threshold, reported here but not judged).

Sample size: PSI of two samples from one distribution is not zero. For n live rows and N training rows
in B buckets, PSI / (1/n + 1/N) is approximately chi-squared with B - 1 degrees of freedom, so a bucketing
only warns above the larger of the fixed threshold and that distribution's 1 - alpha quantile, where
alpha is a report-wide false-alarm rate divided among the tests (Bonferroni). Below `MIN_ROWS` rows
nothing is judged at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from statistics import NormalDist
from typing import Any

import numpy as np

PSI_WARN = 0.1
PSI_ALERT = 0.25
JS_WARN = 0.1
MIN_ROWS = 50  # fewer live rows (or labels) in a window than this are reported but never judged
FALSE_ALARM_RATE = 0.01  # chance that a report on undrifted traffic warns at all, split across its tests
SMOOTHING = 0.5  # rows added to every bucket on both sides

OK, WARN, ALERT = "ok", "warn", "alert"
INSUFFICIENT = "insufficient"  # too few rows to judge
UNAVAILABLE = "unavailable"  # no training baseline to compare with
SEVERITY = {OK: 0, INSUFFICIENT: 0, UNAVAILABLE: 0, WARN: 1, ALERT: 2}
MISSING = "(missing)"
UNKNOWN = "(unknown)"


# How a set of statuses sums up: the most severe, and among the harmless ones a judgement over none.
_RANK = {UNAVAILABLE: 0, INSUFFICIENT: 1, OK: 2, WARN: 3, ALERT: 4}


def worst(statuses: Sequence[str]) -> str:
    """The most severe status; ok if anything was judged ok; else why nothing could be judged."""
    return max(statuses, key=_RANK.__getitem__, default=OK)


def smoothed_shares(counts: Sequence[float]) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return (counts + SMOOTHING) / (counts.sum() + SMOOTHING * len(counts))


def psi(training_counts: Sequence[float], live_counts: Sequence[float]) -> float:
    """The population stability index of two bucketings of the same buckets (counts, or shares x rows)."""
    expected, actual = smoothed_shares(training_counts), smoothed_shares(live_counts)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon distance (natural log) between two distributions given as counts or shares."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        present = a > 0
        return float(np.sum(a[present] * np.log(a[present] / m[present])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def chi2_quantile(probability: float, dof: int) -> float:
    """The chi-squared quantile (Wilson-Hilferty: within about 1% for dof >= 3, conservative below)."""
    if dof <= 0:
        return 0.0
    z = NormalDist().inv_cdf(probability)
    h = 2.0 / (9.0 * dof)
    return dof * max(0.0, 1.0 - h + z * math.sqrt(h)) ** 3


def psi_noise(buckets: int, live_rows: int, training_rows: float, alpha: float) -> float:
    """The PSI two samples of one distribution exceed with probability `alpha`."""
    if live_rows <= 0 or training_rows <= 0:
        return math.inf
    return chi2_quantile(1.0 - alpha, buckets - 1) * (1.0 / live_rows + 1.0 / training_rows)


def js_noise(psi_noise_floor: float) -> float:
    """The Jensen-Shannon distance that chance reaches as often as PSI reaches `psi_noise_floor`.

    To second order both are sums of (p - q)^2 / p: the divergence is an eighth of PSI, the distance its root.
    """
    return math.sqrt(psi_noise_floor / 8) if math.isfinite(psi_noise_floor) else math.inf


def psi_status(value: float, noise: float, rows: int) -> str:
    if rows < MIN_ROWS:
        return INSUFFICIENT
    if value >= max(PSI_ALERT, noise):
        return ALERT
    if value >= max(PSI_WARN, noise):
        return WARN
    return OK


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts of finite `values` in the frozen bins; the first and last bins take values beyond them.

    Bin i holds edges[i] <= value < edges[i + 1] (the last bin includes its upper edge), as numpy's
    histogram counted the training values.
    """
    edges = np.asarray(edges, dtype=np.float64)
    bins = len(edges) - 1
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    return np.bincount(index, minlength=bins).astype(np.float64)


def wasserstein_to_bins(values: np.ndarray, edges: Sequence[float], counts: Sequence[float]) -> float:
    """The 1-Wasserstein distance between `values` and the training distribution, at the bins' resolution.

    Inside the training range both CDFs are taken as linear within each bin (the training side is only
    known at the edges, and treating the live side alike keeps undrifted data at a distance near 0);
    beyond it the live values' distance to the nearest edge counts in full. Integrates |F_live - F_training|
    exactly.
    """
    values = np.asarray(values, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if not len(values) or counts.sum() <= 0:
        return math.nan
    low, high = edges[0], edges[-1]
    below, above = values[values < low], values[values > high]
    tails = (np.sum(low - below) + np.sum(above - high)) / len(values)
    if high <= low:  # one training value: everything is tail
        return float(tails + np.sum(np.abs(values[(values >= low) & (values <= high)] - low)) / len(values))
    inside = values[(values >= low) & (values <= high)]
    training = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    live = (len(below) + np.concatenate([[0.0], np.cumsum(bin_counts(inside, edges))])) / len(values)
    start, end = (live - training)[:-1], (live - training)[1:]
    width = np.diff(edges)
    same_side = start * end >= 0
    crossing = (start**2 + end**2) / (2 * np.maximum(np.abs(end - start), 1e-300)) * width
    return float(tails + np.sum(np.where(same_side, np.abs(start + end) / 2 * width, crossing)))


@dataclass(frozen=True)
class Bucketing:
    """Training and live counts over the same named buckets, for one feature or the predictions."""

    buckets: list[str]
    training: np.ndarray  # counts (or shares x training rows)
    live: np.ndarray

    def without_empty(self) -> Bucketing:
        """Drop buckets empty on both sides (zero-width bins of a feature with few distinct values)."""
        keep = (self.training > 0) | (self.live > 0)
        return Bucketing(
            [b for b, k in zip(self.buckets, keep, strict=True) if k], self.training[keep], self.live[keep]
        )

    def summary(self, alpha: float) -> dict[str, Any]:
        """PSI with its noise floor and status, and both sides' shares for plots."""
        kept = self.without_empty()
        rows = int(self.live.sum())
        value = psi(kept.training, kept.live) if rows else math.nan
        noise = psi_noise(len(kept.buckets), rows, float(self.training.sum()), alpha)
        return {
            "status": psi_status(value, noise, rows) if rows else INSUFFICIENT,
            "rows": rows,
            "psi": _rounded(value),
            "psi_noise": _rounded(noise),
            "buckets": self.buckets,
            "training_shares": _shares(self.training),
            "live_shares": _shares(self.live),
        }


def summary_stats(values: np.ndarray) -> dict[str, float]:
    """min, max, mean and std of finite values: the manifest's `stats`, and the monitor's live ones."""
    if not len(values):
        return {}
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": round(float(values.mean()), 6),
        "std": round(float(values.std()), 6),
    }


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [round(float(count / total), 6) if total else 0.0 for count in counts]


def _rounded(value: float, digits: int = 6) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def numeric_bucketing(
    values: np.ndarray, edges: Sequence[float], counts: Sequence[float], missing_rate: float, training_rows: float
) -> Bucketing:
    """A numeric feature: its frozen bins and a missing bucket. `values` is float with NaN for missing."""
    counts = np.asarray(counts, dtype=np.float64)
    missing = np.isnan(values)
    present = values[~missing]
    names = [f"[{_short(low)}, {_short(high)})" for low, high in pairwise(edges)]
    names[-1] = names[-1][:-1] + "]"
    training = counts / counts.sum() * (1 - missing_rate) * training_rows if counts.sum() else counts
    return Bucketing(
        [*names, MISSING],
        np.append(training, missing_rate * training_rows),
        np.append(bin_counts(present, edges), missing.sum()),
    )


def categorical_bucketing(
    live_counts: dict[str, int],
    categories: Sequence[str],
    frequencies: dict[str, float],
    missing_rate: float,
    training_rows: float,
    missing: int,
    unknown: int,
) -> Bucketing:
    """A categorical feature: its categories, then missing, then unknown (0 in training by definition)."""
    known = np.array([float(frequencies.get(category, 0.0)) for category in categories])
    if known.sum() > 0 and abs(known.sum() + missing_rate - 1.0) > 0.01:  # shares of the non-missing rows
        known = known / known.sum() * (1.0 - missing_rate)
    return Bucketing(
        [*categories, MISSING, UNKNOWN],
        np.concatenate([known, [missing_rate, 0.0]]) * training_rows,
        np.array([*(float(live_counts.get(category, 0)) for category in categories), missing, unknown]),
    )


def _short(value: float) -> str:
    return f"{value:.4g}"


# Live quality.


def classification_quality(
    labels: Sequence[Any],
    predictions: Sequence[Any],
    probabilities: Sequence[Sequence[float] | None],
    classes: list[Any],
) -> dict[str, Any]:
    """Accuracy and macro F1 over every joined row; log loss over those captured with probabilities."""
    labels_array = np.asarray([str(label) for label in labels], dtype=object)
    predicted = np.asarray([str(value) for value in predictions], dtype=object)
    correct = labels_array == predicted
    f1_scores = []
    for name in sorted(set(labels_array) | set(predicted)):
        true_positive = float(np.sum(correct & (labels_array == name)))
        predicted_positive, actual_positive = float(np.sum(predicted == name)), float(np.sum(labels_array == name))
        denominator = predicted_positive + actual_positive
        f1_scores.append(2 * true_positive / denominator if denominator else 0.0)
    position = {str(value): index for index, value in enumerate(classes)}
    losses = [
        -math.log(min(max(float(row[position[label]]), 1e-15), 1.0))
        for label, row in zip(labels_array, probabilities, strict=True)
        if row is not None and label in position
    ]
    return {
        "rows": len(labels),
        "accuracy": _rounded(float(np.mean(correct))) if len(labels) else None,
        "f1_macro": _rounded(float(np.mean(f1_scores))) if f1_scores else None,
        "log_loss": _rounded(float(np.mean(losses))) if losses else None,
        "log_loss_rows": len(losses),
    }


def regression_quality(labels: Sequence[float], predictions: Sequence[float]) -> dict[str, Any]:
    errors = np.asarray(predictions, dtype=np.float64) - np.asarray(labels, dtype=np.float64)
    return {
        "rows": len(errors),
        "rmse": _rounded(float(np.sqrt(np.mean(errors**2)))) if len(errors) else None,
        "mae": _rounded(float(np.mean(np.abs(errors)))) if len(errors) else None,
    }


ACCURACY_DROP_WARN = 0.05
ACCURACY_DROP_ALERT = 0.10
RMSE_RATIO_WARN = 1.25
RMSE_RATIO_ALERT = 1.5


def accuracy_status(live: float | None, holdout: float | None, rows: int, alpha: float) -> str:
    """Worse than the hold-out by a margin that `rows` labels make significant (one-sided binomial z-test)."""
    if live is None or holdout is None:
        return UNAVAILABLE
    if rows < MIN_ROWS:
        return INSUFFICIENT
    standard_error = math.sqrt(max(holdout * (1 - holdout), 1e-6) / rows)
    significant = (holdout - live) / standard_error > NormalDist().inv_cdf(1 - alpha)
    drop = holdout - live
    if significant and drop >= ACCURACY_DROP_ALERT:
        return ALERT
    if significant and drop >= ACCURACY_DROP_WARN:
        return WARN
    return OK


def rmse_status(live: float | None, holdout: float | None, rows: int, alpha: float) -> str:
    """Live RMSE above the hold-out's by a ratio that `rows` labels make significant.

    Under the hold-out's error distribution (taken as normal), rows * MSE / RMSE_holdout^2 is chi-squared
    with `rows` degrees of freedom.
    """
    if live is None or not holdout:
        return UNAVAILABLE
    if rows < MIN_ROWS:
        return INSUFFICIENT
    ratio = live / holdout
    significant = ratio**2 > chi2_quantile(1 - alpha, rows) / rows
    if significant and ratio >= RMSE_RATIO_ALERT:
        return ALERT
    if significant and ratio >= RMSE_RATIO_WARN:
        return WARN
    return OK
