"""features: vLLM features the runner views cannot read, and a vLLM outside the range, refused before any model loads.

Each refusal is one line naming the feature (or the installed version) and
what to do, exit 1, nothing written: through the library (engine keyword
arguments, ``vllm serve`` flags) and through the CLI.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from amygdala_vllm.errors import IncompatibleVLLMError
from amygdala_vllm.vllm_ext.features import REFUSED_FEATURES, check_engine_features, check_serve_flags


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"enable_dbo": True}, "--enable-dbo"),
    ({"ubatch_size": 2}, "--ubatch-size"),
    ({"enable_batch_sharded_sampling": True}, "--enable-batch-sharded-sampling"),
    ({"enable_expert_parallel": True, "tensor_parallel_size": 2, "data_parallel_size": 2}, "--enable-expert-parallel"),
    ({"prefill_context_parallel_size": 2}, "--prefill-context-parallel-size"),
    ({"kv_sharing_fast_prefill": True}, "--kv-sharing-fast-prefill"),
    ({"speculative_config": {"method": "eagle", "enable_adaptive_verification": True}},
     "--speculative-config enable_adaptive_verification"),
])
def test_engine_arguments_that_turn_on_a_refused_feature(kwargs: dict, flag: str) -> None:
    with pytest.raises(IncompatibleVLLMError) as info:
        check_engine_features({"model": "m", "tensor_parallel_size": 1, **kwargs})
    assert "\n" not in str(info.value) and f"run without {flag}" in str(info.value)


def test_what_stays_allowed() -> None:
    check_engine_features({"tensor_parallel_size": 2, "pipeline_parallel_size": 2, "enable_dbo": False,
                           "ubatch_size": 1, "enable_expert_parallel": True, "data_parallel_size": 1,
                           "speculative_config": {"method": "eagle"}})
    check_serve_flags(["--port", "8000", "-tp", "2", "--enable-expert-parallel", "--no-enable-dbo",
                       "--ubatch-size=1", "--enable-dbo=false"])
    assert len({f.flag for f in REFUSED_FEATURES}) == len(REFUSED_FEATURES)


@pytest.mark.parametrize("argv", [
    ["--enable-dbo"], ["--enable-dbo=true"], ["--ubatch-size", "4"], ["--ubatch-size=4"],
    ["-tp", "2", "-dp", "2", "-ep"], ["--tensor-parallel-size=2", "--data-parallel-size", "2", "--enable-expert-parallel"],
    ["-pcp", "2"], ["--kv-sharing-fast-prefill"], ["--enable-batch-sharded-sampling"],
    ["-sc", '{"method": "eagle", "enable_adaptive_verification": true}'],
])
def test_serve_flags_that_turn_on_a_refused_feature(argv: list[str]) -> None:
    with pytest.raises(IncompatibleVLLMError, match="is not supported by amygdala-vllm's runner views"):
        check_serve_flags(["--port", "1", *argv])


def test_serve_cli_refuses_a_vllm_outside_the_range_before_anything_starts(tmp_path, tiny_llama_dir, monkeypatch):
    from amygdala_vllm.cli import app
    from amygdala_vllm.vllm_ext import launch

    monkeypatch.setattr(launch, "installed_vllm_version", lambda: "0.35.1")
    r = CliRunner().invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(tmp_path / "v.safetensors")])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert r.output.strip().startswith("IncompatibleVLLMError: vLLM 0.35.1 is installed; amygdala-vllm supports 0.32.x, 0.33.x, "
                               "0.34.x")
    monkeypatch.setattr(launch, "installed_vllm_version", lambda: None)
    r = CliRunner().invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(tmp_path / "v.safetensors")])
    assert r.exit_code == 1 and "vLLM is not installed" in r.output


def test_extract_cli_refuses_a_vllm_outside_the_range_and_writes_nothing(tmp_path, tiny_llama_dir, monkeypatch):
    from text_datasets import varied_texts, write_text_dataset

    from amygdala_vllm.cli import app
    from amygdala_vllm.vllm_ext import probes

    monkeypatch.setattr(probes, "SUPPORTED", ((0, 31),))
    ds = write_text_dataset(tmp_path / "ds", varied_texts(4))
    out = tmp_path / "act"
    r = CliRunner().invoke(app, ["extract", "--model", str(tiny_llama_dir), "--training-data-dir", str(ds),
                                 "--output-dir", str(out), "--target-layers", "1"])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert r.output.strip().startswith(f"IncompatibleVLLMError: vLLM {probes.vllm_version()} is installed; "
                               "amygdala-vllm supports 0.31.x")
    assert not out.exists()


def test_a_forced_v2_runner_without_triton_is_one_line(tmp_path, tiny_llama_dir):
    """``VLLM_USE_V2_MODEL_RUNNER=1`` is no longer refused by us; where vLLM cannot run V2 (no Triton for this
    CPU) its start-up error reaches the user as one line (a subprocess: vLLM may cache its variables)."""
    import os
    import subprocess
    import sys

    from text_datasets import varied_texts, write_text_dataset

    triton = pytest.importorskip("vllm.triton_utils")
    if triton.HAS_TRITON:
        pytest.skip("Triton works here: vLLM would start Model Runner V2")
    ds = write_text_dataset(tmp_path / "ds", varied_texts(4))
    out = tmp_path / "act"
    env = {**os.environ, "VLLM_USE_V2_MODEL_RUNNER": "1"}
    proc = subprocess.run([sys.executable, "-m", "amygdala_vllm", "extract", "--model", str(tiny_llama_dir),
                           "--training-data-dir", str(ds), "--output-dir", str(out), "--target-layers", "1",
                           "--kv-cache-gb", "0.0625"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ModelError")]
    assert len(lines) == 1 and "Model Runner V2 requires Triton" in lines[0], proc.stderr[-2000:]
    assert "unset VLLM_USE_V2_MODEL_RUNNER=1" in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()
