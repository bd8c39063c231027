"""Pool residual rows per request on the worker, by the modes of ``amygdala_vllm.pooling_modes``.

Only ``[L, H]`` per request ever leaves the worker; per-token rows are folded
into float32 running sums as each layer runs and then dropped. The mean covers
prompt positions ``>= skip_first_tokens`` (the first position is an attention
sink whose huge activation swamps a mean over a short text); ``last`` is the
row at position ``prompt_len - 1``; ``max`` (only when asked for) is the
element-wise maximum over the same positions as the mean. Rows at positions
past the prompt (decode steps) are ignored. Every prompt position must be seen exactly once; the
accumulator counts rows so a missed or repeated token is detected, not silently
averaged in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..pooling_modes import DEFAULT_MODES, mode
from .step import StepLayout

__all__ = ["PooledRequest", "PooledAccumulator"]


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
    """Running per-request sums for a fixed list of hooked layers.

    Storage is ``[L, capacity, H]`` so each layer's update is one contiguous
    ``index_add_``; capacity doubles when more requests are in flight at once.
    Growth happens inside vLLM's forward (inference mode), so the buffers may be
    inference tensors: every method that writes them runs in inference mode.

    The sums live on ``device`` (the model's), so a GPU step folds its rows in
    without copying them to the host; only the per-step row maps cross over
    (once per step, not per layer), and :meth:`pop` returns host tensors.
    """

    def __init__(self, num_layers: int, hidden_size: int, skip_first_tokens: int, capacity: int = 16,
                 device: torch.device | str = "cpu", modes: tuple[str, ...] = DEFAULT_MODES):
        if skip_first_tokens < 0:
            raise ValueError("skip_first_tokens must be >= 0")
        for name in modes:
            mode(name)
        if not {"mean", "last"} <= set(modes):
            raise ValueError(f"pooling modes {list(modes)} must include mean and last")
        self.modes = tuple(modes)
        self.device = torch.device(device)
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.skip_first_tokens = skip_first_tokens
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._alloc(capacity)
        self._step: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int] | None = None

    def _alloc(self, capacity: int) -> None:
        old = getattr(self, "_sum", None)
        L, H = self.num_layers, self.hidden_size
        new_sum = torch.zeros(L, capacity, H, dtype=torch.float32, device=self.device)
        new_last = torch.zeros(L, capacity, H, dtype=torch.float32, device=self.device)
        new_count = torch.zeros(capacity, dtype=torch.int64)
        new_rows = torch.zeros(capacity, dtype=torch.int64)
        new_plen = torch.zeros(capacity, dtype=torch.int64)
        new_max = (torch.full((L, capacity, H), -torch.inf, dtype=torch.float32, device=self.device)
                   if "max" in self.modes else None)
        if old is not None:
            n = old.shape[1]
            new_sum[:, :n] = old
            new_last[:, :n] = self._last
            if new_max is not None:
                new_max[:, :n] = self._max
            new_count[:n] = self._count
            new_rows[:n] = self._rows
            new_plen[:n] = self._plen
            self._free.extend(range(capacity - 1, n - 1, -1))
        else:
            self._free = list(range(capacity - 1, -1, -1))
        self._sum, self._last, self._max = new_sum, new_last, new_max
        self._count, self._rows, self._plen = new_count, new_rows, new_plen

    def _slot(self, req_id: str) -> int:
        slot = self._slots.get(req_id)
        if slot is None:
            if not self._free:
                self._alloc(self._sum.shape[1] * 2)
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
        plen = torch.from_numpy(layout.prompt_lens)
        self._plen[slots] = plen
        row_slot = slots[layout.row_req]
        pos = layout.positions
        row_plen = plen[layout.row_req]
        in_prompt = pos < row_plen
        in_mean = in_prompt & (pos >= self.skip_first_tokens)
        mean_rows = torch.nonzero(in_mean).squeeze(1)
        last_rows = torch.nonzero(pos == row_plen - 1).squeeze(1)
        prompt_rows = torch.nonzero(in_prompt).squeeze(1)
        self._rows.index_add_(0, row_slot[prompt_rows], torch.ones_like(prompt_rows))
        self._count.index_add_(0, row_slot[mean_rows], torch.ones_like(mean_rows))
        maps = (row_slot[mean_rows], mean_rows, row_slot[last_rows], last_rows)
        if self.device.type != "cpu":
            maps = tuple(t.to(self.device, non_blocking=True) for t in maps)
        self._step = (*maps, n)

    def add(self, layer_pos: int, stream: torch.Tensor) -> None:
        """Fold this step's residual rows of hooked layer number ``layer_pos`` in."""
        if self._step is None:
            return
        mean_slots, mean_rows, last_slots, last_rows, n = self._step
        rows = stream[:n]
        if rows.device != self._sum.device:
            raise RuntimeError(f"layer rows are on {rows.device} but the accumulator is on {self._sum.device}")
        if mean_rows.numel():
            body = rows.index_select(0, mean_rows).float()
            self._sum[layer_pos].index_add_(0, mean_slots, body)
            if self._max is not None:
                # scatter_reduce_ (stable API) rather than index_reduce_ (beta, warns on every call).
                index = mean_slots.unsqueeze(1).expand(-1, body.shape[1])
                self._max[layer_pos].scatter_reduce_(0, index, body, "amax")
        if last_rows.numel():
            self._last[layer_pos].index_copy_(0, last_slots, rows.index_select(0, last_rows).float())

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
        denom = max(count, 1)
        last = self._last[:, slot].to("cpu", copy=True)
        pooled = {"mean": self._sum[:, slot].to("cpu", copy=True) / denom, "last": last}
        if self._max is not None:
            pooled["max"] = self._max[:, slot].to("cpu", copy=True)
        if count == 0:
            # Prompt no longer than skip_first_tokens: fall back to the last token, so the
            # text still has a defined mean (recorded: num_tokens <= skip_first_tokens).
            pooled = {name: last.clone() if name != "last" else last for name in pooled}
        result = PooledRequest(num_tokens=int(self._plen[slot]), rows_seen=int(self._rows[slot]),
                               pooled={name: pooled[name] for name in self.modes})
        self._sum[:, slot].zero_()
        self._last[:, slot].zero_()
        if self._max is not None:
            self._max[:, slot].fill_(-torch.inf)
        self._count[slot] = 0
        self._rows[slot] = 0
        self._plen[slot] = 0
        self._free.append(slot)
        return result
