"""Which row of this forward pass belongs to which request, at which position.

vLLM packs every scheduled request's tokens into one flat batch per step:
request ``r`` owns rows ``query_start_loc[r]:query_start_loc[r+1]``, and the
model's ``positions`` argument tells each row's position in its prompt. With
chunked prefill a prompt arrives over several steps, so nothing may assume one
step per request; stitching is by (request, position). Rows past the last
request are padding and belong to nobody.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["StepLayout", "build_step_layout"]


@dataclass(frozen=True)
class StepLayout:
    """Per-row ownership of one forward step (only the rows that belong to a request)."""

    req_ids: list[str]
    starts: np.ndarray  # int64 [R + 1], query_start_loc
    positions: torch.Tensor  # int64 [N], position of each row in its request
    prompt_lens: np.ndarray  # int64 [R]
    row_req: torch.Tensor  # int64 [N], index into req_ids for every row

    @property
    def num_rows(self) -> int:
        """Rows that belong to requests (padding excluded)."""
        return int(self.starts[-1])


def build_step_layout(
    req_ids: list[str], query_start_loc: np.ndarray, positions: torch.Tensor, prompt_lens: np.ndarray
) -> StepLayout:
    """Combine the runner's per-step bookkeeping into row ownership.

    ``positions`` may be ``[N]`` or M-RoPE's ``[3, N]`` (text rows repeat one
    position three times); padded rows beyond ``query_start_loc[-1]`` are dropped.
    """
    starts = np.asarray(query_start_loc, dtype=np.int64)
    if starts.ndim != 1 or len(starts) != len(req_ids) + 1:
        raise ValueError(f"query_start_loc has {len(starts)} entries for {len(req_ids)} requests")
    pos = positions[0] if positions.dim() == 2 else positions
    n = int(starts[-1])
    if pos.shape[0] < n:
        raise ValueError(f"step has {pos.shape[0]} position rows but requests claim {n}")
    counts = np.diff(starts)
    row_req = torch.from_numpy(np.repeat(np.arange(len(req_ids), dtype=np.int64), counts))
    return StepLayout(
        req_ids=list(req_ids),
        starts=starts,
        positions=pos[:n].to(device="cpu", dtype=torch.int64),
        prompt_lens=np.asarray(prompt_lens, dtype=np.int64),
        row_req=row_req,
    )
