"""Attach per-step and per-layer hooks to a vLLM model.

A forward pre-hook on the runner's top-level model reads the step's row layout
before any layer runs; forward hooks on the chosen decoder layers hand
``hidden_states + residual`` (computed at once, before the next layer's fused
add-norm overwrites either buffer in place) to a consumer; a forward hook on the
top-level model closes the step. A hook that fails raises: for a measuring tool
a silently skipped token is corrupt data.

:class:`LayerHooks` is the eager path. Under ``torch.compile`` per-layer hooks do
not fire; :class:`TapHooks` keeps the same step hooks (the runner's top-level
model is outside the compiled region) and reads each layer's stream from the
persistent buffer the compiled graph's ``amygdala_tap`` op wrote (``ops.py``),
after the forward, so the consumers see exactly what the eager hooks give them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from . import probes
from .layers import DecoderLayers
from .ops import tapped_layers
from .step import StepLayout, build_step_layout

__all__ = ["StepConsumer", "LayerHooks", "TapHooks", "residual_stream"]


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


class TapHooks:
    """Compiled path: step hooks on the top-level model, layer streams from the tap buffers.

    The pre-hook reads the step layout as :class:`LayerHooks` does; the
    post-hook hands the first ``num_tokens`` rows of each tapped layer's buffer
    to the consumer, in ``layers`` order, then closes the step.
    """

    def __init__(self, runner: Any, decoder: DecoderLayers, layers: list[int], consumer: StepConsumer):
        taps = tapped_layers(decoder.layers)
        missing = [i for i in layers if decoder.owns(i) and i not in taps]
        if missing:
            raise ValueError(
                f"layers {missing} are not tapped in this compiled engine (tapped: {sorted(taps)}); "
                "start the engine with these tap layers"
            )
        self._runner = runner
        self._consumer = consumer
        self._taps = [(pos, taps[i].tap) for pos, i in enumerate(layers) if decoder.owns(i)]
        self._rows = 0
        model = probes.runner_model(runner)
        self._handles = [
            model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.register_forward_hook(self._post),
        ]

    def _pre(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        req_ids, starts, prompt_lens = probes.step_bookkeeping(self._runner)
        positions = probes.forward_positions(args, kwargs)
        self._rows = int(positions.shape[-1])
        self._consumer.begin_step(build_step_layout(req_ids, starts, positions, prompt_lens))

    def _post(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        for pos, buf in self._taps:
            self._consumer.add(pos, buf[: self._rows])
        self._consumer.end_step()

    def remove(self) -> None:
        """Detach every hook (the taps stay in the model; they only copy)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
