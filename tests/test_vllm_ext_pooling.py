"""PooledAccumulator and step layouts, without vLLM: stitching by (request, position)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amygdala_vllm.vllm_ext.pooling import PooledAccumulator
from amygdala_vllm.vllm_ext.step import build_step_layout


def _stream(positions: list[int], req_offsets: list[float], H: int = 4) -> torch.Tensor:
    """Rows whose value encodes (request offset + position) so sums are hand-checkable."""
    return torch.tensor([[o + p] * H for o, p in zip(req_offsets, positions)], dtype=torch.float32)


def test_single_prompt_mean_skips_first_and_last_is_final_position():
    acc = PooledAccumulator(num_layers=1, hidden_size=4, skip_first_tokens=1)
    pos = [0, 1, 2, 3, 4]
    layout = build_step_layout(["a"], np.array([0, 5]), torch.tensor(pos), np.array([5]))
    acc.begin_step(layout)
    acc.add(0, _stream(pos, [0] * 5))
    acc.end_step()
    r = acc.pop("a")
    assert r.num_tokens == 5 and r.rows_seen == 5
    assert torch.allclose(r.mean, torch.full((1, 4), 2.5))  # mean of 1..4
    assert torch.allclose(r.last, torch.full((1, 4), 4.0))


def test_chunked_prefill_across_steps_and_batch_order_stitch_by_position():
    """Request b arrives in two chunks, interleaved with a, in a different row order each step."""
    acc = PooledAccumulator(num_layers=2, hidden_size=3, skip_first_tokens=1)
    # step 1: a[0:3], b[0:2]
    l1 = build_step_layout(["a", "b"], np.array([0, 3, 5]), torch.tensor([0, 1, 2, 0, 1]), np.array([3, 4]))
    acc.begin_step(l1)
    s1 = _stream([0, 1, 2, 0, 1], [0, 0, 0, 100, 100], H=3)
    acc.add(0, s1)
    acc.add(1, s1 * 2)
    acc.end_step()
    # step 2: b[2:4] only, plus two padding rows that belong to nobody
    l2 = build_step_layout(["b"], np.array([0, 2]), torch.tensor([2, 3, 0, 0]), np.array([4]))
    acc.begin_step(l2)
    s2 = torch.cat([_stream([2, 3], [100, 100], H=3), torch.full((2, 3), 1e6)])
    acc.add(0, s2)
    acc.add(1, s2 * 2)
    acc.end_step()
    a, b = acc.pop("a"), acc.pop("b")
    assert a.rows_seen == 3 and b.rows_seen == 4
    assert torch.allclose(a.mean[0], torch.full((3,), 1.5)) and torch.allclose(a.last[0], torch.full((3,), 2.0))
    assert torch.allclose(b.mean[0], torch.full((3,), 102.0)) and torch.allclose(b.last[0], torch.full((3,), 103.0))
    assert torch.allclose(b.mean[1], torch.full((3,), 204.0))


def test_decode_rows_are_ignored_and_skip_zero_includes_first():
    acc = PooledAccumulator(num_layers=1, hidden_size=2, skip_first_tokens=0)
    acc.begin_step(build_step_layout(["a"], np.array([0, 2]), torch.tensor([0, 1]), np.array([2])))
    acc.add(0, _stream([0, 1], [0, 0], H=2))
    acc.end_step()
    # a decode step at position 2 (past the prompt) must not change anything
    acc.begin_step(build_step_layout(["a"], np.array([0, 1]), torch.tensor([2]), np.array([2])))
    acc.add(0, torch.full((1, 2), 999.0))
    acc.end_step()
    r = acc.pop("a")
    assert r.rows_seen == 2
    assert torch.allclose(r.mean, torch.full((1, 2), 0.5))
    assert torch.allclose(r.last, torch.full((1, 2), 1.0))


def test_capacity_grows_and_slots_are_reused():
    acc = PooledAccumulator(num_layers=1, hidden_size=2, skip_first_tokens=0, capacity=1)
    ids = [f"r{i}" for i in range(5)]
    layout = build_step_layout(ids, np.arange(6), torch.zeros(5, dtype=torch.int64), np.ones(5, dtype=np.int64))
    acc.begin_step(layout)
    acc.add(0, torch.arange(10, dtype=torch.float32).reshape(5, 2))
    acc.end_step()
    got = {r: acc.pop(r).mean[0, 0].item() for r in ids}
    assert got == {"r0": 0.0, "r1": 2.0, "r2": 4.0, "r3": 6.0, "r4": 8.0}
    assert acc.pending() == []


def test_mrope_positions_use_first_row():
    layout = build_step_layout(["a"], np.array([0, 3]), torch.tensor([[0, 1, 2]] * 3), np.array([3]))
    assert layout.positions.tolist() == [0, 1, 2]


def test_layout_rejects_inconsistent_offsets():
    with pytest.raises(ValueError):
        build_step_layout(["a", "b"], np.array([0, 3]), torch.arange(3), np.array([3, 1]))
    with pytest.raises(ValueError):
        build_step_layout(["a"], np.array([0, 5]), torch.arange(3), np.array([5]))
