"""Attach per-step and per-layer hooks to a vLLM model (eager mode).

A forward pre-hook on the runner's top-level model reads the step's row layout
before any layer runs; forward hooks on the chosen decoder layers hand
``hidden_states + residual`` (computed at once, before the next layer's fused
add-norm overwrites either buffer in place) to a consumer; a forward hook on the
top-level model closes the step. A hook that fails raises: for a measuring tool
a silently skipped token is corrupt data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from . import probes
from .layers import DecoderLayers
from .step import StepLayout, build_step_layout

__all__ = ["StepConsumer", "LayerHooks", "residual_stream"]


class StepConsumer(Protocol):
    """What the hooks feed: a step layout, then one stream per hooked layer."""

    def begin_step(self, layout: StepLayout) -> None: ...

    def add(self, layer_pos: int, stream: torch.Tensor) -> None: ...

    def end_step(self) -> None: ...


def residual_stream(output: Any) -> torch.Tensor:
    """The residual stream after a decoder layer, from whatever the layer returned."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and len(output) >= 2:
        hidden, residual = output[0], output[1]
        if residual is None:
            return hidden
        return hidden + residual
    raise TypeError(f"decoder layer returned {type(output).__name__}; expected (hidden_states, residual)")


class LayerHooks:
    """Owns the hook handles for one capture/readout session on one worker."""

    def __init__(self, runner: Any, decoder: DecoderLayers, layers: list[int], consumer: StepConsumer):
        self._runner = runner
        self._consumer = consumer
        self._handles: list[Any] = []
        model = probes.runner_model(runner)
        self._handles.append(model.register_forward_pre_hook(self._pre, with_kwargs=True))
        self._handles.append(model.register_forward_hook(self._post))
        for pos, index in enumerate(layers):
            if decoder.owns(index):
                self._handles.append(decoder.layers[index].register_forward_hook(self._layer_hook(pos)))

    def _pre(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        req_ids, starts, prompt_lens = probes.step_bookkeeping(self._runner)
        positions = probes.forward_positions(args, kwargs)
        self._consumer.begin_step(build_step_layout(req_ids, starts, positions, prompt_lens))

    def _post(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        self._consumer.end_step()

    def _layer_hook(self, layer_pos: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple, output: Any) -> None:
            self._consumer.add(layer_pos, residual_stream(output))

        return hook

    def remove(self) -> None:
        """Detach every hook."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
