"""How every engine of the tool starts, in one struct: each default is written here and only here.

``extract`` (capture), ``readout`` and ``validate`` (readout mode) each start a
vLLM engine; their flags used to travel as loose fields through the options of
each stage, the Ray actors' wire specs and ``vllm_ext.engine``, with each
default written three to six times. Now a command builds one
:class:`EngineSettings` from its flags (``cli/_engine_flags.engine_settings``),
checks it once (:meth:`EngineSettings.check`), and the stage, the Ray actors
(as msgspec JSON, like every spec they receive) and ``vllm_ext.engine.open_engine``
carry that struct. Only ``vllm_ext.engine.engine_kwargs`` maps it to
``vllm.LLM`` keyword arguments.

``serve`` owns two of these settings, ``model`` and ``compile`` (its vLLM
command line is built from them, ``serve/launch.serve_argv``); every other
engine setting of a server is a vLLM flag the user passes through unchanged.

A bottom module: imports neither vLLM nor torch, so ``--help`` and bad-input
checks stay instant.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .dtype_choice import check_dtype
from .errors import UsageError

__all__ = ["EngineSettings", "ENGINE_DEFAULTS", "GIB"]

GIB = 1 << 30


class EngineSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How one engine starts; the defaults suit a small CPU machine.

    Built once from the flags; a stage resolves ``model``, ``dtype`` and
    ``max_model_len`` to concrete values (``msgspec.structs.replace``) before it
    records them, so what a Ray actor receives is what the driver recorded.
    """

    #: HF folder or hub name (``models.resolve_model`` turns ``smollm2`` into a folder); None: the manifest's
    #: model (readout, validate)
    model: str | None = None
    #: ``auto`` | bf16 | fp16 | fp32; ``auto`` is resolved for the machine (``dtype_choice.resolve_dtype``)
    dtype: str = "auto"
    #: context length handed to vLLM; None: the model's own limit, capped (``model_config.resolve_max_model_len``)
    max_model_len: int | None = None
    #: KV cache size in GiB, always explicit: vLLM's CPU default takes most of the machine's RAM
    kv_cache_gb: float = 1.0
    #: texts per ``generate()`` call, also vLLM's ``max_num_seqs``
    batch_size: int = 16
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    #: vLLM's torch.compile graph with the hooked layers tapped by a custom op (``docs/compile.md``); False:
    #: eager mode with per-layer hooks (on CPU compiling costs 1-2 min of start-up for a few % of speed)
    compile: bool = False
    #: vLLM's per-step token budget (smaller forces chunked prefill); None: vLLM's own
    max_num_batched_tokens: int | None = None
    seed: int = 0
    #: further ``vllm.LLM`` keyword arguments, e.g. ``{"distributed_executor_backend": "ray"}``
    extra: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def ranks(self) -> int:
        """Worker processes (GPUs, or CPU core groups) one engine of these settings uses: TP x PP."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def kv_cache_bytes(self) -> int:
        """``kv_cache_gb`` in bytes, as vLLM's ``kv_cache_memory_bytes`` takes it."""
        return int(self.kv_cache_gb * GIB)

    def check(self) -> None:
        """Refuse values no engine can start with, in one line each, before anything is read or loaded.

        ``max_model_len`` is checked against the model when it is resolved
        (``model_config.resolve_max_model_len``), since its limit is the model's.
        """
        check_dtype(self.dtype)
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.kv_cache_gb > 0:
            raise UsageError(f"--kv-cache-gb must be > 0, got {self.kv_cache_gb}")
        if self.tensor_parallel_size < 1 or self.pipeline_parallel_size < 1:
            raise UsageError("--tensor-parallel-size and --pipeline-parallel-size must be >= 1")


#: The defaults as one value: the CLI's flag defaults read from here.
ENGINE_DEFAULTS = EngineSettings()
