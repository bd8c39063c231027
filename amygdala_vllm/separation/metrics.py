"""Separation metrics for one concept's held-out projections: AUROC, Cohen's d, accuracy.

Each takes the projections of the concept's positive texts and of its negative
texts (any 1-D float arrays) and returns ``nan`` when the figure does not exist
(an empty class, no spread), never raises on such data: a concept without
held-out negatives is reported as n/a, not a crash. The report turns ``nan``
into ``null``.

AUROC is the rank (Mann-Whitney U) form, ties counted half, so it is exact and
O(n log n) rather than the O(n^2) pairwise count it equals. A raw dot product
carries a large constant offset that differs per layer; every metric here is
invariant to it except accuracy, which is why accuracy uses the manifest's
calibrated threshold (the midpoint of the train class means of the projection).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..calibration import midpoint

__all__ = ["auroc", "cohens_d", "accuracy_at", "calibrated_threshold", "best_index"]


def _as_1d(x: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, tied values sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def auroc(pos: Sequence[float] | np.ndarray, neg: Sequence[float] | np.ndarray) -> float:
    """P(score of a random positive > that of a random negative), ties half; nan if a class is empty.

    0.5 is chance, 1.0 perfect, below 0.5 means the vector points the wrong way
    on these texts (kept as is: flipping it would hide a sign error).
    """
    p, n = _as_1d(pos), _as_1d(neg)
    if len(p) == 0 or len(n) == 0 or not (np.isfinite(p).all() and np.isfinite(n).all()):
        return float("nan")
    ranks = _average_ranks(np.concatenate([p, n]))
    u = ranks[: len(p)].sum() - len(p) * (len(p) + 1) / 2.0
    return float(u / (len(p) * len(n)))


def cohens_d(pos: Sequence[float] | np.ndarray, neg: Sequence[float] | np.ndarray) -> float:
    """(mean_pos - mean_neg) / pooled sample std (ddof 1 per class); nan without two texts or spread.

    Unlike AUROC it says how far apart the classes sit in units of their
    spread, which is what a readout threshold has to live with.
    """
    p, n = _as_1d(pos), _as_1d(neg)
    dof = len(p) + len(n) - 2
    if len(p) == 0 or len(n) == 0 or dof <= 0:
        return float("nan")
    ssq = ((p - p.mean()) ** 2).sum() + ((n - n.mean()) ** 2).sum()
    sd = np.sqrt(ssq / dof)
    if not sd > 0:
        return float("nan")
    return float((p.mean() - n.mean()) / sd)


def calibrated_threshold(pos_mean: float, neg_mean: float) -> float:
    """The midpoint of the train class means of the projection (the manifest's calibration).

    The rule is :func:`amygdala_vllm.calibration.midpoint`, shared with readout's and serving's z.
    """
    return midpoint(pos_mean, neg_mean)


def accuracy_at(
    pos: Sequence[float] | np.ndarray, neg: Sequence[float] | np.ndarray, threshold: float, *, positive_above: bool = True
) -> float:
    """Fraction of texts on their class's side of ``threshold``; nan if there are no texts.

    ``positive_above`` is False when the train positives projected below the
    negatives (possible for a direction that generalises badly); a text exactly
    at the threshold counts as wrong for both classes.
    """
    p, n = _as_1d(pos), _as_1d(neg)
    total = len(p) + len(n)
    if total == 0 or not np.isfinite(threshold):
        return float("nan")
    if positive_above:
        right = (p > threshold).sum() + (n < threshold).sum()
    else:
        right = (p < threshold).sum() + (n > threshold).sum()
    return float(right / total)


def best_index(values: Sequence[float] | np.ndarray) -> int | None:
    """Index of the largest finite value (first on ties), or None when none is finite."""
    v = _as_1d(values)
    finite = np.isfinite(v)
    if not finite.any():
        return None
    return int(np.argmax(np.where(finite, v, -np.inf)))
