"""reduce/directions: unit norms (a zero direction named), CAA, and shrinkage LDA against numpy by hand."""

from __future__ import annotations

import numpy as np
import pytest

from amygdala_vllm.errors import CaptureError, UsageError
from amygdala_vllm.reduce.directions import caa, lda, unit


def test_unit_normalises_each_concept_and_layer_and_names_a_zero_direction():
    raw = np.array([[[3.0, 4.0], [0.0, 2.0]], [[1.0, 0.0], [0.0, 0.0]]])  # [E=2, L=2, H=2]
    with pytest.raises(CaptureError, match=r"concept 'calm' has a zero direction at layer 7"):
        unit(raw, ["joy", "calm"], [3, 7])
    raw[1, 1] = [0.0, -5.0]
    np.testing.assert_allclose(unit(raw, ["joy", "calm"], [3, 7]), [[[0.6, 0.8], [0.0, 1.0]], [[1.0, 0.0], [0.0, -1.0]]])


def test_caa_is_the_mean_difference_as_a_copy():
    d = np.ones((1, 1, 3))
    out = caa(d)
    out[...] = 0
    assert d.sum() == 3


def test_lda_solves_the_shrunk_within_covariance_per_layer():
    rng = np.random.default_rng(0)
    d = rng.standard_normal((2, 2, 3))
    a = rng.standard_normal((2, 3, 3))
    cov = a @ a.transpose(0, 2, 1) + np.eye(3)
    want = np.stack([np.linalg.solve(cov[li] + 0.5 * np.mean(np.diag(cov[li])) * np.eye(3), d[:, li].T).T
                     for li in range(2)], axis=1)
    np.testing.assert_allclose(lda(d, cov.copy(), 0.5), want, rtol=1e-10)
    with pytest.raises(UsageError, match="--shrinkage must be >= 0"):
        lda(d, cov.copy(), -1.0)
    with pytest.raises(UsageError, match="singular; use --shrinkage > 0"):
        lda(d, np.zeros((2, 3, 3)), 0.0)
