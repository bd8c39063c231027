"""Per-token scores of the served requests that opted in, held on the worker until the API server drains them.

The serving counterpart of :class:`~.projection.ProjectionAccumulator`, fed by
the same hooks (eager) or taps (compiled). Differences that serving needs:

- Only requests whose ``vllm_xargs`` carry the server's ``amygdala_tag`` are
  projected; the rows of every other request are never touched, so plain
  requests cost one dictionary lookup per request and step.
- Each score is kept with its position and the token id the model was fed.
  Preemption makes vLLM forward positions again; the API server keeps the
  latest score of a position (``serve/assemble.py``).
- Memory is bounded by the requests in flight: scores are released when
  drained; a tag the API server discarded (client gone) is dropped and stays
  dropped; and scores of a request the runner no longer holds that nobody
  drained within ``ttl_s`` are dropped too (a crashed API-side handler must
  not leak worker memory).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..serve.options import TAG_KEY
from .runners import RunnerView
from .step import StepLayout

__all__ = ["ServeScores", "HeldScores"]


@dataclass
class HeldScores:
    """Undrained scores of one engine request."""

    tag: str
    prompt_len: int
    pieces: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    rows: int = 0
    gone_since: float | None = None


class ServeScores:
    """Scores every opted-in request's rows at the manifest's layers; a step consumer (``begin/add/end_step``)."""

    def __init__(self, runner: RunnerView, vectors: list[torch.Tensor], ttl_s: float = 120.0):
        self._runner = runner
        self.vectors = [v.float().contiguous() for v in vectors]
        self.num_layers, self.num_concepts = len(vectors), int(vectors[0].shape[0])
        self.ttl_s = ttl_s
        self.held: dict[str, HeldScores] = {}
        self._tags: dict[str, str | None] = {}  # req_id -> tag (None: plain request), for live requests
        self._prune_at = 256
        self._dropped: dict[str, float] = {}  # tag -> when it was discarded
        self._step: torch.Tensor | None = None
        self._rows: torch.Tensor | None = None
        self._spans: list[tuple[str, int, int, int]] = []  # (req_id, lo, hi, prompt_len) in selected-row space
        self._positions: torch.Tensor | None = None
        self._token_ids: torch.Tensor | None = None

    def _tag(self, req_id: str) -> str | None:
        if req_id not in self._tags:
            tag = self._runner.request_extra_args(req_id).get(TAG_KEY)
            self._tags[req_id] = str(tag) if tag is not None else None
            if len(self._tags) > self._prune_at:  # finished plain requests: forget them now and then
                live = self._runner.live_request_ids()
                for gone in [r for r in self._tags if r not in live]:
                    del self._tags[gone]
                self._prune_at = 2 * len(self._tags) + 256
        tag = self._tags[req_id]
        return None if tag is None or tag in self._dropped else tag

    def begin_step(self, layout: StepLayout) -> None:
        """Pick this step's rows of opted-in requests (nothing to do in a step of plain requests)."""
        self._step = self._rows = None
        self._spans = []
        if layout.num_rows == 0:
            return
        index: list[torch.Tensor] = []
        n = 0
        for r, req_id in enumerate(layout.req_ids):
            lo, hi = int(layout.starts[r]), int(layout.starts[r + 1])
            if hi <= lo or self._tag(req_id) is None:
                continue
            index.append(torch.arange(lo, hi))
            self._spans.append((req_id, n, n + hi - lo, int(layout.prompt_lens[r])))
            n += hi - lo
        if not index:
            return
        rows = torch.cat(index)
        self._positions = layout.positions[rows]
        ids = self._runner.step_input_ids(layout.num_rows)
        self._rows = rows.to(ids.device)
        self._token_ids = ids[self._rows].to(device="cpu", dtype=torch.int64)

    def add(self, layer_pos: int, stream: torch.Tensor) -> None:
        """Project the selected rows of hooked layer number ``layer_pos``."""
        if self._rows is None:
            return
        rows = stream.index_select(0, self._rows.to(stream.device)).float()
        if self._step is None:
            self._step = torch.zeros(rows.shape[0], self.num_layers, self.num_concepts, device=rows.device)
        v = self.vectors[layer_pos]
        if v.device != rows.device:
            v = self.vectors[layer_pos] = v.to(rows.device)
        self._step[:, layer_pos] = rows @ v.T

    def end_step(self) -> None:
        """File the step's scores under their requests (one host copy per step)."""
        if self._step is not None and self._positions is not None and self._token_ids is not None:
            step = self._step.cpu()
            for req_id, lo, hi, prompt_len in self._spans:
                tag = self._tags[req_id]
                assert tag is not None
                held = self.held.setdefault(req_id, HeldScores(tag=tag, prompt_len=prompt_len))
                held.pieces.append((self._positions[lo:hi].clone(), self._token_ids[lo:hi].clone(), step[lo:hi].clone()))
                held.rows += hi - lo
        self._step = self._rows = self._positions = self._token_ids = None
        self._spans = []

    def drain(self, tags: set[str], discard: set[str]) -> list[tuple[str, HeldScores]]:
        """Pop the held scores of requests filed under ``tags``; drop ``discard`` (now and later)."""
        now = time.monotonic()
        for tag in discard:
            self._dropped[tag] = now
        out = []
        for req_id in list(self.held):
            held = self.held[req_id]
            if held.tag in discard:
                del self.held[req_id]
            elif held.tag in tags:
                out.append((req_id, self.held.pop(req_id)))
        self._expire(now)
        return out

    def _expire(self, now: float) -> None:
        live = self._runner.live_request_ids()
        for req_id in [r for r in self._tags if r not in live]:
            del self._tags[req_id]
        for req_id in list(self.held):
            held = self.held[req_id]
            if req_id in live:
                held.gone_since = None
            elif held.gone_since is None:
                held.gone_since = now
            elif now - held.gone_since > self.ttl_s:
                del self.held[req_id]
        for tag in [t for t, at in self._dropped.items() if now - at > self.ttl_s]:
            del self._dropped[tag]

    def stats(self) -> dict[str, int]:
        """What the worker holds now: requests with undrained scores, their rows, tags remembered."""
        return {"requests_held": len(self.held), "rows_held": sum(h.rows for h in self.held.values()),
                "requests_known": len(self._tags), "tags_dropped": len(self._dropped)}
