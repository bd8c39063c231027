"""``engine_options``: the one engine recipe shared by capture (extract) and readout (readout, validate)."""

from __future__ import annotations

from amygdala_vllm.vllm_ext.engine import engine_options


def test_eager_hooks_per_session_and_taps_nothing():
    opts = engine_options("m", layers=[3, 18], compile=False, dtype="fp32", max_model_len=None, kv_cache_gb=0.25,
                          batch_size=0)
    assert opts.enforce_eager and opts.tap_layers is None
    assert opts.kv_cache_bytes == 256 << 20 and opts.max_num_seqs == 1  # a batch of 0 still lets one sequence run
    assert (opts.tensor_parallel_size, opts.pipeline_parallel_size, opts.extra) == (1, 1, {})


def test_compiled_taps_the_layers_for_the_engine_life():
    layers = [3, 18]
    opts = engine_options("m", layers=layers, compile=True, dtype="bf16", max_model_len=1024, kv_cache_gb=1.0,
                          batch_size=16, tensor_parallel_size=2, pipeline_parallel_size=2, max_num_batched_tokens=64,
                          extra={"seed": 1})
    assert not opts.enforce_eager and opts.tap_layers == [3, 18] and opts.tap_layers is not layers
    assert (opts.max_model_len, opts.max_num_seqs, opts.max_num_batched_tokens) == (1024, 16, 64)
    assert (opts.tensor_parallel_size, opts.pipeline_parallel_size, opts.extra) == (2, 2, {"seed": 1})
