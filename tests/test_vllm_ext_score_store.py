"""score_store: every scored token's stream @ V.T per layer, held per request, drained once per position.

The store reads the runner only through the real :class:`V1RunnerView`, over a
runner-shaped object with the V1 fields it reads (vLLM 0.32
``v1/worker/gpu_model_runner.py``: ``input_ids`` a ``CpuGpuBuffer`` with
``.gpu``; ``requests`` req_id -> ``CachedRequestState`` whose
``sampling_params.extra_args`` carry ``vllm_xargs``).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from amygdala_vllm.vllm_ext.rpc import TAG_KEY
from amygdala_vllm.vllm_ext.runners import V1RunnerView
from amygdala_vllm.vllm_ext.score_store import ScoreStore, merge_pieces
from amygdala_vllm.vllm_ext.step import build_step_layout

H, E = 6, 2


class FakeRunner(SimpleNamespace):
    """A V1 model runner's ``input_ids`` and ``requests``, set per step by the test."""

    def __init__(self, xargs: dict[str, dict] | None = None) -> None:
        super().__init__(input_ids=SimpleNamespace(gpu=torch.zeros(0, dtype=torch.int64)), requests={})
        for req_id, extra in (xargs or {}).items():
            self.requests[req_id] = SimpleNamespace(sampling_params=SimpleNamespace(extra_args=extra))


def _vectors(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(E, H, generator=g), torch.randn(E, H, generator=g)]


def _store(runner: FakeRunner | None = None, **kw) -> tuple[ScoreStore, FakeRunner]:
    runner = runner or FakeRunner()
    return ScoreStore(V1RunnerView(runner), _vectors(), **kw), runner


def _step(store: ScoreStore, runner: FakeRunner, req_ids: list[str], starts: list[int], positions: list[int],
          streams: list[torch.Tensor], ids: list[int] | None = None) -> None:
    runner.input_ids.gpu = torch.tensor(ids if ids is not None else [100 + p for p in positions])
    store.begin_step(build_step_layout(req_ids, np.array(starts), torch.tensor(positions),
                                       np.array([100] * len(req_ids))))
    for layer_pos, s in enumerate(streams):
        store.add(layer_pos, s)
    store.end_step()


def test_scores_are_dot_products_stitched_by_position_across_steps() -> None:
    store, runner = _store(max_tokens_per_request=10)
    vecs = store.vectors
    g = torch.Generator().manual_seed(1)
    rows = {p: [torch.randn(H, generator=g) for _ in vecs] for p in range(5)}
    # step 1: "a" positions 2..3 (a later chunk first), "b" position 0; step 2: "a" positions 0..1 and 4
    _step(store, runner, ["a", "b"], [0, 2, 3], [2, 3, 0],
          [torch.stack([rows[2][l], rows[3][l], rows[0][l]]) for l in range(2)])
    _step(store, runner, ["a"], [0, 3], [0, 1, 4], [torch.stack([rows[0][l], rows[1][l], rows[4][l]]) for l in range(2)])
    assert store.pending() == ["a", "b"]
    (got,) = store.take(["a"])
    assert got.req_id == "a" and got.tag == "" and got.prompt_len == 100
    assert got.positions.tolist() == [0, 1, 2, 3, 4] and got.scores.shape == (5, 2, E)
    assert got.token_ids.tolist() == [100, 101, 102, 103, 104]  # the ids the model was fed, by position
    for t in range(5):
        for l in range(2):
            torch.testing.assert_close(torch.from_numpy(got.scores[t, l]), rows[t][l] @ vecs[l].T)
    assert store.pending() == ["b"]
    assert store.take(["a"]) == []  # released once drained
    assert [r.req_id for r in store.take()] == ["b"] and store.stats()["requests_held"] == 0


def test_a_recomputed_position_replaces_the_earlier_score() -> None:
    """Preemption: vLLM forwards positions 1..2 again; the drain keeps the later scores, each position once."""
    store, runner = _store(max_tokens_per_request=10)
    _step(store, runner, ["a"], [0, 3], [0, 1, 2], [torch.ones(3, H)] * 2, ids=[5, 6, 7])
    _step(store, runner, ["a"], [0, 3], [1, 2, 3], [2 * torch.ones(3, H)] * 2, ids=[60, 70, 8])
    (got,) = store.take()
    assert got.positions.tolist() == [0, 1, 2, 3] and got.token_ids.tolist() == [5, 60, 70, 8]
    once, twice = float(torch.ones(H) @ store.vectors[0][0]), float(2 * torch.ones(H) @ store.vectors[0][0])
    np.testing.assert_allclose(got.scores[:, 0, 0], [once, twice, twice, twice], rtol=1e-6)


def test_merge_keeps_the_last_computed_piece_per_position() -> None:
    p = [(torch.tensor([3, 1]), torch.tensor([30, 10]), torch.tensor([[3.0], [1.0]])),
         (torch.tensor([1]), torch.tensor([11]), torch.tensor([[1.5]]))]
    positions, ids, scores = merge_pieces(p)
    assert positions.tolist() == [1, 3] and ids.tolist() == [11, 30] and scores[:, 0].tolist() == [1.5, 3.0]


def test_token_bound_per_request_is_enforced() -> None:
    store, runner = _store(max_tokens_per_request=3)
    _step(store, runner, ["a"], [0, 2], [0, 1], [torch.zeros(2, H)] * 2)
    with pytest.raises(RuntimeError, match="produced 4 scored tokens, over the bound of 3"):
        _step(store, runner, ["a"], [0, 2], [2, 3], [torch.zeros(2, H)] * 2)


def test_padding_rows_and_empty_steps_are_ignored() -> None:
    store, runner = _store(max_tokens_per_request=8)
    _step(store, runner, ["a"], [0, 1], [0, 0, 0], [torch.ones(3, H)] * 2)  # two padding rows
    _step(store, runner, [], [0], [0], [torch.ones(1, H)] * 2)
    assert store.take()[0].scores.shape == (1, 2, E)
    with pytest.raises(ValueError, match="no layers"):
        ScoreStore(V1RunnerView(FakeRunner()), [])


def test_serving_scores_only_tagged_requests_and_drains_by_tag() -> None:
    runner = FakeRunner({"plain": {}, "t1": {TAG_KEY: "x"}, "t2": {TAG_KEY: "y"}})
    store, _ = _store(runner, tag_key=TAG_KEY)
    g = torch.Generator().manual_seed(2)
    streams = [torch.randn(5, H, generator=g) for _ in range(2)]
    # rows: plain 0..1, t1 2..3, t2 4 (a gather of non-leading rows)
    _step(store, runner, ["plain", "t1", "t2"], [0, 2, 4, 5], [0, 1, 0, 1, 7], streams, ids=[1, 2, 3, 4, 5])
    assert store.pending() == ["t1", "t2"]
    (x,) = store.take_tagged(["x"], [])
    assert x.tag == "x" and x.positions.tolist() == [0, 1] and x.token_ids.tolist() == [3, 4]
    torch.testing.assert_close(torch.from_numpy(x.scores[:, 1]), streams[1][2:4] @ store.vectors[1].T)
    assert store.take_tagged(["x"], ["y"]) == [] and store.pending() == []  # "y" discarded
    _step(store, runner, ["t2"], [0, 1], [8], [torch.ones(1, H)] * 2)  # arrives after the discard: never kept
    assert store.pending() == []
    assert store.stats() == {"requests_held": 0, "rows_held": 0, "requests_known": 3, "tags_dropped": 1}


def test_serving_drops_undrained_scores_of_finished_requests_after_the_ttl() -> None:
    runner = FakeRunner({"t1": {TAG_KEY: "x"}})
    store, _ = _store(runner, tag_key=TAG_KEY, ttl_s=0.0)
    _step(store, runner, ["t1"], [0, 1], [0], [torch.ones(1, H)] * 2)
    del runner.requests["t1"]  # finished; nobody drains it
    store.take_tagged([], [])  # first sight of it gone
    assert store.pending() == ["t1"]
    store.take_tagged([], [])
    assert store.pending() == [] and store.stats()["requests_known"] == 0
