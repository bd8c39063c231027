"""serve/options: a request's ``vllm_xargs`` resolved against the manifest, or refused by field."""

from __future__ import annotations

import pytest

from amygdala_vllm.serve.options import OptionError, parse_options, wants_readout

CONCEPTS, LAYERS = ["calm", "joy", "anger"], [1, 3]


def test_options_resolve_and_refuse_by_field():
    o = parse_options({"amygdala": ["joy", "joy", "calm"], "amygdala_layers": 3, "amygdala_raw": 1}, CONCEPTS, LAYERS)
    assert (o.concepts, o.layers, o.tokens, o.raw) == (["joy", "calm"], [3], True, True)
    assert parse_options({"amygdala": "all"}, CONCEPTS, LAYERS).concepts == CONCEPTS
    assert not wants_readout({"kv_transfer_params": 1}) and not wants_readout(None)
    for bad, field in [({"amygdala": []}, "amygdala"), ({"amygdala": "all", "amygdala_raw": True}, "amygdala_raw"),
                       ({"amygdala": "all", "amygdala_layers": ["1"]}, "amygdala_layers"),
                       ({"amygdala": "all", "amygdala_tag": "x"}, "amygdala_tag")]:
        with pytest.raises(OptionError) as info:
            parse_options(bad, CONCEPTS, LAYERS)
        assert info.value.field == field and str(info.value).startswith(f"vllm_xargs.{field}:")
