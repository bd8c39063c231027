"""The engine flags every engine-starting command shares, declared once (``Annotated`` aliases), and the one
helper that turns them into :class:`~amygdala_vllm.engine_settings.EngineSettings`.

``extract``, ``readout`` and ``validate`` each start a vLLM engine; their
``--dtype``, ``--max-model-len``, ``--kv-cache-gb``, ``--batch-size``, parallel
sizes and ``--compile/--eager`` used to be declared three times in two styles,
and drifted (help texts, defaults). A command takes one by annotating a
parameter with the alias and giving the struct's default beside it, e.g.
``dtype: Dtype = ENGINE_DEFAULTS.dtype`` (never a literal: the defaults are
written once, in ``engine_settings``), then calls :func:`engine_settings` once.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..engine_settings import ENGINE_DEFAULTS, EngineSettings
from ._dtype import DTYPE_HELP, MAX_MODEL_LEN_HELP

__all__ = ["BatchSize", "Compile", "Dtype", "ENGINE_DEFAULTS", "KvCacheGb", "MaxModelLen", "MaxNumBatchedTokens",
           "PipelineParallel", "TensorParallel", "engine_settings"]

Dtype = Annotated[str, typer.Option("--dtype", help=DTYPE_HELP + " Pooling and projections accumulate in fp32.")]
MaxModelLen = Annotated[
    Optional[int], typer.Option("--max-model-len", help=MAX_MODEL_LEN_HELP + " Longer texts are truncated (extract: see --overlong).")
]
KvCacheGb = Annotated[
    float,
    typer.Option("--kv-cache-gb", help="KV cache size handed to vLLM, in GiB (always explicit: vLLM's CPU default takes most of RAM)."),
]
BatchSize = Annotated[
    int, typer.Option("--batch-size", help="Texts handed to vLLM per generate() call (also its max_num_seqs).")
]
MaxNumBatchedTokens = Annotated[
    Optional[int],
    typer.Option("--max-num-batched-tokens", help="vLLM's per-step token budget (smaller forces chunked prefill)."),
]
TensorParallel = Annotated[
    int, typer.Option("--tensor-parallel-size", help="Tensor-parallel ranks (GPUs, or CPU core groups); TP rank 0 reports.")
]
PipelineParallel = Annotated[
    int,
    typer.Option("--pipeline-parallel-size", help="Pipeline stages, each hooking the layers it owns; on CPU the cores are split across TP x PP ranks."),
]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile/--eager",
        help="Run vLLM's torch.compile graph with the layers tapped by a custom op (docs/compile.md) instead of "
        "eager mode with hooks (the default: on CPU compiling costs 1-2 min of start-up for a few % of speed).",
    ),
]


def engine_settings(*, model: str | None, dtype: str, max_model_len: int | None, kv_cache_gb: float,
                    tensor_parallel_size: int, pipeline_parallel_size: int, compile: bool,
                    batch_size: int = ENGINE_DEFAULTS.batch_size,
                    max_num_batched_tokens: int | None = ENGINE_DEFAULTS.max_num_batched_tokens,
                    extra: dict[str, Any] | None = None) -> EngineSettings:
    """The command's engine settings from its flags, checked (one line for an impossible value).

    ``batch_size`` and ``max_num_batched_tokens`` are flags of some commands
    only (``readout`` scores one text: batch 1); the others keep the struct's
    defaults.
    """
    settings = EngineSettings(model=model, dtype=dtype, max_model_len=max_model_len, kv_cache_gb=kv_cache_gb,
                              batch_size=batch_size, tensor_parallel_size=tensor_parallel_size,
                              pipeline_parallel_size=pipeline_parallel_size, compile=compile,
                              max_num_batched_tokens=max_num_batched_tokens, extra=dict(extra or {}))
    settings.check()
    return settings
