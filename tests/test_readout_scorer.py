"""Readout mode in a real vLLM engine: per-token scores equal activation . vector."""

from __future__ import annotations

import numpy as np
import pytest

from hf_reference import HFReference
from random_vectors import CONCEPTS, LAYERS, write_vectors
from text_datasets import varied_texts

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def vectors(tmp_path_factory, tiny_llama_dir):
    return write_vectors(tmp_path_factory.mktemp("vectors"), tiny_llama_dir)


def _session(llm, vec, man, capture_skip=None):
    from amygdala_vllm.vllm_ext.engine import ReadoutSession

    return ReadoutSession(llm, str(vec), str(man), capture_skip_first_tokens=capture_skip)


@pytest.mark.parametrize("chunked", [False, True])
def test_every_token_score_equals_activation_dot_vector(engine_pool, tiny_llama_dir, vectors, chunked):
    kw = dict(max_num_seqs=32, max_num_batched_tokens=32) if chunked else {}
    llm = engine_pool.get(tiny_llama_dir, **kw)
    vec, man, mats = vectors
    tok = llm.get_tokenizer()
    prompts = [tok.encode(t) for t in varied_texts(10, max_words=100)]
    session = _session(llm, vec, man)
    try:
        scores, pooled = session.run(prompts)
    finally:
        session.close()
    assert pooled is None
    ref = HFReference(tiny_llama_dir)
    worst = 0.0
    for p, sc in zip(prompts, scores):
        rows = ref.rows(p, LAYERS)  # [T, L, H]
        expected = np.stack([rows[:, l] @ mats[i].T for l, i in enumerate(LAYERS)], axis=1)
        assert sc.shape == (len(p), len(LAYERS), len(CONCEPTS))
        worst = max(worst, float(np.abs(sc - expected).max()))
    assert worst < 1e-4, worst


def test_generated_tokens_are_scored_too(engine_pool, tiny_llama_dir, vectors):
    """Decode steps run through the same hooks: positions continue past the prompt."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from amygdala_vllm.vllm_ext import rpc

    llm = engine_pool.get(tiny_llama_dir)
    vec, man, mats = vectors
    prompt = llm.get_tokenizer().encode(varied_texts(1)[0])
    session = _session(llm, vec, man)
    try:
        out = llm.generate([TokensPrompt(prompt_token_ids=prompt)], SamplingParams(max_tokens=4, temperature=0.0,
                           ignore_eos=True), use_tqdm=False)[0]
        blob = llm.collective_rpc("amygdala_readout_drain")[0]
    finally:
        session.close()
    generated = list(out.outputs[0].token_ids)
    reply = rpc.decode_scores(blob)
    assert len(reply.requests) == 1 and reply.layers == LAYERS
    (got,) = reply.requests
    # the last sampled token is never forwarded, so the prompt plus three decode steps are scored
    assert got.positions.tolist() == list(range(len(prompt) + 3))
    assert got.token_ids.tolist() == prompt + generated[:3] and got.prompt_len == len(prompt)
    rows = HFReference(tiny_llama_dir).rows(prompt + generated[:3], LAYERS)
    expected = np.stack([rows[:, l] @ mats[i].T for l, i in enumerate(LAYERS)], axis=1)
    assert np.abs(got.scores - expected).max() < 1e-4


def test_readout_class_agreement_with_pooled_capture(engine_pool, tiny_llama_dir, vectors):
    from amygdala_vllm.engine_settings import EngineSettings
    from amygdala_vllm.readout.scorer import Readout

    llm = engine_pool.get(tiny_llama_dir)
    vec, man, _ = vectors
    texts = varied_texts(20, max_words=80)
    with Readout(vec, man, engine=EngineSettings(dtype="fp32", batch_size=8), check_agreement=True, llm=llm) as ro:
        got = ro.score_texts(texts)
    assert len(got) == 20
    assert max(g.agreement for g in got) < 1e-4
    g = got[3]
    assert list(g.pooled) == ["mean", "last", "max"]  # every registered mode, in registry order
    assert np.allclose(g.pooled["mean"], g.scores[1:].mean(0), atol=1e-6)
    assert np.array_equal(g.pooled["last"], g.scores[-1]) and np.array_equal(g.pooled["max"], g.scores[1:].max(0))
    assert "".join(g.tokens).strip().endswith("(3)")


@pytest.mark.parametrize(
    "override, message",
    [
        ({"hidden_size": 64}, "hidden size 64"),
        ({"layers": [1, 9]}, "has 4 decoder layers"),
        ({"manifest_layers": [1, 2]}, r"missing key\(s\) \['layer_2.vectors'\]"),
        ({"model_fingerprint": "0000000000000000"}, "fingerprint"),
    ],
)
def test_mismatched_vectors_are_refused_at_load(engine_pool, tiny_llama_dir, tmp_path, override, message):
    llm = engine_pool.get(tiny_llama_dir)
    vec, man, _ = write_vectors(tmp_path, tiny_llama_dir, **override)
    with pytest.raises(Exception, match=message):
        _session(llm, vec, man)


def test_unreadable_manifest_is_refused(engine_pool, tiny_llama_dir, tmp_path, vectors):
    llm = engine_pool.get(tiny_llama_dir)
    vec, _, _ = vectors
    bad = tmp_path / "bad.manifest.json"
    bad.write_text("{not json")
    with pytest.raises(Exception, match="not valid JSON"):
        _session(llm, vec, bad)
