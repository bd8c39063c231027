"""Capture and readout under vLLM's default compilation (torch.compile, not ``enforce_eager``).

Each compiled engine runs in its own subprocess (this file run as a script):
vLLM's process-global state keeps every engine of a process alive until it
exits, and a child also gives each engine a clean compile. Children share one
``VLLM_CACHE_ROOT``, so the later ones start from a warm compile cache. The
eager references come from the session's eager engines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from text_datasets import varied_texts

pytestmark = pytest.mark.engine

TAPS = [0, 3]
OTHER_TAPS = [1, 2]
CONCEPTS = ["calm", "joy", "anger"]
STEP_TOKENS = 64  # prompts longer than this are prefilled in chunks; short ones share a step


def _child(job: dict[str, Any]) -> None:
    """Run one compiled engine; write its results to ``job['out']`` (npz + json)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from amygdala_vllm.engine_settings import EngineSettings
    from amygdala_vllm.vllm_ext.engine import CaptureSession, ReadoutSession, model_info, open_engine
    from amygdala_vllm.vllm_ext.engine import _prefill

    t0 = time.perf_counter()
    llm = open_engine(EngineSettings(model=job["model"], dtype=job.get("dtype", "fp32"), max_model_len=512,
                                     kv_cache_gb=0.0625, batch_size=32,
                                     max_num_batched_tokens=job.get("step_tokens", STEP_TOKENS),
                                     compile=not job["eager"]), job["taps"] or [])
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"startup_s": time.perf_counter() - t0, "info": model_info(llm)}
    prompts = job["prompts"]
    if job.get("try_capture"):
        try:
            CaptureSession(llm, [0], 1)
        except Exception as exc:  # the refusal is the result
            meta["refused"] = f"{type(exc).__name__}: {exc}"
    if job.get("capture"):
        session = CaptureSession(llm, job["capture"], 1)
        try:
            for rep in range(job.get("repeats", 1)):
                t = time.perf_counter()
                if job.get("prompt_logprobs"):  # the runner computes logits a second time in these steps
                    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1, skip_reading_prefix_cache=True)
                    got = session.collect(prompts, _prefill(llm, prompts, params))
                else:
                    got = session.run(prompts)
                meta.setdefault("capture_s", []).append(time.perf_counter() - t)
        finally:
            session.close()
        arrays["mean"] = np.stack([g.mean for g in got])
        arrays["last"] = np.stack([g.last for g in got])
    if job.get("vectors"):
        rs = ReadoutSession(llm, job["vectors"], job["manifest"])
        try:
            scores, _ = rs.run(prompts)
        finally:
            rs.close()
        for k, s in enumerate(scores):
            arrays[f"scores{k}"] = s
        # readout and capture in one pass, as validate runs them
        rs = ReadoutSession(llm, job["vectors"], job["manifest"], capture_skip_first_tokens=1)
        try:
            scores, pooled = rs.run(prompts)
        finally:
            rs.close()
        arrays["both_scores"] = np.concatenate(scores)
        arrays["both_mean"] = np.stack([g.mean for g in pooled])
        arrays["both_last"] = np.stack([g.last for g in pooled])
    out = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts[:8]],
                       SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True), use_tqdm=False)
    meta["tokens"] = [list(o.outputs[0].token_ids) for o in out]
    np.savez(job["out"] + ".npz", **arrays)
    Path(job["out"] + ".json").write_text(json.dumps(meta))


def run_child(job: dict[str, Any], cache_root: Path, timeout: float = 900) -> tuple[dict[str, np.ndarray], dict]:
    """Start this file as a script on ``job``; returns its arrays and metadata."""
    env = dict(os.environ, VLLM_CACHE_ROOT=str(cache_root), VLLM_ENABLE_V1_MULTIPROCESSING="0")
    here = Path(__file__).resolve()
    proc = subprocess.run([sys.executable, str(here), json.dumps(job)], env=env, cwd=str(here.parents[1]),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"compiled engine child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    with np.load(job["out"] + ".npz") as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(Path(job["out"] + ".json").read_text())


def _aot_dirs(cache_root: Path) -> set[str]:
    root = cache_root / "torch_compile_cache" / "torch_aot_compile"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


@pytest.fixture(scope="module")
def compiled_runs(tmp_path_factory, tiny_llama_dir):
    """Three compiled children on one cache: taps [0, 3] with readout; a plain engine; taps [1, 2] (warm cache,
    prompts run with prompt logprobs)."""
    from random_vectors import write_vectors

    root = tmp_path_factory.mktemp("compiled")
    cache = root / "vllm-cache"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    texts = varied_texts(40, max_words=120)
    prompts = [tok.encode(t) for t in texts]
    assert max(len(p) for p in prompts) > STEP_TOKENS and min(len(p) for p in prompts) < STEP_TOKENS // 2
    vec, man, mats = write_vectors(root, tiny_llama_dir, layers=TAPS, concepts=CONCEPTS)
    base = dict(model=str(tiny_llama_dir), eager=False, prompts=prompts)
    runs = {}
    runs["taps"] = run_child(dict(base, taps=TAPS, capture=TAPS, vectors=str(vec), manifest=str(man),
                                  out=str(root / "taps")), cache)
    dirs_after_first = _aot_dirs(cache)
    runs["plain"] = run_child(dict(base, taps=None, try_capture=True, out=str(root / "plain")), cache)
    runs["other"] = run_child(dict(base, taps=OTHER_TAPS, capture=OTHER_TAPS, prompt_logprobs=True,
                                   out=str(root / "other")), cache)
    return dict(runs=runs, prompts=prompts, mats=mats, cache=cache, first_dirs=dirs_after_first)


def _close(got: np.ndarray, want: np.ndarray, tol: float = 1e-5) -> float:
    """Max abs difference, asserted within ``tol`` of the activations' scale (inductor reorders fp32 sums)."""
    worst = float(np.abs(got - want).max())
    assert worst <= tol * max(1.0, float(np.abs(want).max())), (worst, float(np.abs(want).max()))
    return worst


def _eager_capture(engine_pool, model_dir, prompts, layers):
    from amygdala_vllm.vllm_ext.engine import CaptureSession

    session = CaptureSession(engine_pool.get(model_dir), layers, 1)
    try:
        return session.run(prompts)
    finally:
        session.close()


def test_compiled_capture_equals_eager_under_batching_and_chunking(compiled_runs, engine_pool, tiny_llama_dir):
    arrays, meta = compiled_runs["runs"]["taps"]
    assert meta["info"]["compiled"] and meta["info"]["tapped_layers"] == TAPS
    eager = _eager_capture(engine_pool, tiny_llama_dir, compiled_runs["prompts"], TAPS)
    mean, last = np.stack([e.mean for e in eager]), np.stack([e.last for e in eager])
    _close(arrays["mean"], mean)
    _close(arrays["last"], last)


def test_compiled_readout_scores_equal_activation_dot_vector(compiled_runs, tiny_llama_dir):
    from hf_reference import HFReference

    arrays, _ = compiled_runs["runs"]["taps"]
    ref, mats, worst = HFReference(tiny_llama_dir), compiled_runs["mats"], 0.0
    for k, p in enumerate(compiled_runs["prompts"]):
        sc = arrays[f"scores{k}"]
        assert sc.shape == (len(p), len(TAPS), len(CONCEPTS))
        rows = ref.rows(p, TAPS)  # [T, L, H]
        expected = np.stack([rows[:, l] @ mats[i].T for l, i in enumerate(TAPS)], axis=1)
        worst = max(worst, float(np.abs(sc - expected).max()))
    assert worst < 1e-4, worst


def test_readout_with_capture_in_one_pass_equals_each_alone(compiled_runs):
    """What validate runs: readout and capture together on the compiled engine, same numbers as apart."""
    arrays, _ = compiled_runs["runs"]["taps"]
    n = len(compiled_runs["prompts"])
    _close(arrays["both_scores"], np.concatenate([arrays[f"scores{k}"] for k in range(n)]))
    _close(arrays["both_mean"], arrays["mean"])
    _close(arrays["both_last"], arrays["last"])


def test_warm_cache_with_other_layers_captures_those_layers(compiled_runs, engine_pool, tiny_llama_dir):
    """Also: prompt logprobs make the runner compute logits twice a step; each row still counts once."""
    arrays, meta = compiled_runs["runs"]["other"]
    assert meta["info"]["tapped_layers"] == OTHER_TAPS
    # the first child left a compiled graph in the cache; the other layers got their own cache entry
    assert compiled_runs["first_dirs"] and _aot_dirs(compiled_runs["cache"]) - compiled_runs["first_dirs"]
    eager = _eager_capture(engine_pool, tiny_llama_dir, compiled_runs["prompts"], OTHER_TAPS)
    _close(arrays["mean"], np.stack([e.mean for e in eager]))
    _close(arrays["last"], np.stack([e.last for e in eager]))


def test_taps_leave_the_model_outputs_unchanged(compiled_runs):
    tapped = compiled_runs["runs"]["taps"][1]["tokens"]
    plain = compiled_runs["runs"]["plain"][1]["tokens"]
    assert tapped == plain and len(plain) == 8 and all(len(t) == 8 for t in plain)


def test_compiled_engine_without_taps_refuses_capture(compiled_runs):
    assert compiled_runs["runs"]["plain"][1]["info"]["compiled"]
    assert compiled_runs["runs"]["plain"][1]["info"]["tapped_layers"] == []
    assert "compiles the model" in compiled_runs["runs"]["plain"][1]["refused"]


def test_readout_cli_with_compile_scores_equal_activation_dot_vector(compiled_runs, tiny_llama_dir, tmp_path):
    """``amygdala-vllm readout --compile`` end to end: every token's raw score is HF activation . vector."""
    from hf_reference import HFReference
    from random_vectors import write_vectors

    from amygdala_vllm.readout.render import decode_scores

    vec, _, mats = write_vectors(tmp_path, tiny_llama_dir, layers=TAPS, concepts=CONCEPTS)
    text = "the storm passed and the harbour was quiet again, " * 6
    cmd = [sys.executable, "-m", "amygdala_vllm", "readout", "--compile", "--json", "--layer", "all", "--vectors", str(vec),
           "--model", str(tiny_llama_dir), "--dtype", "fp32", "--max-model-len", "512", "--kv-cache-gb", "0.0625",
           text]
    env = dict(os.environ, VLLM_CACHE_ROOT=str(compiled_runs["cache"]))
    res = subprocess.run(cmd, capture_output=True, timeout=600, env=env, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    doc = decode_scores(res.stdout)
    assert doc.layers == TAPS and sorted(doc.concepts) == sorted(CONCEPTS) and len(doc.token_ids) > STEP_TOKENS // 2
    rows = HFReference(tiny_llama_dir).rows(doc.token_ids, TAPS)  # [T, L, H]
    got = np.asarray(doc.raw, dtype=np.float64)  # [T, L, E]
    for l, layer in enumerate(TAPS):
        want = rows[:, l] @ mats[layer][[CONCEPTS.index(c) for c in doc.concepts]].T
        assert np.abs(got[:, l] - want).max() < 1e-4, (layer, float(np.abs(got[:, l] - want).max()))


def test_validate_cli_with_compile_reports_what_eager_reports(engine_pool, tiny_llama_dir, tmp_path):
    """``amygdala-vllm validate --compile`` end to end: same AUROCs as eager, agreement check passed."""
    import contextlib

    from text_datasets import write_text_dataset

    from amygdala_vllm.engine_settings import EngineSettings
    from amygdala_vllm.extract.run import ExtractOptions, run_extract
    from amygdala_vllm.readout.scorer import Readout
    from amygdala_vllm.reduce import ReduceOptions, reduce
    from amygdala_vllm.validate import read_report
    from amygdala_vllm.validate.run import ValidateOptions, run_validate

    ds = write_text_dataset(tmp_path / "ds", varied_texts(60, max_words=60))
    llm = engine_pool.get(tiny_llama_dir)
    run_extract(ExtractOptions(dataset_dir=ds, output_dir=tmp_path / "act", layers=TAPS, engine=EngineSettings(
        model=str(tiny_llama_dir), dtype="fp32", max_model_len=512, kv_cache_gb=0.0625)), llm=llm)
    vec = tmp_path / "v.safetensors"
    reduce([tmp_path / "act"], ds, vec, ReduceOptions(method="caa"))

    @contextlib.contextmanager
    def on_eager_engine(vectors, manifest, engine):
        with Readout(vectors, manifest, engine=engine, check_agreement=True, llm=llm) as r:
            yield r

    eager = run_validate(ValidateOptions(vectors=vec, training_data_dir=ds, output_dir=tmp_path / "eager",
                                         engine=EngineSettings(dtype="fp32")), open_readout=on_eager_engine).report
    cmd = [sys.executable, "-m", "amygdala_vllm", "validate", "--compile", "--vectors", str(vec),
           "--training-data-dir", str(ds), "--model", str(tiny_llama_dir), "--dtype", "fp32", "--max-model-len", "512",
           "--kv-cache-gb", "0.0625", "--output-dir", str(tmp_path / "compiled")]
    env = dict(os.environ, VLLM_CACHE_ROOT=str(tmp_path / "vllm-cache"))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _aot_dirs(tmp_path / "vllm-cache"), "validate --compile left no compiled graph: did it compile?"
    compiled = read_report(tmp_path / "compiled" / "report.json")
    assert compiled.agreement.checked and compiled.agreement.passed
    assert [c.concept for c in compiled.concepts] == [c.concept for c in eager.concepts] == ["joy"]
    for got, want in zip(compiled.concepts[0].layers, eager.concepts[0].layers):
        assert got.layer == want.layer
        assert set(got.pooled) == set(want.pooled) == {"mean", "last", "max"}
        for name in want.pooled:
            assert got.pooled[name].auroc == pytest.approx(want.pooled[name].auroc, abs=1e-9)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    _child(json.loads(sys.argv[1]))
