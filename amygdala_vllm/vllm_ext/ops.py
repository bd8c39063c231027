"""The compile-safe tap: an opaque custom op that copies a layer's residual stream into a persistent buffer.

Forward hooks do not survive ``torch.compile`` (see ``docs/compile.md``). What
does survive is an operator the compiler cannot look into: vLLM registers its
own (attention, all-reduce) with ``direct_register_custom_op`` and
``mutates_args``, and we do the same. ``torch.ops.vllm.amygdala_tap(hidden,
residual, out)`` writes ``hidden + residual`` (the residual stream after the
layer, in the model's dtype) into the first rows of ``out``, a buffer allocated
once when the model is loaded and never reallocated. Declaring ``out`` mutated
keeps the compiler from dropping or reordering the call, and because the op
only ever writes into the same storage, a replayed CUDA graph would write
exactly where a traced call did.

Nothing per request happens here: which row belongs to which request is read
outside the compiled region, before the forward, and the buffers are consumed
after it (``hooks.TapHooks``), by the same accumulators the eager hooks feed.

:class:`TappedLayer` is the thin wrapper that puts the op after one decoder
layer; ``plugin.py`` installs it between model load and the first (compiling)
forward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

__all__ = ["OP_NAME", "register_tap_op", "TappedLayer", "tapped_layers"]

OP_NAME = "amygdala_tap"


def _tap(hidden: torch.Tensor, residual: torch.Tensor | None, out: torch.Tensor) -> None:
    n = hidden.shape[0]
    if n > out.shape[0]:
        raise RuntimeError(f"amygdala_tap: step has {n} rows but the tap buffer holds {out.shape[0]}")
    out[:n].copy_(hidden if residual is None else hidden + residual)


def _tap_fake(hidden: torch.Tensor, residual: torch.Tensor | None, out: torch.Tensor) -> None:
    return None


def register_tap_op() -> None:
    """Register ``torch.ops.vllm.amygdala_tap`` once per process (safe to call again)."""
    from vllm.utils.torch_utils import direct_register_custom_op

    if hasattr(torch.ops.vllm, OP_NAME):
        return
    direct_register_custom_op(OP_NAME, _tap, mutates_args=["out"], fake_impl=_tap_fake)


class TappedLayer(nn.Module):
    """Runs one decoder layer, then copies its residual stream into ``self.tap`` (a persistent buffer)."""

    def __init__(self, inner: nn.Module, index: int, rows: int, hidden_size: int, dtype: torch.dtype,
                 device: torch.device):
        super().__init__()
        self.inner = inner
        self.index = index
        self.register_buffer("tap", torch.zeros(rows, hidden_size, dtype=dtype, device=device), persistent=False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        output = self.inner(*args, **kwargs)
        if isinstance(output, torch.Tensor):
            torch.ops.vllm.amygdala_tap(output, None, self.tap)
        else:
            torch.ops.vllm.amygdala_tap(output[0], output[1], self.tap)
        return output


def tapped_layers(layers: nn.ModuleList) -> dict[int, TappedLayer]:
    """The tapped entries of a decoder layer list, by layer index."""
    return {i: m for i, m in enumerate(layers) if isinstance(m, TappedLayer)}
