"""Tensor and pipeline parallel on CPU, out of the box: capture and readout equal the single-rank run.

One subprocess starts a TP 2 engine, then a PP 2 engine, each on a tiny fp32
Llama whose 4 heads / 2 KV heads divide by 2 (the ranks' cores are split by
``launch.prepare_engine_env``; no binding variable is set here). The TP 1 / PP 1
reference is the session's shared in-process engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from random_vectors import write_vectors
from text_datasets import varied_texts

pytestmark = pytest.mark.engine

LAYERS = [0, 1, 2, 3]  # PP 2 puts layers 0-1 on one rank, 2-3 on the other


def test_tp2_and_pp2_equal_a_single_rank(engine_pool, tiny_llama_dir, tmp_path):
    from amygdala_vllm.vllm_ext.engine import CaptureSession, ReadoutSession

    vec, man, _ = write_vectors(tmp_path, tiny_llama_dir, layers=LAYERS)
    llm = engine_pool.get(tiny_llama_dir)
    tok = llm.get_tokenizer()
    prompts = [tok.encode(t) for t in varied_texts(8, max_words=60)]
    capture = CaptureSession(llm, LAYERS, 1)
    ref = capture.run(prompts)
    capture.close()
    readout = ReadoutSession(llm, str(vec), str(man))
    ref_scores, _ = readout.run(prompts)
    readout.close()

    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model": str(tiny_llama_dir), "layers": LAYERS, "prompts": prompts, "vectors": str(vec),
                               "manifest": str(man), "out": str(tmp_path / "got"), "configs": [[2, 1], [1, 2]]}))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("parallel_job.py")), str(job)],
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"TP 2 + PP 2 subprocess: {time.perf_counter() - t0:.1f} s")
    want_mean = np.stack([r.mean for r in ref])
    want_last = np.stack([r.last for r in ref])
    want_scores = np.concatenate(ref_scores)
    for tp, pp in ((2, 1), (1, 2)):
        got = load_file(str(tmp_path / f"got_tp{tp}_pp{pp}.safetensors"))
        print(f"TP {tp} PP {pp}: engine start {got['seconds'][0]:.1f} s, total {got['seconds'][1]:.1f} s")
        assert got["mean"].shape == want_mean.shape and got["scores"].shape == want_scores.shape
        for name, want in (("mean", want_mean), ("last", want_last), ("scores", want_scores)):
            diff = float(np.abs(got[name] - want).max())
            assert diff < 1e-5 * max(1.0, float(np.abs(want).max())), (tp, pp, name, diff)
