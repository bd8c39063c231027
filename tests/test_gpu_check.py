"""scripts/gpu_check.py, piece by piece (its engines need a GPU; the reduced CPU mode takes over a minute here).

The end-to-end run is ``python scripts/gpu_check.py --device cpu --quick``
(docs/gpu.md, measured there); these tests keep its pieces honest: the prompts
really force chunked prefill, the vectors are a valid pair, the bounds fail on
a misattributed row, and a machine without CUDA gets one line.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from amygdala_vllm.vectors_file import load as load_vectors
from hf_reference import HFReference

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_cuda_is_one_line(gpu_check, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run scripts/gpu_check.sh instead")
    assert gpu_check.main(["--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("UsageError: no CUDA device here") and "\n" not in err


def test_prompts_force_chunks_and_vectors_are_a_valid_pair(gpu_check, tiny_llama_dir, tmp_path):
    prompts = gpu_check._prompts(tiny_llama_dir, 12)
    lengths = [len(p) for p in prompts]
    assert max(lengths) > 2 * gpu_check.BUDGET and min(lengths) < gpu_check.BUDGET  # chunked and whole prompts mix
    assert len({tuple(p) for p in prompts}) == len(prompts)
    vec = gpu_check._write_vectors(tiny_llama_dir, tmp_path)
    loaded = load_vectors(vec)
    assert list(loaded.manifest.layers) == gpu_check.LAYERS and list(loaded.manifest.concepts) == gpu_check.CONCEPTS
    for m in loaded.matrices:
        np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-6)


def test_the_bounds_pass_the_reference_and_fail_a_misattributed_row(gpu_check, tiny_llama_dir):
    ref = HFReference(tiny_llama_dir)
    prompts = gpu_check._prompts(tiny_llama_dir, 4)
    hf = [ref.pooled(p, gpu_check.LAYERS, gpu_check.SKIP) for p in prompts]
    exact = {f"{m}_{k}": h[i] for k, h in enumerate(hf) for m, i in (("mean", 0), ("last", 1))}
    shifted = {f"{m}_{k}": hf[(k + 1) % len(hf)][i] for k in range(len(hf)) for m, i in (("mean", 0), ("last", 1))}
    table = gpu_check.Table()
    gpu_check._parity(table, "exact", exact, hf, bf16=False)
    gpu_check._parity(table, "exact bf16", {k: v.astype(np.float32) for k, v in exact.items()}, hf, bf16=True)
    gpu_check._parity(table, "shifted", shifted, hf, bf16=False)
    gpu_check._parity(table, "shifted bf16", shifted, hf, bf16=True)
    results = {row[0]: row[3] for row in table.rows}
    assert all(ok for name, ok in results.items() if name.startswith("exact"))
    assert not any(ok for name, ok in results.items() if name.startswith("shifted"))  # another text's row fails
    assert table.render().splitlines()[-1] == f"{len(results) // 2} passed, {len(results) // 2} failed"
