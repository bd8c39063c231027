"""Pool residual rows per request on the worker, by the modes of ``amygdala_vllm.pooling_modes``.

Only ``[L, H]`` per request ever leaves the worker; per-token rows are folded
into float32 running buffers as each layer runs and then dropped. The worker
reads each mode's entry in the registry (which rows, which fold) rather than
knowing modes by name: ``body`` rows are prompt positions ``>= skip_first_tokens``
(the first position is an attention sink whose huge activation swamps a mean
over a short text), folded into one running buffer per fold (a sum for
``mean``, divided by the row count at the end; a running maximum for ``max``);
``last`` is the row at position ``prompt_len - 1``. Rows at positions past the
prompt (decode steps) are ignored. Every prompt position must be seen exactly
once; the accumulator counts rows so a missed or repeated token is detected,
not silently averaged in.

Preemption: vLLM frees a preempted request's KV cache and later recomputes it
from position 0 (prefix caching, off for capture, could resume later). V2
re-sends it as a new request with the same id; V1 resumes it. Either way a
request whose step starts again at position 0 after rows were folded in has
been recomputed, so its slot is cleared first: the recomputed rows replace the
earlier ones instead of being counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..pooling_modes import DEFAULT_MODES, mode
from .step import StepLayout

__all__ = ["PooledRequest", "PooledAccumulator"]

#: Per fold: the running buffer's start value and the ``scatter_reduce_`` rule that folds a row in
#: (``mean`` keeps a sum, folded with ``index_add_``, the byte-stable path of format 1).
_FOLDS: dict[str, tuple[float, str]] = {"mean": (0.0, "sum"), "max": (-float("inf"), "amax"),
                                        "min": (float("inf"), "amin")}


@dataclass(frozen=True)
class PooledRequest:
    """The pooled activations of one finished prompt."""

    num_tokens: int
    rows_seen: int
    pooled: dict[str, torch.Tensor]  # mode name -> float32 [L, H]

    @property
    def mean(self) -> torch.Tensor:
        return self.pooled["mean"]

    @property
    def last(self) -> torch.Tensor:
        return self.pooled["last"]


class PooledAccumulator:
    """Running per-request buffers for a fixed list of hooked layers.

    Storage is ``[L, capacity, H]`` per fold (plus the last row) so each
    layer's update is one contiguous indexed write; capacity doubles when more
    requests are in flight at once. Growth happens inside vLLM's forward
    (inference mode), so the buffers may be inference tensors: every method that
    writes them runs in inference mode.

    The buffers live on ``device`` (the model's), so a GPU step folds its rows
    in without copying them to the host; only the per-step row maps cross over
    (once per step, not per layer), and :meth:`pop` returns host tensors.
    """

    def __init__(self, num_layers: int, hidden_size: int, skip_first_tokens: int, capacity: int = 16,
                 device: torch.device | str = "cpu", modes: tuple[str, ...] = DEFAULT_MODES):
        if skip_first_tokens < 0:
            raise ValueError("skip_first_tokens must be >= 0")
        specs = [mode(name) for name in modes]
        if not {"mean", "last"} <= set(modes):
            raise ValueError(f"pooling modes {list(modes)} must include mean and last")
        missing = sorted({m.fold for m in specs if m.rows == "body"} - set(_FOLDS))
        if missing:
            raise ValueError(f"the worker cannot fold rows by {missing}")
        self.modes = tuple(modes)
        # One running buffer per fold over body rows; the mean's sum always (its count is the fallback rule).
        self._folds = ["mean"] + sorted({m.fold for m in specs if m.rows == "body"} - {"mean"})
        self.device = torch.device(device)
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.skip_first_tokens = skip_first_tokens
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._acc: dict[str, torch.Tensor] = {}
        self._alloc(capacity)
        self._step: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int] | None = None

    def _alloc(self, capacity: int) -> None:
        L, H = self.num_layers, self.hidden_size
        grown = {fold: torch.full((L, capacity, H), _FOLDS[fold][0], dtype=torch.float32, device=self.device)
                 for fold in self._folds}
        grown["last"] = torch.zeros(L, capacity, H, dtype=torch.float32, device=self.device)
        counters = [torch.zeros(capacity, dtype=torch.int64) for _ in range(3)]
        if self._acc:
            n = self._acc["last"].shape[1]
            for key, buf in grown.items():
                buf[:, :n] = self._acc[key]
            for new, old in zip(counters, (self._count, self._rows, self._plen)):
                new[:n] = old
            self._free.extend(range(capacity - 1, n - 1, -1))
        else:
            self._free = list(range(capacity - 1, -1, -1))
        self._acc = grown
        self._count, self._rows, self._plen = counters

    def _slot(self, req_id: str) -> int:
        slot = self._slots.get(req_id)
        if slot is None:
            if not self._free:
                self._alloc(self._acc["last"].shape[1] * 2)
            slot = self._free.pop()
            self._slots[req_id] = slot
        return slot

    def begin_step(self, layout: StepLayout) -> None:
        """Prepare row -> slot maps for the layers of one forward step."""
        n = layout.num_rows
        if n == 0:
            self._step = None
            return
        slots = torch.tensor([self._slot(r) for r in layout.req_ids], dtype=torch.int64)
        self._clear_restarted(layout, slots)
        plen = torch.from_numpy(layout.prompt_lens)
        self._plen[slots] = plen
        row_slot = slots[layout.row_req]
        pos = layout.positions
        row_plen = plen[layout.row_req]
        in_prompt = pos < row_plen
        in_body = in_prompt & (pos >= self.skip_first_tokens)
        body_rows = torch.nonzero(in_body).squeeze(1)
        last_rows = torch.nonzero(pos == row_plen - 1).squeeze(1)
        prompt_rows = torch.nonzero(in_prompt).squeeze(1)
        self._rows.index_add_(0, row_slot[prompt_rows], torch.ones_like(prompt_rows))
        self._count.index_add_(0, row_slot[body_rows], torch.ones_like(body_rows))
        maps = (row_slot[body_rows], body_rows, row_slot[last_rows], last_rows)
        if self.device.type != "cpu":
            maps = tuple(t.to(self.device, non_blocking=True) for t in maps)
        self._step = (*maps, n)

    def _clear_restarted(self, layout: StepLayout, slots: torch.Tensor) -> None:
        """Clear the slot of every request that starts again at position 0 (recomputed after preemption)."""
        starts = torch.from_numpy(layout.starts)
        has_rows = starts[1:] > starts[:-1]
        first = layout.positions[starts[:-1].clamp(max=max(layout.num_rows - 1, 0))]
        restarted = has_rows & (first == 0) & (self._rows[slots] > 0)
        for slot in slots[restarted].tolist():
            self._clear(slot)

    def _clear(self, slot: int) -> None:
        for key, buf in self._acc.items():
            buf[:, slot].fill_(_FOLDS[key][0] if key in _FOLDS else 0.0)
        self._count[slot] = 0
        self._rows[slot] = 0
        self._plen[slot] = 0

    def add(self, layer_pos: int, stream: torch.Tensor) -> None:
        """Fold this step's residual rows of hooked layer number ``layer_pos`` in."""
        if self._step is None:
            return
        body_slots, body_rows, last_slots, last_rows, n = self._step
        rows = stream[:n]
        if rows.device != self.device:
            raise RuntimeError(f"layer rows are on {rows.device} but the accumulator is on {self.device}")
        if body_rows.numel():
            body = rows.index_select(0, body_rows).float()
            self._acc["mean"][layer_pos].index_add_(0, body_slots, body)
            if len(self._folds) > 1:
                # scatter_reduce_ (stable API) rather than index_reduce_ (beta, warns on every call).
                index = body_slots.unsqueeze(1).expand(-1, body.shape[1])
                for fold in self._folds[1:]:
                    self._acc[fold][layer_pos].scatter_reduce_(0, index, body, _FOLDS[fold][1])
        if last_rows.numel():
            self._acc["last"][layer_pos].index_copy_(0, last_slots, rows.index_select(0, last_rows).float())

    def end_step(self) -> None:
        """Forget the row maps of the finished step."""
        self._step = None

    def pending(self) -> list[str]:
        """Request ids with accumulated data."""
        return list(self._slots)

    @torch.inference_mode()
    def pop(self, req_id: str) -> PooledRequest:
        """Return and release one request's pooled activations."""
        slot = self._slots.pop(req_id)
        count = int(self._count[slot])
        last = self._acc["last"][:, slot].to("cpu", copy=True)
        pooled: dict[str, torch.Tensor] = {}
        for name in self.modes:
            spec = mode(name)
            if spec.rows == "last":
                pooled[name] = last
            elif count == 0:
                # Prompt no longer than skip_first_tokens: fall back to the last token, so the
                # text still has a defined pooling (recorded: num_tokens <= skip_first_tokens).
                pooled[name] = last.clone()
            else:
                folded = self._acc[spec.fold][:, slot].to("cpu", copy=True)
                pooled[name] = folded / count if spec.fold == "mean" else folded
        result = PooledRequest(num_tokens=int(self._plen[slot]), rows_seen=int(self._rows[slot]), pooled=pooled)
        self._clear(slot)
        self._free.append(slot)
        return result
