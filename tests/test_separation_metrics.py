"""separation.metrics: hand-computed values, a brute-force pairwise reference, and the empty cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amygdala_vllm.separation.metrics import accuracy_at, auroc, best_index, calibrated_threshold, cohens_d
from synthetic import auroc as pairwise_auroc


def test_auroc_hand_computed() -> None:
    assert auroc([3, 4], [1, 2]) == 1.0
    assert auroc([1, 2], [3, 4]) == 0.0
    # pairs: (2>1) (2<3) (4>1) (4>3) -> 3 of 4
    assert auroc([2, 4], [1, 3]) == 0.75
    # ties count half: (1=1) -> 0.5, (2>1) -> 1 ; over 2 pairs
    assert auroc([1, 2], [1]) == 0.75
    assert auroc([5, 5, 5], [5, 5]) == 0.5


def test_cohens_d_hand_computed() -> None:
    # pos mean 2, var 1 (ddof 1); neg mean 0, var 1 -> pooled sd 1 -> d = 2
    assert cohens_d([1, 2, 3], [-1, 0, 1]) == pytest.approx(2.0)
    # unequal sizes: pos [0, 2] ssq 2, neg [5, 6, 7] ssq 2 -> sd sqrt(4/3); d = (1 - 6) / sd
    assert cohens_d([0, 2], [5, 6, 7]) == pytest.approx(-5 / math.sqrt(4 / 3))


@pytest.mark.parametrize("pos,neg", [([], [1.0]), ([1.0], []), ([], [])])
def test_empty_classes_are_nan_not_errors(pos: list[float], neg: list[float]) -> None:
    assert math.isnan(auroc(pos, neg))
    assert math.isnan(cohens_d(pos, neg))


def test_cohens_d_without_spread_is_nan() -> None:
    assert math.isnan(cohens_d([1.0], [0.0]))  # no degrees of freedom
    assert math.isnan(cohens_d([1.0, 1.0], [0.0, 0.0]))  # zero spread


def test_accuracy_at_calibrated_threshold() -> None:
    thr = calibrated_threshold(pos_mean=4.0, neg_mean=0.0)
    assert thr == 2.0
    # 3, 5 right; 1 wrong; 0 right; 2.5 wrong -> 3 of 5
    assert accuracy_at([3, 5, 1], [0, 2.5], thr) == pytest.approx(3 / 5)
    assert accuracy_at([1.0], [3.0], 2.0, positive_above=False) == 1.0
    assert accuracy_at([2.0], [2.0], 2.0) == 0.0  # on the threshold: wrong for both
    assert math.isnan(accuracy_at([], [], 0.0))


def test_best_index_skips_nan() -> None:
    assert best_index([0.5, float("nan"), 0.9, 0.9]) == 2
    assert best_index([float("nan")]) is None
    assert best_index([]) is None


small_floats = st.lists(st.integers(-5, 5).map(float) | st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(small_floats, small_floats)
def test_auroc_matches_pairwise_reference(pos: list[float], neg: list[float]) -> None:
    assert auroc(pos, neg) == pytest.approx(pairwise_auroc(np.array(pos), np.array(neg)), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(small_floats, small_floats, st.floats(-100, 100), st.floats(0.01, 100))
def test_auroc_and_d_ignore_offset_and_scale(pos: list[float], neg: list[float], shift: float, scale: float) -> None:
    p, n = np.array(pos), np.array(neg)
    a = auroc(p, n)
    # an affine map with positive scale keeps every pairwise order (up to rounding of near-ties)
    if len(np.unique(np.concatenate([p, n]))) == len(p) + len(n) and np.min(np.diff(np.sort(np.concatenate([p, n])))) > 1e-6:
        assert auroc(p * scale + shift, n * scale + shift) == pytest.approx(a)
    d = cohens_d(p, n)
    # d is kept only where the class spread survives the map: float64 rounds each mapped value by about
    # eps * (|shift| + scale * |x|), which swamps a spread below that (pos=[0], neg=[0, 5.8e-105], shift 1:
    # the spread rounds to 0 and d to nan). Demanding the mapped spread 1e8 times the rounding bounds the
    # relative change of d far inside the tolerance.
    pooled = np.sqrt((((p - p.mean()) ** 2).sum() + ((n - n.mean()) ** 2).sum()) / max(len(p) + len(n) - 2, 1))
    rounding = np.finfo(np.float64).eps * (abs(shift) + scale * np.abs(np.concatenate([p, n])).max())
    if math.isfinite(d) and scale * pooled > 1e8 * rounding:
        assert cohens_d(p * scale + shift, n * scale + shift) == pytest.approx(d, rel=1e-6, abs=1e-6)
