"""step: which row of a flat vLLM batch belongs to which request, at which position."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amygdala_vllm.vllm_ext.step import build_step_layout


def test_rows_map_to_requests_and_padding_is_dropped() -> None:
    # two requests: "a" prefills 3 rows, "b" decodes 1 row at position 9; two padding rows follow
    positions = torch.tensor([0, 1, 2, 9, 0, 0])
    layout = build_step_layout(["a", "b"], np.array([0, 3, 4]), positions, np.array([3, 9]))
    assert layout.num_rows == 4
    assert layout.row_req.tolist() == [0, 0, 0, 1]
    assert layout.positions.tolist() == [0, 1, 2, 9] and layout.positions.dtype == torch.int64
    assert layout.prompt_lens.tolist() == [3, 9] and layout.req_ids == ["a", "b"]


def test_a_request_without_rows_this_step_owns_none() -> None:
    layout = build_step_layout(["a", "b", "c"], np.array([0, 2, 2, 3]), torch.arange(3), np.array([2, 5, 1]))
    assert layout.row_req.tolist() == [0, 0, 2]


def test_mrope_positions_take_the_first_row() -> None:
    pos = torch.tensor([[4, 5], [4, 5], [4, 5]])
    assert build_step_layout(["a"], np.array([0, 2]), pos, np.array([6])).positions.tolist() == [4, 5]


def test_inconsistent_bookkeeping_raises() -> None:
    with pytest.raises(ValueError, match="query_start_loc has 2 entries for 2 requests"):
        build_step_layout(["a", "b"], np.array([0, 3]), torch.arange(3), np.array([3, 3]))
    with pytest.raises(ValueError, match="step has 2 position rows but requests claim 3"):
        build_step_layout(["a"], np.array([0, 3]), torch.arange(2), np.array([3]))


def test_empty_step() -> None:
    layout = build_step_layout([], np.array([0]), torch.zeros(8, dtype=torch.int64), np.array([], dtype=np.int64))
    assert layout.num_rows == 0 and layout.row_req.numel() == 0
