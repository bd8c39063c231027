"""Find the decoder layers of a vLLM model, whatever wrapper it comes in.

Layer ``i`` in this project is the residual stream after ``layers[i]``: the
decoder layer returns ``(hidden_states, residual)`` and vLLM fuses their sum
into the next layer's norm, so the stream is never one tensor; we add the two.

Resolution order (a small table, not a search): a multimodal wrapper exposes
``get_language_model()`` (Qwen3.5's ``...ForConditionalGeneration``); a causal LM
keeps its decoder at ``.model`` and the layers at ``.model.layers``. With
pipeline parallelism a rank owns ``[start_layer, end_layer)``; the other entries
are ``PPMissingLayer`` placeholders and are never hooked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..errors import ModelError

__all__ = ["DecoderLayers", "resolve_decoder_layers"]


@dataclass(frozen=True)
class DecoderLayers:
    """The decoder's layer list and the slice of it this rank runs."""

    layers: nn.ModuleList
    start: int
    end: int
    path: str

    @property
    def total(self) -> int:
        """Number of decoder layers in the whole model (all pipeline ranks)."""
        return len(self.layers)

    def owns(self, index: int) -> bool:
        """True if layer ``index`` runs on this rank."""
        return self.start <= index < self.end


def _inner_decoder(model: nn.Module) -> tuple[nn.Module, str]:
    path = ""
    getter = getattr(model, "get_language_model", None)
    if callable(getter):
        lm = getter()
        if lm is not None and lm is not model:
            model, path = lm, "get_language_model()"
    for attr in ("model", "language_model"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module) and isinstance(getattr(inner, "layers", None), nn.ModuleList):
            return inner, f"{path}.{attr}".lstrip(".")
    if isinstance(getattr(model, "layers", None), nn.ModuleList):
        return model, path
    raise ModelError(
        f"{type(model).__name__} has no decoder layer list (looked for get_language_model(), "
        ".model.layers, .language_model.layers, .layers); only decoder-only language models are supported"
    )


def resolve_decoder_layers(model: nn.Module) -> DecoderLayers:
    """Locate ``layers`` and this rank's ``[start, end)`` in a vLLM model."""
    decoder, path = _inner_decoder(model)
    layers: nn.ModuleList = decoder.layers
    start = int(getattr(decoder, "start_layer", 0))
    end = int(getattr(decoder, "end_layer", len(layers)))
    if not 0 <= start <= end <= len(layers):
        raise ModelError(f"{type(decoder).__name__}: bad pipeline slice [{start}, {end}) of {len(layers)} layers")
    return DecoderLayers(layers=layers, start=start, end=end, path=f"{path}.layers".lstrip("."))
