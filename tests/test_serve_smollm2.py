"""``amygdala-vllm serve`` in its default (compiled, tapped custom-op) mode on the real SmolLM2.

tests/test_serve_endpoint.py covers the server's behaviour on the tiny Llama in eager
mode; this module checks the default path a user gets: torch.compile with the
manifest layers tapped by the opaque custom op, on the real model where meaning
matters. One server for the module (fp32, 64 MiB KV cache, 512 tokens); every
raw score is checked against HF transformers' fp32 ``activation . vector``.
"""

from __future__ import annotations

import numpy as np
import pytest

from hf_reference import HFReference
from random_vectors import write_vectors
from serve_fixture import client_for, greedy_then_stream, model_of, vllm_server

pytestmark = [pytest.mark.engine, pytest.mark.smollm2]

LAYERS = [10, 29]  # a middle layer and the last (HF's last hidden state is post-norm: hf_reference hooks it)
CONCEPTS = ["calm", "joy", "anger"]
HIDDEN = 576
KV_BYTES = 64 * 2**20  # ~11 blocks of 128 tokens (30 layers x K,V x 3 heads x 64 x fp32 = 45 KiB a token)
XARGS = {"amygdala": "all", "amygdala_raw": 1}


@pytest.fixture(scope="module")
def served(tmp_path_factory, smollm2_dir):
    root = tmp_path_factory.mktemp("serve-smollm2")
    vec, _, mats = write_vectors(root, smollm2_dir, hidden=HIDDEN, layers=LAYERS, concepts=CONCEPTS)
    with vllm_server(smollm2_dir, root, vectors=vec, kv_cache_bytes=KV_BYTES, args=["--max-num-seqs", "8", "--seed", "0"]) as base:
        yield base, mats


@pytest.fixture(scope="module")
def hf(smollm2_dir):
    return HFReference(smollm2_dir)


def _check_raw(am: dict, prompt_ids: list[int], completion_ids: list[int], hf: HFReference,
               mats: dict) -> tuple[float, float]:
    """Scored ids are the prompt and every completion token but the last (never fed back); raw equals HF.

    The bound is relative to the largest score: SmolLM2's residual stream reaches
    ~1e3 at late layers, where fp32's own rounding (~6e-8 relative, summed over
    576 products and 30 layers computed in a different order than HF) is above
    an absolute 1e-4. Measured (fp32, compiled): max diff 6.6e-4 at max |score|
    210, so the bound (2.1e-2) leaves 30x headroom yet stays ~1e3 times below
    the gap a wrong layer, token or vector makes. Returns (max abs diff, max |score|).
    """
    prompt, completion = am["prompt"], am.get("completion") or {"token_ids": [], "raw": [], "positions": []}
    seen = list(prompt_ids) + list(completion_ids[:-1])
    assert prompt["token_ids"] + completion["token_ids"] == seen
    assert prompt["positions"] + completion["positions"] == list(range(len(seen)))
    rows = hf.rows(seen, LAYERS)  # [T, L, H]
    expected = np.stack([rows[:, k] @ mats[i].T for k, i in enumerate(LAYERS)], axis=1)  # [T, L, E]
    raw = np.asarray(prompt["raw"] + completion["raw"])
    bound = 1e-4 * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(raw, expected, atol=bound, rtol=0)
    assert am["pooled"]["num_tokens"] == len(seen)
    # max pools the scored per-token raw values at positions >= skip (the field is omitted when 1, its default)
    skip = am.get("skip_first_tokens", 1)
    np.testing.assert_array_equal(am["pooled"]["raw"]["max"], raw[skip:].max(0) if len(raw) > skip else raw[-1])
    return float(np.abs(raw - expected).max()), float(np.abs(expected).max())


def test_compiled_server_chat_and_stream_scores_equal_hf(served, hf):
    base, mats = served
    client, model = client_for(base), model_of(base)
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "I just heard my sister is coming home after two years."}],
        max_tokens=8, temperature=0, extra_body={"vllm_xargs": XARGS, "return_token_ids": True}).model_dump()
    ch = chat["choices"][0]
    assert ch["amygdala"]["layers"] == LAYERS and ch["amygdala"]["concepts"] == CONCEPTS
    diffs = [_check_raw(ch["amygdala"], chat["prompt_token_ids"], ch["token_ids"], hf, mats)]

    text = "The storm tore the roof off the old barn, and the farmer stood in the rain"
    ids, out, merged = greedy_then_stream(client, model, text, 10, XARGS)
    diffs.append(_check_raw(merged, ids, out, hf, mats))
    print(f"max |raw - HF| = {max(d for d, _ in diffs):.3g}, max |score| = {max(m for _, m in diffs):.3g}")
