"""Readout: project every token's residual stream onto the concept vectors.

For each hooked layer ``l`` the worker holds ``V_l`` ``[E, H]`` (unit rows) and
computes ``stream @ V_l.T`` for every row of the step, prompt and generated
tokens alike, in float32. Scores are kept per request as ``(positions,
scores[n, L, E])`` pieces and handed out, ordered by position, when the driver
drains that request; draining releases them. Only ``E`` floats per token and
layer are kept, never the ``H``-wide rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .step import StepLayout

__all__ = ["RequestScores", "ProjectionAccumulator"]


@dataclass(frozen=True)
class RequestScores:
    """Per-token scores of one request, sorted by position."""

    positions: torch.Tensor  # int64 [T]
    scores: torch.Tensor  # float32 [T, L, E]


class ProjectionAccumulator:
    """Per-request per-token projections for a fixed list of layers and vectors."""

    def __init__(self, vectors: list[torch.Tensor], max_tokens_per_request: int):
        if not vectors:
            raise ValueError("no layers to project")
        self.vectors = [v.float().contiguous() for v in vectors]  # each [E, H]
        self.num_layers = len(vectors)
        self.num_concepts = int(vectors[0].shape[0])
        self.max_tokens_per_request = max_tokens_per_request
        self._pieces: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._counts: dict[str, int] = {}
        self._layout: StepLayout | None = None
        self._step: torch.Tensor | None = None
        self._pinned: torch.Tensor | None = None

    def begin_step(self, layout: StepLayout) -> None:
        """Remember this step's rows; the ``[n, L, E]`` score buffer is made on the first layer's device."""
        if layout.num_rows == 0:
            self._layout = self._step = None
            return
        self._layout = layout
        self._step = None

    def add(self, layer_pos: int, stream: torch.Tensor) -> None:
        """Project this step's rows of hooked layer number ``layer_pos`` (on the rows' device)."""
        if self._layout is None:
            return
        n = self._layout.num_rows
        rows = stream[:n].float()
        if self._step is None:
            self._step = torch.zeros(n, self.num_layers, self.num_concepts, dtype=torch.float32, device=rows.device)
        v = self.vectors[layer_pos]
        if v.device != rows.device:
            v = self.vectors[layer_pos] = v.to(rows.device)
        self._step[:, layer_pos] = rows @ v.T

    def end_step(self) -> None:
        """Split the step's scores by request (one copy to the host per step) and keep them until drained."""
        if self._step is None or self._layout is None:
            self._layout = self._step = None
            return
        layout, step = self._layout, self._to_host(self._step)
        for r, req_id in enumerate(layout.req_ids):
            lo, hi = int(layout.starts[r]), int(layout.starts[r + 1])
            if hi <= lo:
                continue
            count = self._counts.get(req_id, 0) + hi - lo
            if count > self.max_tokens_per_request:
                raise RuntimeError(
                    f"request {req_id} produced {count} scored tokens, over the bound of "
                    f"{self.max_tokens_per_request}; drain requests as they finish"
                )
            self._counts[req_id] = count
            self._pieces.setdefault(req_id, []).append((layout.positions[lo:hi].clone(), step[lo:hi].clone()))
        self._layout = self._step = None

    def _to_host(self, step: torch.Tensor) -> torch.Tensor:
        """The step's scores on the host; from a GPU through a reused pinned buffer.

        A fresh pageable tensor per step costs page faults on every large copy
        (measured on an H100: most of a prefill step's hand-over time); the pinned
        buffer is only read until the per-request pieces are cloned out of it.
        """
        if step.device.type != "cuda":
            return step.cpu()
        need = step.numel()
        if self._pinned is None or self._pinned.numel() < need:
            self._pinned = torch.empty(max(need, 2 * (0 if self._pinned is None else self._pinned.numel())),
                                       dtype=torch.float32, pin_memory=True)
        host = self._pinned[:need].view(step.shape)
        host.copy_(step)
        return host

    def pending(self) -> list[str]:
        """Request ids holding scores."""
        return list(self._pieces)

    def pop(self, req_id: str) -> RequestScores:
        """Return and release one request's scores, ordered by position (each position once)."""
        pieces = self._pieces.pop(req_id, [])
        self._counts.pop(req_id, None)
        if not pieces:
            return RequestScores(torch.zeros(0, dtype=torch.int64), torch.zeros(0, self.num_layers, self.num_concepts))
        positions = torch.cat([p for p, _ in pieces])
        scores = torch.cat([s for _, s in pieces])
        order = torch.argsort(positions, stable=True)
        return RequestScores(positions[order], scores[order])
