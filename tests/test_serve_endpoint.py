"""``amygdala-vllm serve``: a real vLLM OpenAI server with readout, driven by the official ``openai`` client.

One server for the whole module (~60 s to start): the tiny fp32 Llama, eager,
prefix caching on, a 16-block KV cache (so 32 concurrent requests preempt and
recompute) and a 128-token step budget (so long prompts arrive in chunks).
Every score is checked against HF transformers' ``activation . vector``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from amygdala_vllm.serve.process import metric_total
from hf_reference import HFReference
from random_vectors import CONCEPTS, LAYERS, write_vectors
from serve_fixture import XARGS, client_for, greedy_then_stream, model_of, stream_scores, vllm_server
from text_datasets import varied_texts

pytestmark = pytest.mark.engine

CAL = {"pos_mean": 0.5, "neg_mean": -0.1, "pooled_std": 0.25, "raw_norm": 1.0}  # joy at layer 1 only
KV_BYTES = 16 * 128 * 2048  # 16 blocks of 128 tokens x 2 KiB (4 layers x K,V x 2 heads x 32 x fp32)


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_llama_dir):
    from amygdala_vllm.formats import Calibration

    root = tmp_path_factory.mktemp("serve")
    vec, _, mats = write_vectors(root, tiny_llama_dir, calibration={"joy": {"1": Calibration(**CAL)}})
    with vllm_server(tiny_llama_dir, root, vectors=vec, kv_cache_bytes=KV_BYTES,
                     args=["--eager", "--max-num-seqs", "32", "--max-num-batched-tokens", "128",
                           "--enable-prefix-caching", "--seed", "0"]) as base:
        yield base, mats


@pytest.fixture(scope="module")
def hf(tiny_llama_dir):
    return HFReference(tiny_llama_dir)


def _expected_raw(hf, mats, ids):
    rows = hf.rows(list(ids), LAYERS)  # [T, L, H]
    return np.stack([rows[:, l] @ mats[i].T for l, i in enumerate(LAYERS)], axis=1)  # [T, L, E]


def _check_choice(am, prompt_ids, completion_ids, hf, mats, concepts=CONCEPTS):
    """Every prompt token and every completion token but the last is scored, and equals HF's dot product."""
    prompt, completion = am["prompt"], am.get("completion")
    assert prompt["positions"] == list(range(len(prompt_ids)))
    assert prompt["token_ids"] == list(prompt_ids)
    n_done = len(completion_ids) - 1
    got_completion = completion["positions"] if completion else []
    assert got_completion == list(range(len(prompt_ids), len(prompt_ids) + n_done))
    if completion:
        assert completion["token_ids"] == list(completion_ids[:-1])
    cols = [CONCEPTS.index(c) for c in concepts]
    expected = _expected_raw(hf, mats, list(prompt_ids) + list(completion_ids[:-1]))[..., cols]
    raw = np.asarray(prompt["raw"] + (completion["raw"] if completion else []))
    np.testing.assert_allclose(raw, expected, atol=1e-4, rtol=0)
    z_rows = prompt["z"] + (completion["z"] if completion else [])
    skip = am.get("skip_first_tokens", 1)  # omitted when 1, the default
    assert z_rows[:skip] == [None] * skip  # positions before skip_first_tokens are not scored: z null, raw kept
    z = np.asarray(z_rows[skip:])
    want_z = expected.copy()[skip:]
    if "joy" in concepts:
        j = concepts.index("joy")
        want_z[:, 0, j] = (expected[skip:, 0, j] - (CAL["pos_mean"] + CAL["neg_mean"]) / 2) / CAL["pooled_std"]
        assert am["calibrated"][0][j] is True
    np.testing.assert_allclose(z, want_z, atol=1e-3, rtol=1e-5)
    pooled = am["pooled"]
    assert pooled["num_tokens"] == len(prompt_ids) + n_done
    np.testing.assert_allclose(pooled["raw"]["last"], expected[-1], atol=1e-4, rtol=0)
    np.testing.assert_allclose(pooled["raw"]["mean"], expected[1:].mean(0), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(pooled["raw"]["max"], raw[skip:].max(0))  # the sent scores at positions >= skip
    np.testing.assert_allclose(pooled["raw"]["max"], expected[1:].max(0), atol=1e-4, rtol=0)


def test_chat_and_completion_scores_equal_hf(served, hf):
    base, mats = served
    client, model = client_for(base), model_of(base)
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "the quiet river at dawn"}], max_tokens=6, temperature=0,
        extra_body={"vllm_xargs": XARGS, "return_token_ids": True}).model_dump()
    ch = chat["choices"][0]
    _check_choice(ch["amygdala"], chat["prompt_token_ids"], ch["token_ids"], hf, mats)
    comp = client.completions.create(
        model=model, prompt=["a small bird sang", "heavy rain fell on the old roof"], max_tokens=5, n=2,
        temperature=1.0, seed=1, extra_body={"vllm_xargs": {**XARGS, "amygdala": ["anger", "joy"]},
                                             "return_token_ids": True}).model_dump()
    assert [c["index"] for c in comp["choices"]] == [0, 1, 2, 3]
    for c in comp["choices"]:  # prompt i, sample k -> choice i * n + k, each with its own sampled tokens
        _check_choice(c["amygdala"], c["prompt_token_ids"], c["token_ids"], hf, mats, concepts=["anger", "joy"])
    plain = client.completions.create(model=model, prompt="a small bird sang", max_tokens=3).model_dump()
    assert "amygdala" not in plain["choices"][0]


def test_streamed_scores_equal_hf(served, hf):
    base, mats = served
    client, model = client_for(base), model_of(base)
    text = varied_texts(3, max_words=40)[2]
    ids, out, merged = greedy_then_stream(client, model, text, 12)
    _check_choice(merged, ids, out, hf, mats)
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=8, temperature=0, stream=True,
        extra_body={"vllm_xargs": XARGS, "ignore_eos": True})
    merged, _ = stream_scores(chat)
    assert merged["pooled"]["num_tokens"] == len(merged["prompt"]["positions"]) + 7


def test_32_concurrent_half_with_readout_under_preemption(served, hf):
    from openai import AsyncOpenAI

    base, mats = served
    model = model_of(base)
    # 110-126 token prompts growing past 128 while decoding: 16 blocks cannot hold 32 of them, so vLLM preempts
    rng = np.random.default_rng(0)
    prompts = [rng.integers(10, 500, size=int(rng.integers(110, 127))).tolist() for _ in range(32)]
    preempted_before = metric_total(base, "vllm:num_preemptions_total")

    async def one(client, i):
        extra = {"return_token_ids": True, "ignore_eos": True}
        if i % 2 == 0:
            extra["vllm_xargs"] = XARGS
        r = await client.completions.create(model=model, prompt=prompts[i], max_tokens=24, temperature=0,
                                            extra_body=extra)
        return r.model_dump()

    async def main():
        client = AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=300)
        return await asyncio.gather(*(one(client, i) for i in range(32)))

    results = asyncio.run(main())
    for i, r in enumerate(results):
        c = r["choices"][0]
        if i % 2:
            assert "amygdala" not in c
        else:
            _check_choice(c["amygdala"], c["prompt_token_ids"], c["token_ids"], hf, mats)
    assert metric_total(base, "vllm:num_preemptions_total") > preempted_before  # recompute really happened
    stats = httpx.get(base + "/amygdala/stats").json()
    assert stats["requests_held"] == 0 and stats["rows_held"] == 0


def _hits_settled(base, before, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        now = metric_total(base, "vllm:prefix_cache_hits_total")
        if now != before or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def test_shared_prefix_is_scored_in_full_while_plain_requests_hit_the_cache(served, hf):
    base, mats = served
    client, model = client_for(base), model_of(base)
    prefix = " ".join(varied_texts(12, max_words=40))  # > 2 KV blocks of 128 tokens
    hits0 = metric_total(base, "vllm:prefix_cache_hits_total")
    client.completions.create(model=model, prompt=prefix + " one", max_tokens=1)
    hits1 = _hits_settled(base, hits0, timeout=1.0)
    client.completions.create(model=model, prompt=prefix + " two", max_tokens=1)
    hits2 = _hits_settled(base, hits1)
    assert hits2 >= hits1 + 128, (hits0, hits1, hits2)  # plain requests share cached blocks
    r = client.completions.create(model=model, prompt=prefix + " three", max_tokens=2, temperature=0,
                                  extra_body={"vllm_xargs": XARGS, "return_token_ids": True}).model_dump()
    c = r["choices"][0]
    assert len(c["prompt_token_ids"]) > 256
    _check_choice(c["amygdala"], c["prompt_token_ids"], c["token_ids"], hf, mats)
    time.sleep(1.0)
    hits3 = metric_total(base, "vllm:prefix_cache_hits_total")
    assert hits3 == hits2  # the readout request read nothing from the cache
    client.completions.create(model=model, prompt=prefix + " four", max_tokens=1)
    assert _hits_settled(base, hits3) >= hits3 + 128  # and plain requests still do


def test_aborted_stream_leaves_no_scores_on_the_worker(served):
    base, _ = served
    client, model = client_for(base), model_of(base)
    stream = client.completions.create(model=model, prompt="a long story begins", max_tokens=400, temperature=0,
                                       stream=True, extra_body={"vllm_xargs": XARGS, "ignore_eos": True})
    for k, _chunk in enumerate(stream):
        if k == 5:
            break
    stream.close()
    deadline = time.monotonic() + 20
    while True:
        stats = httpx.get(base + "/amygdala/stats").json()
        if stats["requests_held"] == 0 and stats["rows_held"] == 0:
            break
        assert time.monotonic() < deadline, stats  # the worker keeps undrained scores 120 s unless discarded
        time.sleep(0.5)
    assert stats["tags_dropped"] >= 1


@pytest.mark.parametrize("xargs, field", [
    ({"amygdala": ["nope"]}, "amygdala"),
    ({"amygdala": 3}, "amygdala"),
    ({"amygdala": "all", "amygdala_layers": [2]}, "amygdala_layers"),
    ({"amygdala": "all", "amygdala_tokens": 5}, "amygdala_tokens"),
    ({"amygdala": "all", "amygdala_layer": [1]}, "amygdala_layer"),
    ({"amygdala_raw": 1}, "amygdala"),
])
def test_bad_readout_options_are_400_naming_the_field(served, xargs, field):
    from openai import BadRequestError

    base, _ = served
    client, model = client_for(base), model_of(base)
    with pytest.raises(BadRequestError) as info:
        client.completions.create(model=model, prompt="hi", max_tokens=1, extra_body={"vllm_xargs": xargs})
    assert f"vllm_xargs.{field}:" in str(info.value)


def test_pooled_only_and_selected_layers(served, hf):
    base, mats = served
    client, model = client_for(base), model_of(base)
    r = client.completions.create(model=model, prompt="calm water", max_tokens=3, temperature=0, extra_body={
        "vllm_xargs": {"amygdala": ["calm"], "amygdala_layers": [3], "amygdala_tokens": 0, "amygdala_raw": 1},
        "return_token_ids": True}).model_dump()
    c = r["choices"][0]
    am = c["amygdala"]
    assert am["layers"] == [3] and am["concepts"] == ["calm"]
    assert "z" not in am["prompt"] and "raw" not in am["prompt"]
    expected = _expected_raw(hf, mats, c["prompt_token_ids"] + c["token_ids"][:-1])[:, 1:, :1]
    np.testing.assert_allclose(am["pooled"]["raw"]["last"], expected[-1], atol=1e-4, rtol=0)
    np.testing.assert_allclose(am["pooled"]["z"]["mean"], expected[1:].mean(0), atol=1e-4, rtol=0)
