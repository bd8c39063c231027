"""vLLM features the runner views cannot read yet: refused before an engine starts, naming the flag that turns each off.

Each one changes what a row of a step means, so a capture, readout or served
score would be attributed to the wrong token without any error:
:data:`REFUSED_FEATURES` says why for each. Checked on the engine keyword
arguments of ``engine.open_engine`` (:func:`check_engine_features`) and on the
``vllm serve`` command line ``amygdala-vllm serve`` builds
(:func:`check_serve_flags`), before vLLM loads anything. Refused whatever the
runner (V1 would misattribute them too). Imports no vLLM.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import IncompatibleVLLMError

__all__ = ["REFUSED_FEATURES", "RefusedFeature", "check_engine_features", "check_serve_flags"]


@dataclass(frozen=True)
class RefusedFeature:
    """A vLLM feature the runner views cannot attribute rows under, and how a user turns it off."""

    #: What it is, in a few words (the start of the error line).
    name: str
    #: The ``vllm serve`` flag (or setting) that turns it on, named in the error line.
    flag: str
    #: True if the engine settings (``LLM`` keyword arguments, as :func:`_serve_settings` also gives) turn it on.
    active: Callable[[Mapping[str, Any]], bool]
    #: Why a row of the step would be misread, for the docs and the error line.
    why: str


def _int(settings: Mapping[str, Any], key: str, default: int = 1) -> int:
    value = settings.get(key)
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _speculative(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = settings.get("speculative_config")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            return {}
    return spec if isinstance(spec, Mapping) else {}


#: Read in vLLM 0.34's ``config/parallel.py``, ``config/cache.py``, ``config/speculative.py`` and
#: ``v1/worker/gpu/model_runner.py`` (0.32/0.33 have the same flags).
REFUSED_FEATURES: tuple[RefusedFeature, ...] = (
    RefusedFeature("dual-batch overlap", "--enable-dbo",
                   lambda s: bool(s.get("enable_dbo")),
                   "the model runs once per micro-batch (UBatchRunner), the step bookkeeping covers the whole batch"),
    RefusedFeature("micro-batching", "--ubatch-size",
                   lambda s: _int(s, "ubatch_size", 0) > 1,
                   "the model runs once per micro-batch (UBatchRunner), the step bookkeeping covers the whole batch"),
    RefusedFeature("batch-sharded sampling", "--enable-batch-sharded-sampling",
                   lambda s: bool(s.get("enable_batch_sharded_sampling")),
                   "logits come from compute_logits_local on each rank's share of the rows"),
    RefusedFeature("sequence-parallel MoE (expert parallel with tensor and data parallel > 1)",
                   "--enable-expert-parallel",
                   lambda s: bool(s.get("enable_expert_parallel")) and _int(s, "tensor_parallel_size") > 1
                   and _int(s, "data_parallel_size") > 1,
                   "tokens are split over the tensor-parallel ranks (e.g. Qwen3-Next's MoE blocks)"),
    RefusedFeature("prefill context parallel", "--prefill-context-parallel-size",
                   lambda s: _int(s, "prefill_context_parallel_size") > 1,
                   "each rank runs a share of the prompt rows (pcp_manager.partition_batch)"),
    RefusedFeature("KV-sharing fast prefill", "--kv-sharing-fast-prefill",
                   lambda s: bool(s.get("kv_sharing_fast_prefill")),
                   "later layers run on the logits rows only"),
    RefusedFeature("adaptive draft verification", "--speculative-config enable_adaptive_verification",
                   lambda s: bool(_speculative(s).get("enable_adaptive_verification")),
                   "draft rows are moved on the GPU after the row offsets the view reads were computed"),
)


def _refuse(settings: Mapping[str, Any]) -> None:
    for feature in REFUSED_FEATURES:
        if feature.active(settings):
            raise IncompatibleVLLMError(
                f"{feature.name} is not supported by amygdala-vllm's runner views ({feature.why}); "
                f"run without {feature.flag}"
            )


def check_engine_features(engine_kwargs: Mapping[str, Any]) -> None:
    """Refuse the :data:`REFUSED_FEATURES` that ``vllm.LLM(**engine_kwargs)`` would turn on; one line each."""
    _refuse(engine_kwargs)


#: ``vllm serve`` short flags of the settings :data:`REFUSED_FEATURES` reads.
_SHORT_FLAGS = {"-tp": "tensor_parallel_size", "-dp": "data_parallel_size", "-ep": "enable_expert_parallel",
                "-pcp": "prefill_context_parallel_size", "-sc": "speculative_config"}
_VALUE_SETTINGS = {"tensor_parallel_size", "data_parallel_size", "prefill_context_parallel_size", "ubatch_size",
                   "speculative_config"}


def _serve_settings(argv: list[str]) -> dict[str, Any]:
    """The settings :data:`REFUSED_FEATURES` reads, from a ``vllm serve`` argument list (last one wins)."""
    settings: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            continue
        flag, eq, value = arg.partition("=")
        if flag in _SHORT_FLAGS:
            key = _SHORT_FLAGS[flag]
        elif flag.startswith("--no-"):
            settings[flag[5:].replace("-", "_")] = False
            continue
        else:
            key = flag.lstrip("-").replace("-", "_")
        if key in _VALUE_SETTINGS:
            if not eq and i < len(argv):
                value = argv[i]
                i += 1
            settings[key] = value
        else:
            settings[key] = value.lower() not in ("false", "0", "no") if eq else True
    return settings


def check_serve_flags(vllm_args: list[str]) -> None:
    """Refuse the :data:`REFUSED_FEATURES` a ``vllm serve`` command line turns on; one line each."""
    _refuse(_serve_settings(vllm_args))
