"""Per-token scores held on the worker until they are drained: the one store of readout and serving.

A step consumer (``begin_step``/``add``/``end_step``) fed by the hooks (eager)
or the taps (compiled). For each hooked layer ``l`` it holds ``V_l`` ``[E, H]``
(unit rows) and computes ``stream @ V_l.T`` in float32 for the rows of the
requests it scores, prompt and generated tokens alike; only ``E`` floats per
token and layer are kept, never the ``H``-wide rows.

- Which requests: every one (offline ``readout``/``validate``: ``tag_key``
  None), or only those whose ``vllm_xargs`` carry ``tag_key`` (serving: the tag
  the API server set). Rows of other requests are never touched; a plain
  request costs one dictionary lookup per step.
- What: pieces of (positions, token ids the model was fed, scores) per request,
  moved to the host once per step.
- Preemption: vLLM forwards positions again, and the score computed last is
  the one that counts. That rule lives here, in :func:`merge_pieces`: a drain
  hands out each position once, ascending. (A streaming server that already
  received a position before the recompute gets it again in a later drain and
  files it by position, ``serve/assemble.py``.)
- Bounded: ``max_tokens_per_request`` rows per request (readout: the model's
  length; a request over it is an error, not silent growth); a drain releases
  what it hands out; in serving a discarded tag is dropped and stays dropped,
  and the scores of a request the runner no longer holds that nobody drained
  within ``ttl_s`` are dropped too (a crashed API-side handler must not leak
  worker memory).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from .rpc import RequestScores
from .runners import RunnerView
from .step import StepLayout

__all__ = ["ScoreStore", "merge_pieces"]

Piece = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # positions int64 [t], token ids int64 [t], scores [t, L, E]


@dataclass
class _Held:
    """Undrained scores of one engine request."""

    tag: str
    prompt_len: int
    pieces: list[Piece] = field(default_factory=list)
    rows: int = 0
    gone_since: float | None = None


def merge_pieces(pieces: list[Piece]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions ascending, each once with the token id and score computed last (pieces are in compute order)."""
    positions = torch.cat([p for p, _, _ in pieces])
    order = torch.argsort(positions, stable=True)
    ranked = positions[order]
    last = torch.ones_like(ranked, dtype=torch.bool)
    last[:-1] = ranked[1:] != ranked[:-1]  # the last of each run of equal positions is the latest computed
    keep = order[last]
    return positions[keep], torch.cat([t for _, t, _ in pieces])[keep], torch.cat([s for _, _, s in pieces])[keep]


class ScoreStore:
    """Scores the chosen requests' rows at this worker's layers and holds them, per request, until drained."""

    def __init__(self, runner: RunnerView, vectors: list[torch.Tensor], *, tag_key: str | None = None,
                 max_tokens_per_request: int | None = None, ttl_s: float = 120.0):
        if not vectors:
            raise ValueError("no layers to project")
        self._runner = runner
        self.vectors = [v.float().contiguous() for v in vectors]  # each [E, H]
        self.num_layers, self.num_concepts = len(vectors), int(vectors[0].shape[0])
        self.tag_key = tag_key
        self.max_tokens_per_request = max_tokens_per_request
        self.ttl_s = ttl_s
        self.held: dict[str, _Held] = {}
        self._tags: dict[str, str | None] = {}  # req_id -> tag (None: not scored), for live requests
        self._prune_at = 256
        self._dropped: dict[str, float] = {}  # tag -> when it was discarded
        self._pinned: torch.Tensor | None = None
        self._clear_step()

    def _clear_step(self) -> None:
        self._step: torch.Tensor | None = None
        self._n = 0
        self._rows: torch.Tensor | None = None  # None: the step's first _n rows
        self._spans: list[tuple[str, str, int, int, int]] = []  # (req_id, tag, lo, hi, prompt_len), selected rows
        self._positions: torch.Tensor | None = None
        self._token_ids: torch.Tensor | None = None

    def _tag(self, req_id: str) -> str | None:
        """The tag ``req_id``'s scores are filed under; None: this request is not scored."""
        if self.tag_key is None:
            return ""
        if req_id not in self._tags:
            tag = self._runner.request_extra_args(req_id).get(self.tag_key)
            self._tags[req_id] = str(tag) if tag is not None else None
            if len(self._tags) > self._prune_at:  # finished plain requests: forget them now and then
                live = self._runner.live_request_ids()
                for gone in [r for r in self._tags if r not in live]:
                    del self._tags[gone]
                self._prune_at = 2 * len(self._tags) + 256
        tag = self._tags[req_id]
        return None if tag is None or tag in self._dropped else tag

    # ------------------------------------------------------------- per step

    def begin_step(self, layout: StepLayout) -> None:
        """Pick this step's rows of scored requests (nothing to do in a step without any)."""
        self._clear_step()
        if layout.num_rows == 0:
            return
        ranges: list[tuple[int, int]] = []
        n = 0
        for r, req_id in enumerate(layout.req_ids):
            lo, hi = int(layout.starts[r]), int(layout.starts[r + 1])
            tag = self._tag(req_id) if hi > lo else None
            if tag is None:
                continue
            ranges.append((lo, hi))
            self._spans.append((req_id, tag, n, n + hi - lo, int(layout.prompt_lens[r])))
            n += hi - lo
        if not ranges:
            return
        ids = self._runner.step_input_ids(layout.num_rows)
        if ranges[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:])):
            self._positions, self._token_ids = layout.positions[:n], ids[:n]  # every row: a slice, no gather
        else:
            rows = torch.cat([torch.arange(lo, hi) for lo, hi in ranges])
            self._positions = layout.positions[rows]
            self._rows = rows.to(ids.device)
            self._token_ids = ids[self._rows]
        self._n = n

    def add(self, layer_pos: int, stream: torch.Tensor) -> None:
        """Project the selected rows of hooked layer number ``layer_pos`` (on the rows' device)."""
        if self._n == 0:
            return
        rows = stream[: self._n] if self._rows is None else stream.index_select(0, self._rows.to(stream.device))
        rows = rows.float()
        if self._step is None:
            self._step = torch.zeros(self._n, self.num_layers, self.num_concepts, dtype=torch.float32,
                                     device=rows.device)
        v = self.vectors[layer_pos]
        if v.device != rows.device:
            v = self.vectors[layer_pos] = v.to(rows.device)
        self._step[:, layer_pos] = rows @ v.T

    def end_step(self) -> None:
        """File the step's scores under their requests (one host copy per step)."""
        if self._step is None or self._positions is None or self._token_ids is None:
            self._clear_step()
            return
        step = self._to_host(self._step)
        ids = self._token_ids.to(device="cpu", dtype=torch.int64)
        for req_id, tag, lo, hi, prompt_len in self._spans:
            held = self.held.get(req_id)
            count = (held.rows if held is not None else 0) + hi - lo
            if self.max_tokens_per_request is not None and count > self.max_tokens_per_request:
                self._clear_step()
                raise RuntimeError(
                    f"request {req_id} produced {count} scored tokens, over the bound of "
                    f"{self.max_tokens_per_request}; drain requests as they finish"
                )
            if held is None:
                held = self.held[req_id] = _Held(tag=tag, prompt_len=prompt_len)
            held.pieces.append((self._positions[lo:hi].clone(), ids[lo:hi].clone(), step[lo:hi].clone()))
            held.rows = count
        self._clear_step()

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

    # ---------------------------------------------------------------- drain

    def pending(self) -> list[str]:
        """Request ids holding scores, in the order they were first scored."""
        return list(self.held)

    def _pop(self, req_id: str) -> RequestScores:
        held = self.held.pop(req_id)
        positions, token_ids, scores = merge_pieces(held.pieces)
        return RequestScores(req_id=req_id, tag=held.tag, prompt_len=held.prompt_len, positions=positions.numpy(),
                             token_ids=token_ids.numpy(), scores=scores.numpy())

    def take(self, req_ids: Iterable[str] | None = None) -> list[RequestScores]:
        """Readout: hand out and release the scores of ``req_ids`` (default: every request holding some)."""
        asked = None if req_ids is None else set(req_ids)
        wanted = [r for r in self.pending() if asked is None or r in asked]
        return [self._pop(r) for r in wanted]

    def take_tagged(self, tags: Iterable[str], discard: Iterable[str]) -> list[RequestScores]:
        """Serving: hand out the scores filed under ``tags``; drop ``discard``-ed tags now and later; expire."""
        now = time.monotonic()
        tags, discard = set(tags), set(discard)
        for tag in discard:
            self._dropped[tag] = now
        out = []
        for req_id in self.pending():
            tag = self.held[req_id].tag
            if tag in discard:
                del self.held[req_id]
            elif tag in tags:
                out.append(self._pop(req_id))
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
