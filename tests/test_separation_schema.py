"""separation/schema: ``opt`` (a non-finite float becomes null in a report) and the specificity Structs' strictness."""

from __future__ import annotations

import math

import msgspec
import pytest

from amygdala_vllm.separation.schema import SiblingLayer, opt


def test_opt_keeps_finite_floats_and_nulls_the_rest():
    assert opt(0.25) == 0.25 and opt(3) == 3.0 and isinstance(opt(3), float)
    assert opt(math.nan) is None and opt(math.inf) is None and opt(-math.inf) is None


def test_a_typo_in_a_report_is_refused():
    row = {"layer": 3, "siblings": ["calm"], "sibling_auroc": [0.5], "sibling_auroc_mean": 0.5,
           "sibling_auroc_min": 0.5, "one_vs_rest_auroc": 0.9, "gap": 0.4}
    assert msgspec.convert(row, SiblingLayer).gap == 0.4
    with pytest.raises(msgspec.ValidationError, match="unknown field `gapp`"):
        msgspec.convert({**row, "gapp": 0.4}, SiblingLayer)
