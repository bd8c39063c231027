"""The pooling-mode registry: the table itself, the score-series rule, and that the worker obeys the same rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amygdala_vllm.errors import UsageError
from amygdala_vllm.pooling_modes import DEFAULT_MODES, FOLDS, MODES, PoolingMode, mode, parse_modes, pool_scores
from amygdala_vllm.vllm_ext.pooling import PooledAccumulator
from amygdala_vllm.vllm_ext.step import build_step_layout


def test_the_table_names_each_mode_once_with_its_linearity_and_worker_rule():
    assert list(MODES) == ["mean", "last", "max"] and DEFAULT_MODES == ("mean", "last")
    for name, m in MODES.items():
        assert m.name == name and m.worker_rule
    assert mode("mean").linear and mode("last").linear and not mode("max").linear
    assert mode("max").worker_rule.startswith("element-wise max of prompt rows at positions >= skip_first_tokens")
    with pytest.raises(ValueError, match="not known"):
        PoolingMode("median", "body", "median")  # type: ignore[arg-type]


def _through_the_worker(rows: np.ndarray, skip: int, modes: tuple[str, ...], chunks=((0, 2), (2, None))):
    """Pool ``rows [T, H]`` of one request on the worker's accumulator, fed in prefill chunks."""
    T, H = rows.shape
    acc = PooledAccumulator(num_layers=1, hidden_size=H, skip_first_tokens=skip, modes=modes)
    for lo, hi in chunks:
        hi = T if hi is None else hi
        acc.begin_step(build_step_layout(["a"], np.array([0, hi - lo]), torch.arange(lo, hi), np.array([T])))
        acc.add(0, torch.from_numpy(rows[lo:hi]))
        acc.end_step()
    return acc.pop("a").pooled


def test_a_mode_made_of_known_rows_and_folds_is_one_registry_line(monkeypatch: pytest.MonkeyPatch):
    """The issue's "adding a pooling mode is one change": a ``min`` entry, and nothing else, is obeyed by
    the score-series rule, the worker and the mode parser (the worker interprets the entry's data)."""
    monkeypatch.setitem(MODES, "min", PoolingMode("min", "body", "min"))
    assert set(FOLDS) >= {"mean", "max", "min"}
    rows = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    pooled = _through_the_worker(rows, 1, parse_modes("mean,last,min"))
    np.testing.assert_array_equal(pooled["min"][0].numpy(), rows[1:].min(axis=0))
    np.testing.assert_array_equal(pool_scores("min", rows, 1), rows[1:].min(axis=0))
    assert not mode("min").linear


def test_mean_skips_the_first_positions_and_last_is_the_final_row():
    s = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    np.testing.assert_array_equal(pool_scores("mean", s, 2), s[2:].mean(axis=0))
    np.testing.assert_array_equal(pool_scores("mean", s, 0), s.mean(axis=0))
    np.testing.assert_array_equal(pool_scores("last", s, 2), s[-1])
    np.testing.assert_array_equal(pool_scores("max", -s, 2), -s[2])
    assert pool_scores("mean", s, 2).dtype == np.float32
    assert pool_scores("mean", s.astype(np.float64), 2).dtype == np.float64


def test_a_series_no_longer_than_skip_means_its_last_row():
    s = np.array([[1.0], [7.0]])
    np.testing.assert_array_equal(pool_scores("mean", s, 2), [7.0])
    np.testing.assert_array_equal(pool_scores("mean", s, 5), [7.0])
    np.testing.assert_array_equal(pool_scores("max", np.array([[9.0], [7.0]]), 2), [7.0])


def test_explicit_positions_select_by_position_not_by_index():
    s = np.array([[1.0], [2.0], [3.0], [4.0]])
    np.testing.assert_array_equal(pool_scores("mean", s, 1), [3.0])
    np.testing.assert_array_equal(pool_scores("mean", s, 1, [0, 1, 2, 3]), [3.0])
    np.testing.assert_array_equal(pool_scores("mean", s, 3, [2, 3, 4, 5]), [3.0])  # rows at positions 3, 4, 5
    with pytest.raises(UsageError, match="positions"):
        pool_scores("mean", s, 1, [0, 1])


def test_unknown_or_empty_input_is_a_usage_error():
    with pytest.raises(UsageError, match="choose from mean, last, max"):
        mode("median")
    with pytest.raises(UsageError, match="empty"):
        pool_scores("mean", np.zeros((0, 2)), 1)


def test_parse_modes():
    assert parse_modes("mean,last") == ("mean", "last")
    assert parse_modes(" last ") == ("last",)
    assert parse_modes("mean,last,max") == ("mean", "last", "max")
    for bad, msg in (("", "no pooling"), ("mean,mean", "twice"), ("mean,sum", "unknown")):
        with pytest.raises(UsageError, match=msg):
            parse_modes(bad)


@pytest.mark.parametrize("skip", [0, 1, 3, 9])
def test_the_worker_computes_what_the_registry_says(skip: int):
    """Random rows through the worker's accumulator match the registry's rule on the same rows.

    The projection is linear, so pooling rows then projecting equals projecting
    then pooling: this is the identity the readout agreement check relies on.
    """
    rng = np.random.default_rng(skip)
    T, H = 6, 5
    rows = rng.standard_normal((T, H)).astype(np.float32)
    # two prefill chunks: max and sum both fold across steps
    pooled = _through_the_worker(rows, skip, tuple(MODES))
    assert list(pooled) == list(MODES)
    vec = rng.standard_normal((H, 2)).astype(np.float64)
    for name in MODES:
        worker = pooled[name][0].numpy()
        np.testing.assert_allclose(worker, pool_scores(name, rows, skip), rtol=1e-6, atol=1e-6)
        if mode(name).linear:
            np.testing.assert_allclose(worker @ vec, pool_scores(name, rows.astype(np.float64) @ vec, skip),
                                       rtol=1e-5, atol=1e-5)


def test_the_worker_pools_only_the_modes_asked_for_and_resets_max_between_requests():
    acc = PooledAccumulator(num_layers=1, hidden_size=2, skip_first_tokens=0, capacity=1, modes=("mean", "last", "max"))
    for rid, value in (("a", 5.0), ("b", -3.0)):  # "b" reuses "a"'s slot: a stale max of 5 would leak in
        acc.begin_step(build_step_layout([rid], np.array([0, 2]), torch.arange(2), np.array([2])))
        acc.add(0, torch.tensor([[value, value], [value - 1, value - 1]]))
        acc.end_step()
        got = acc.pop(rid)
        assert got.pooled["max"].tolist() == [[value, value]]
    plain = PooledAccumulator(num_layers=1, hidden_size=2, skip_first_tokens=0)
    plain.begin_step(build_step_layout(["a"], np.array([0, 1]), torch.arange(1), np.array([1])))
    plain.add(0, torch.ones(1, 2))
    plain.end_step()
    assert list(plain.pop("a").pooled) == ["mean", "last"]
    with pytest.raises(ValueError, match="must include mean and last"):
        PooledAccumulator(num_layers=1, hidden_size=2, skip_first_tokens=0, modes=("max",))
    with pytest.raises(UsageError, match="unknown pooling mode"):
        PooledAccumulator(num_layers=1, hidden_size=2, skip_first_tokens=0, modes=("mean", "last", "median"))
