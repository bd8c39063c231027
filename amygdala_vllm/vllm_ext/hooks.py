"""Attach per-step and per-layer hooks to a vLLM model.

A forward pre-hook on the runner's top-level model reads the step's row layout
before any layer runs; forward hooks on the chosen decoder layers hand
``hidden_states + residual`` (computed at once, before the next layer's fused
add-norm overwrites either buffer in place) to a consumer; a forward hook on the
top-level model closes the step. A hook that fails raises: for a measuring tool
a silently skipped token is corrupt data.

:class:`LayerHooks` is the eager path. Under ``torch.compile`` per-layer hooks do
not fire; :class:`TapHooks` reads each layer's stream from the persistent buffer
the compiled graph's ``amygdala_tap`` op wrote (``ops.py``), in one hook that runs
after the forward (also after a CUDA-graph replay), so the consumers see exactly
what the eager hooks give them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from ..errors import IncompatibleVLLMError
from . import probes
from .layers import DecoderLayers
from .ops import tapped_layers
from .runners import RunnerView
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

    def __init__(self, runner: RunnerView, decoder: DecoderLayers, layers: list[int], consumer: StepConsumer):
        self._runner = runner
        self._consumer = consumer
        self._handles: list[Any] = []
        model = runner.model()
        self._handles.append(model.register_forward_pre_hook(self._pre, with_kwargs=True))
        self._handles.append(model.register_forward_hook(self._post))
        for pos, index in enumerate(layers):
            if decoder.owns(index):
                self._handles.append(decoder.layers[index].register_forward_hook(self._layer_hook(pos)))

    def _pre(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        req_ids, starts, prompt_lens = self._runner.step_bookkeeping()
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
    """Compiled path: after each forward, hand the tap buffers' real rows to the consumer.

    Everything runs in one hook that fires after the forward, outside the
    compiled region and outside any CUDA graph: a forward pre-hook on the
    model's ``LogitsProcessor``, which the runner calls (through
    ``compute_logits``) after every forward on the last pipeline rank. A hook
    on the top-level model would do on CPU, but on GPU the runner calls the
    model through a CUDA-graph wrapper whose replays run no module hooks at
    all. The step layout comes from the runner's bookkeeping and its persistent
    position buffer (what the graph replayed from), never from forward
    arguments. A step is handed over once even if logits are computed twice in
    it (prompt logprobs call ``compute_logits`` again).

    A pipeline stage before the last computes no logits; there the hook sits
    on the top-level model, which only works when no CUDA-graph wrapper
    replays it (refused otherwise).
    """

    def __init__(self, runner: RunnerView, decoder: DecoderLayers, layers: list[int], consumer: StepConsumer):
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
        self._last_step: tuple[Any, ...] | None = None
        model = runner.model()
        if probes.is_last_pipeline_rank():
            site = probes.logits_processor(model)
            self._handles = [site.register_forward_pre_hook(lambda module, args: self._after_forward())]
        elif runner.graph_wrapped():
            raise IncompatibleVLLMError(
                "a pipeline stage before the last, replayed from CUDA graphs, runs no hook after its forward; "
                "capture with --eager or without pipeline parallelism"
            )
        else:
            self._handles = [model.register_forward_hook(lambda module, args, output: self._after_forward())]

    def _after_forward(self) -> None:
        req_ids, starts, prompt_lens = self._runner.step_bookkeeping()
        positions = self._runner.step_positions(int(starts[-1]))
        layout = build_step_layout(req_ids, starts, positions, prompt_lens)
        key = (tuple(req_ids), starts.tobytes(), layout.positions.numpy().tobytes())
        if key == self._last_step:
            return
        self._last_step = key
        self._consumer.begin_step(layout)
        for pos, buf in self._taps:
            self._consumer.add(pos, buf[: layout.num_rows])
        self._consumer.end_step()

    def remove(self) -> None:
        """Detach every hook (the taps stay in the model; they only copy)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
