"""readout/ray_readout: a readout actor's scored texts cross to the driver in the one reply frame, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from amygdala_vllm.readout.ray_readout import decode_scores, encode_scores
from amygdala_vllm.errors import FormatError
from amygdala_vllm.readout.scorer import TextScores
from amygdala_vllm.vllm_ext import rpc


def _texts() -> list[TextScores]:
    g = np.random.default_rng(0)
    return [TextScores(token_ids=[1, 2, 3], tokens=["a", "b", "c"],
                       scores=g.standard_normal((3, 2, 4)).astype(np.float32),
                       pooled={"mean": g.standard_normal((2, 4)).astype(np.float32),
                               "last": g.standard_normal((2, 4)).astype(np.float32)},
                       agreement=1e-6, agreement_scale=3.5),
            TextScores(token_ids=[], tokens=[], scores=np.zeros((0, 2, 4), np.float32), pooled={}, agreement=None)]


def test_scored_texts_round_trip_exactly_in_order() -> None:
    sent = _texts()
    got = decode_scores(encode_scores(sent))
    assert len(got) == 2
    for a, b in zip(sent, got):
        assert (a.token_ids, a.tokens, a.agreement, a.agreement_scale) == (b.token_ids, b.tokens, b.agreement,
                                                                           b.agreement_scale)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert list(b.pooled) == list(a.pooled)  # mode order kept (safetensors sorts its keys)
        for m in a.pooled:
            np.testing.assert_array_equal(a.pooled[m], b.pooled[m])


def test_a_malformed_actor_reply_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="a readout actor's reply"):
        decode_scores(b"not safetensors")
    with pytest.raises(FormatError, match="a readout actor's reply is malformed"):
        decode_scores(rpc.encode_scores(rpc.ScoresReply(layers=[], requests=[])))  # a worker drain, not texts
