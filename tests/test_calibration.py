"""calibration: the one z rule (midpoint of the class means, pooled std or per-token half gap), by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from amygdala_vllm.calibration import (calibration_arrays, calibration_transfers, midpoint, signed_z,
                                       to_z, token_calibration_arrays, token_z_arrays)
from amygdala_vllm.formats import LAYER_SEMANTICS, READOUT_FORMAT, Calibration, ReadoutManifest
from amygdala_vllm.pooling_modes import MODES


def _manifest(calibration: dict) -> ReadoutManifest:
    return ReadoutManifest(format=READOUT_FORMAT, concepts=["joy", "calm"], layers=[1, 3],
                           layer_semantics=LAYER_SEMANTICS, hidden_size=8, model="m", model_fingerprint="f",
                           pooling="mean", method="caa", counts={}, calibration=calibration)


def test_midpoint_and_signed_z():
    assert midpoint(3, -1) == 1.0
    cal = Calibration(pos_mean=3.0, neg_mean=-1.0, pooled_std=2.0, raw_norm=1.0)
    assert signed_z(5.0, cal) == 2.0 and signed_z(1.0, cal) == 0.0
    flipped = Calibration(pos_mean=-1.0, neg_mean=3.0, pooled_std=2.0, raw_norm=1.0)
    assert signed_z(5.0, flipped) == -2.0  # positives below negatives: z > 0 still means "more of the concept"
    assert math.isnan(signed_z(5.0, Calibration(pos_mean=1.0, neg_mean=0.0, pooled_std=0.0, raw_norm=1.0)))


def test_only_linear_poolings_keep_their_calibration():
    assert calibration_transfers("mean") and calibration_transfers("last")
    assert not calibration_transfers("max") and not calibration_transfers("no-such-mode")
    assert [m for m in MODES if calibration_transfers(m)] == [m for m, spec in MODES.items() if spec.linear]


def test_arrays_fall_back_to_raw_where_calibration_is_missing_or_degenerate():
    man = _manifest({
        "joy": {"1": Calibration(pos_mean=3.0, neg_mean=-1.0, pooled_std=2.0, raw_norm=1.0),
                "3": Calibration(pos_mean=3.0, neg_mean=-1.0, pooled_std=0.0, raw_norm=1.0)},  # std 0: raw
        "calm": {"3": Calibration(pos_mean=1.0, neg_mean=0.0, pooled_std=4.0, raw_norm=1.0,
                                  token_pos_mean=2.0, token_neg_mean=-2.0)},
    })
    mid, std, ok = calibration_arrays(man, [1, 3], ["joy", "calm"])
    np.testing.assert_array_equal(ok, [[True, False], [False, True]])
    np.testing.assert_array_equal(mid, [[1.0, 0.0], [0.0, 0.5]])
    np.testing.assert_array_equal(std, [[2.0, 1.0], [1.0, 4.0]])
    tmid, half, tok = token_calibration_arrays(man, [1, 3], ["joy", "calm"])
    np.testing.assert_array_equal(tok, [[False, False], [False, True]])
    assert (tmid[1, 1], half[1, 1]) == (0.0, 2.0)
    zmid, zscale, zok = token_z_arrays(man, [1, 3], ["joy", "calm"])  # per-token where present, else pooled
    np.testing.assert_array_equal(zmid, [[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(zscale, [[2.0, 1.0], [1.0, 2.0]])
    np.testing.assert_array_equal(zok, tok)


def test_to_z_broadcasts_over_leading_axes_in_float64():
    raw = np.ones((5, 2, 2), dtype=np.float32)
    z = to_z(raw, np.array([[1.0, 0.0], [0.0, 0.5]]), np.array([[2.0, 1.0], [1.0, 4.0]]))
    assert z.dtype == np.float64 and z.shape == (5, 2, 2)
    np.testing.assert_array_equal(z[3], [[0.0, 1.0], [1.0, 0.125]])
    assert to_z(np.float32(3.0), 1.0, 2.0) == pytest.approx(1.0)
