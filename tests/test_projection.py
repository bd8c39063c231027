"""projection: every token's stream @ V.T per layer, stitched per request by position, bounded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amygdala_vllm.vllm_ext.projection import ProjectionAccumulator
from amygdala_vllm.vllm_ext.step import build_step_layout

H, E = 6, 2


def _vectors(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(E, H, generator=g), torch.randn(E, H, generator=g)]


def _step(acc: ProjectionAccumulator, req_ids: list[str], starts: list[int], positions: list[int],
          streams: list[torch.Tensor]) -> None:
    acc.begin_step(build_step_layout(req_ids, np.array(starts), torch.tensor(positions),
                                     np.array([100] * len(req_ids))))
    for layer_pos, s in enumerate(streams):
        acc.add(layer_pos, s)
    acc.end_step()


def test_scores_are_dot_products_stitched_by_position_across_steps() -> None:
    vecs = _vectors()
    acc = ProjectionAccumulator(vecs, max_tokens_per_request=10)
    g = torch.Generator().manual_seed(1)
    rows = {p: [torch.randn(H, generator=g) for _ in vecs] for p in range(5)}
    # step 1: "a" positions 2..3 (a later chunk first), "b" position 0; step 2: "a" positions 0..1 and 4
    _step(acc, ["a", "b"], [0, 2, 3], [2, 3, 0],
          [torch.stack([rows[2][l], rows[3][l], rows[0][l]]) for l in range(2)])
    _step(acc, ["a"], [0, 3], [0, 1, 4], [torch.stack([rows[0][l], rows[1][l], rows[4][l]]) for l in range(2)])
    assert sorted(acc.pending()) == ["a", "b"]
    got = acc.pop("a")
    assert got.positions.tolist() == [0, 1, 2, 3, 4] and got.scores.shape == (5, 2, E)
    for t in range(5):
        for l in range(2):
            torch.testing.assert_close(got.scores[t, l], rows[t][l] @ vecs[l].T)
    assert acc.pending() == ["b"]
    assert acc.pop("a").positions.numel() == 0  # released once drained


def test_token_bound_per_request_is_enforced() -> None:
    acc = ProjectionAccumulator(_vectors(), max_tokens_per_request=3)
    _step(acc, ["a"], [0, 2], [0, 1], [torch.zeros(2, H)] * 2)
    with pytest.raises(RuntimeError, match="produced 4 scored tokens, over the bound of 3"):
        _step(acc, ["a"], [0, 2], [2, 3], [torch.zeros(2, H)] * 2)


def test_padding_rows_and_empty_steps_are_ignored() -> None:
    acc = ProjectionAccumulator(_vectors(), max_tokens_per_request=8)
    _step(acc, ["a"], [0, 1], [0, 0, 0], [torch.ones(3, H)] * 2)  # two padding rows
    _step(acc, [], [0], [0], [torch.ones(1, H)] * 2)
    assert acc.pop("a").scores.shape == (1, 2, E)
    with pytest.raises(ValueError, match="no layers"):
        ProjectionAccumulator([], max_tokens_per_request=1)
