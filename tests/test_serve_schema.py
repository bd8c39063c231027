"""serve/schema: the ``amygdala`` object as JSON builtins: defaults left out, nulls where a position is unscored."""

from __future__ import annotations

import msgspec
import pytest

from amygdala_vllm.serve.schema import ChoiceScores, Pooled, TokenScores, encode_scores


def test_defaults_are_left_out_and_unscored_z_is_null():
    obj = ChoiceScores(concepts=["joy"], layers=[3], calibrated=[[True]],
                       prompt=TokenScores(positions=[0, 1], token_ids=[5, 6], z=[None, [[0.5]]]))
    assert encode_scores(obj) == {"concepts": ["joy"], "layers": [3], "calibrated": [[True]],
                                  "prompt": {"positions": [0, 1], "token_ids": [5, 6], "z": [None, [[0.5]]]}}
    full = ChoiceScores(concepts=["joy"], layers=[3], calibrated=[[False]], skip_first_tokens=2,
                        pooled=Pooled(num_tokens=4, z={"mean": [[1.0]]}, raw={"mean": [[1.0]]}))
    got = encode_scores(full)
    assert got["skip_first_tokens"] == 2 and got["pooled"] == {"num_tokens": 4, "z": {"mean": [[1.0]]},
                                                               "raw": {"mean": [[1.0]]}}
    assert msgspec.convert(got, ChoiceScores) == full  # a client decoding with the same Struct gets it back


def test_unknown_fields_are_refused():
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"positions": [0], "token_ids": [1], "zz": []}, TokenScores)
