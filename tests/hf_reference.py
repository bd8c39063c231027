"""The reference every capture is checked against: HF transformers' residual stream.

Layer ``i`` is ``hidden_states[i + 1]`` for ``i < L - 1``; HF reports its last
entry after the final norm, so the last layer's raw output is taken with a
forward hook on ``model.layers[L - 1]`` instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["HFReference"]


class HFReference:
    """Pooled HF activations for token-id prompts (mean from ``skip`` on, and last)."""

    def __init__(self, model_dir: Path, dtype: torch.dtype = torch.float32):
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).eval()
        self.layers = self.model.model.layers

    @torch.no_grad()
    def rows(self, ids: list[int], layers: list[int]) -> np.ndarray:
        """Per-token residual stream ``[T, L, H]`` (float32) after each of ``layers``."""
        captured: dict[str, torch.Tensor] = {}
        last_index = len(self.layers) - 1
        handle = self.layers[last_index].register_forward_hook(
            lambda m, a, o: captured.__setitem__("x", o[0] if isinstance(o, tuple) else o)
        )
        try:
            hs = self.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        finally:
            handle.remove()
        return np.stack([(captured["x"] if i == last_index else hs[i + 1])[0].float().numpy() for i in layers], axis=1)

    def pooled(self, ids: list[int], layers: list[int], skip: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``(mean [L, H], last [L, H])`` in float32 for one prompt."""
        rows = self.rows(ids, layers)
        return rows[skip:].mean(0), rows[-1]
