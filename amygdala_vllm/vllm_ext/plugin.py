"""Install the compile-safe taps between model load and the first (compiling) forward.

vLLM compiles the decoder on its first forward (CPU: ``warming_up_model``, GPU:
profiling/CUDA-graph capture), long before ``LLM()`` returns and any RPC can
reach the worker; so the taps must already be in the model when it is loaded.
The supported seam for that is a model loader: ``register_model_loader`` adds
the load format ``"amygdala"``, whose loader delegates the actual loading to
the format the user wanted and then wraps the chosen decoder layers in
:class:`~.ops.TappedLayer`. No vLLM class is patched.

Which layers to tap comes from ``additional_config["amygdala"]``. vLLM hashes
``additional_config`` into its compile cache key (``VllmConfig.compute_hash``),
so an engine started with other layers never loads a cached graph compiled for
these. Vectors are not in the graph (projection happens on the tap buffers,
outside it), so their identity does not need to be in the key.

Registration runs on import and is idempotent; ``worker.py`` imports this
module, and vLLM imports the worker extension in every worker process before
the model is built, so no entry point is needed. :func:`register` is also a
valid ``vllm.general_plugins`` entry point for deployments that prefer one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch.nn as nn

from .layers import resolve_decoder_layers
from .ops import TappedLayer, register_tap_op

__all__ = ["LOAD_FORMAT", "CONFIG_KEY", "register", "tap_engine_kwargs", "install_taps"]

LOAD_FORMAT = "amygdala"
CONFIG_KEY = "amygdala"
_registered = False


def tap_engine_kwargs(layers: list[int], inner_load_format: str = "auto") -> dict[str, Any]:
    """The ``vllm.LLM`` keyword arguments that make the loader tap ``layers``."""
    return {
        "load_format": LOAD_FORMAT,
        "additional_config": {CONFIG_KEY: {"tap_layers": sorted(set(int(i) for i in layers)),
                                           "load_format": inner_load_format}},
    }


def install_taps(model: nn.Module, layers: list[int], rows: int, hidden_size: int) -> list[int]:
    """Replace ``layers`` (those this rank owns) of ``model``'s decoder by tapped wrappers."""
    decoder = resolve_decoder_layers(model)
    bad = [i for i in layers if not 0 <= i < decoder.total]
    if bad:
        raise ValueError(f"tap layers {bad} out of range for a {decoder.total}-layer decoder")
    param = next(model.parameters())
    done = []
    for i in layers:
        if not decoder.owns(i) or isinstance(decoder.layers[i], TappedLayer):
            continue
        decoder.layers[i] = TappedLayer(decoder.layers[i], i, rows, hidden_size, param.dtype, param.device)
        done.append(i)
    return done


def register() -> None:
    """Register the tap op and the ``amygdala`` load format (idempotent)."""
    global _registered
    if _registered:
        return
    from vllm.model_executor.model_loader import get_model_loader, register_model_loader
    from vllm.model_executor.model_loader.base_loader import BaseModelLoader

    register_tap_op()

    @register_model_loader(LOAD_FORMAT)
    class AmygdalaModelLoader(BaseModelLoader):
        """Loads with the configured inner format, then taps the configured decoder layers."""

        def __init__(self, load_config: Any):
            super().__init__(load_config)
            self._load_config = load_config

        def _inner(self, vllm_config: Any | None = None) -> BaseModelLoader:
            conf = _tap_config(vllm_config) if vllm_config is not None else {}
            inner = dataclasses.replace(self._load_config, load_format=conf.get("load_format", "auto"))
            return get_model_loader(inner)

        def download_model(self, model_config: Any) -> None:
            self._inner().download_model(model_config)

        def load_weights(self, model: nn.Module, model_config: Any) -> None:
            self._inner().load_weights(model, model_config)

        def load_model(self, vllm_config: Any, model_config: Any, prefix: str = "") -> nn.Module:
            model = self._inner(vllm_config).load_model(vllm_config=vllm_config, model_config=model_config,
                                                        prefix=prefix)
            layers = _tap_config(vllm_config).get("tap_layers", [])
            rows = int(vllm_config.scheduler_config.max_num_batched_tokens)
            install_taps(model, list(layers), rows, int(model_config.get_hidden_size()))
            return model

    _registered = True


def _tap_config(vllm_config: Any) -> dict[str, Any]:
    extra = getattr(vllm_config, "additional_config", None) or {}
    conf = extra.get(CONFIG_KEY, {}) if isinstance(extra, dict) else {}
    return dict(conf)
