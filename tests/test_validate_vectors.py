"""validate/vectors: validate's two reads of a vectors file: a fully calibrated manifest, then float64 ``[E, L, H]``."""

from __future__ import annotations

import numpy as np
import pytest

from amygdala_vllm.errors import FormatError
from amygdala_vllm.formats import Calibration
from amygdala_vllm.validate.vectors import load_manifest, load_vectors
from random_vectors import CONCEPTS, LAYERS, write_vectors

CAL = Calibration(pos_mean=1.0, neg_mean=0.0, pooled_std=1.0, raw_norm=1.0)


def test_stacked_in_manifest_order_as_float64(tmp_path, tiny_llama_dir):
    cal = {c: {str(layer): CAL for layer in LAYERS} for c in CONCEPTS}
    vec, man_path, mats = write_vectors(tmp_path, tiny_llama_dir, calibration=cal)
    man = load_manifest(man_path)
    got = load_vectors(vec, man)
    assert got.dtype == np.float64 and got.shape == (len(CONCEPTS), len(LAYERS), 128)
    np.testing.assert_array_equal(got[:, 1], mats[LAYERS[1]])
    other = tmp_path / "other"
    other.mkdir()
    _, other_man, _ = write_vectors(other, tiny_llama_dir, calibration=cal, seed=1, pooling="last")
    with pytest.raises(FormatError, match="manifest mismatch"):
        load_vectors(vec, load_manifest(other_man))


def test_a_concept_without_calibration_is_refused(tmp_path, tiny_llama_dir):
    _, man_path, _ = write_vectors(tmp_path, tiny_llama_dir)  # no calibration at all
    with pytest.raises(FormatError):
        load_manifest(man_path)
