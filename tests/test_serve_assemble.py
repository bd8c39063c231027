"""serve/assemble: one choice's scores from the drained pieces (recomputed positions, prompt/completion split, z, pooling)."""

from __future__ import annotations

import numpy as np
import pytest

from amygdala_vllm.serve.assemble import ChoiceBuilder, SequenceScores
from amygdala_vllm.serve.options import parse_options

CONCEPTS, LAYERS = ["calm", "joy", "anger"], [1, 3]


def _manifest():
    from amygdala_vllm.formats import LAYER_SEMANTICS, READOUT_FORMAT, Calibration, ReadoutManifest

    return ReadoutManifest(format=READOUT_FORMAT, concepts=CONCEPTS, layers=LAYERS, layer_semantics=LAYER_SEMANTICS,
                           hidden_size=8, model="m", model_fingerprint="f", pooling="mean", method="caa", counts={},
                           calibration={"joy": {"3": Calibration(pos_mean=1.0, neg_mean=0.0, pooled_std=2.0,
                                                                 raw_norm=1.0)}})


def test_recomputed_position_replaces_its_score_and_splits_prompt_from_completion():
    seq = SequenceScores()
    s = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    seq.add(np.array([0, 1, 2, 3]), np.array([5, 6, 7, 8]), s, prompt_len=3)
    seq.add(np.array([2]), np.array([7]), np.full((1, 2, 3), 100.0, np.float32), prompt_len=3)  # preempted, recomputed
    opts = parse_options({"amygdala": ["joy"], "amygdala_layers": [3], "amygdala_raw": 1}, CONCEPTS, LAYERS)
    out = ChoiceBuilder(_manifest(), opts).build(seq, seq.positions(), pooled=True)
    assert out.prompt.positions == [0, 1, 2] and out.completion.positions == [3] and out.completion.token_ids == [8]
    assert [r[0][0] for r in out.prompt.raw] == [4.0, 10.0, 100.0]
    assert out.prompt.z[2][0][0] == pytest.approx((100.0 - 0.5) / 2.0)
    assert out.prompt.z[0] is None and out.prompt.raw[0] == [[4.0]]  # position 0 < skip_first_tokens: not scored
    assert out.calibrated == [[True]]
    assert list(out.pooled.z) == list(out.pooled.raw) == ["mean", "last", "max"]  # every registered mode, in order
    assert out.pooled.raw["mean"][0][0] == pytest.approx(np.mean([10.0, 100.0, 22.0]))  # positions >= 1
    assert out.pooled.raw["last"][0][0] == 22.0 and out.pooled.num_tokens == 4
    assert out.pooled.raw["max"][0][0] == 100.0  # the recomputed score, not the replaced 16.0
    assert out.pooled.z["max"][0][0] == pytest.approx((100.0 - 0.5) / 2.0)


def test_per_token_z_uses_the_per_token_calibration_and_pooled_z_the_pooled_one():
    import msgspec

    man = _manifest()
    cal = man.calibration["joy"]["3"]
    man.calibration["joy"]["3"] = msgspec.structs.replace(cal, token_pos_mean=3.0, token_neg_mean=-1.0)
    seq = SequenceScores()
    seq.add(np.array([0, 1, 2]), np.array([5, 6, 7]), np.full((3, 2, 3), 5.0, np.float32), prompt_len=3)
    opts = parse_options({"amygdala": ["joy"], "amygdala_layers": [3]}, CONCEPTS, LAYERS)
    out = ChoiceBuilder(man, opts).build(seq, seq.positions(), pooled=True)
    assert out.prompt.z[0] is None  # position 0 < skip_first_tokens: not scored
    assert out.prompt.z[1][0][0] == pytest.approx((5.0 - 1.0) / 2.0)  # token midpoint 1, half-gap 2
    assert out.pooled.z["mean"][0][0] == pytest.approx((5.0 - 0.5) / 2.0)  # pooled midpoint 0.5, std 2
    assert out.pooled.raw is None  # no amygdala_raw


def test_unscored_positions_have_null_z_on_the_wire_and_completions_keep_theirs():
    """The JSON a client gets (vllm_ext/serve_endpoint.py encodes ChoiceScores with msgspec): z null before skip."""
    import msgspec

    seq = SequenceScores()
    seq.add(np.array([0, 1, 2, 3]), np.array([5, 6, 7, 8]), np.full((4, 2, 3), 2.0, np.float32), prompt_len=2)
    opts = parse_options({"amygdala": ["joy"], "amygdala_layers": [3], "amygdala_raw": 1}, CONCEPTS, LAYERS)
    out = msgspec.json.decode(msgspec.json.encode(ChoiceBuilder(_manifest(), opts).build(seq, seq.positions(),
                                                                                       pooled=False)))
    assert out["prompt"]["z"] == [None, [[0.75]]] and out["prompt"]["raw"] == [[[2.0]], [[2.0]]]
    assert out["completion"]["z"] == [[[0.75]], [[0.75]]]
