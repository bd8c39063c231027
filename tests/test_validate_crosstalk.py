"""validate/crosstalk: correlations of the concepts' projections, and which layer the report shows."""

from __future__ import annotations

import numpy as np
import pytest

from amygdala_vllm.validate.crosstalk import crosstalk_layer, projection_correlation


def test_projection_correlation_handles_constant_columns() -> None:
    x = np.array([[1.0, 5.0, 2.0], [2.0, 5.0, 4.0], [3.0, 5.0, 6.1]])
    c = projection_correlation(x)
    assert c[0, 2] == pytest.approx(np.corrcoef(x[:, 0], x[:, 2])[0, 1])
    assert np.isnan(c[0, 1]) and np.isnan(c[1, 1])


def test_crosstalk_layer_choice() -> None:
    assert crosstalk_layer([2, 5, 8], []) == 5
    assert crosstalk_layer([2, 5, 8], [8, 8, 2]) == 8
    assert crosstalk_layer([2, 5, 8, 11], [2, 11]) == 11  # tie: nearer the middle index (2)
