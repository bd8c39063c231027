"""``engine_kwargs``: the one mapping from :class:`EngineSettings` to ``vllm.LLM`` keyword arguments.

Shared by capture (extract) and readout (readout, validate); ``open_engine``
passes exactly these to ``vllm.LLM`` (after ``features.check_engine_features``).
"""

from __future__ import annotations

from amygdala_vllm.engine_settings import EngineSettings
from amygdala_vllm.model_config import resolve_max_model_len
from amygdala_vllm.vllm_ext.engine import engine_kwargs


def test_eager_hooks_per_session_and_taps_nothing(tiny_llama_dir):
    settings = EngineSettings(model=str(tiny_llama_dir), dtype="fp32", max_model_len=512, kv_cache_gb=0.25,
                              batch_size=3)
    kw = engine_kwargs(settings, [3, 1])
    assert kw["enforce_eager"] is True and "load_format" not in kw and "additional_config" not in kw
    assert kw["kv_cache_memory_bytes"] == 256 << 20 and kw["max_num_seqs"] == 3
    assert (kw["model"], kw["dtype"], kw["max_model_len"]) == (str(tiny_llama_dir), "float32", 512)
    assert (kw["tensor_parallel_size"], kw["pipeline_parallel_size"], kw["seed"]) == (1, 1, 0)
    assert kw["enable_prefix_caching"] is False and "max_num_batched_tokens" not in kw
    assert kw["worker_extension_cls"] == "amygdala_vllm.vllm_ext.worker.AmygdalaWorkerExtension"


def test_compiled_taps_the_layers_for_the_engine_life(tiny_llama_dir):
    settings = EngineSettings(model=str(tiny_llama_dir), dtype="bf16", max_model_len=256, compile=True,
                              tensor_parallel_size=2, pipeline_parallel_size=2, max_num_batched_tokens=64,
                              extra={"distributed_executor_backend": "mp"})
    kw = engine_kwargs(settings, [3, 1, 3])
    assert kw["enforce_eager"] is False and kw["load_format"] == "amygdala"
    assert kw["additional_config"]["amygdala"]["tap_layers"] == [1, 3]
    assert (kw["dtype"], kw["max_num_seqs"], kw["max_num_batched_tokens"]) == ("bfloat16", 16, 64)
    assert (kw["tensor_parallel_size"], kw["pipeline_parallel_size"]) == (2, 2)
    assert kw["distributed_executor_backend"] == "mp"
    # compiled without layers: a plain compiled engine (no taps; capture is refused on it)
    assert "load_format" not in engine_kwargs(settings, [])


def test_the_model_limit_fills_an_unset_context(tiny_llama_dir):
    settings = EngineSettings(model=str(tiny_llama_dir), dtype="fp32")
    assert engine_kwargs(settings)["max_model_len"] == resolve_max_model_len(str(tiny_llama_dir), None)
    assert settings.max_model_len is None and settings.dtype == "fp32"  # resolved into the kwargs, not the settings
