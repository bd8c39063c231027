"""reduce streams: its peak memory does not grow with the number of shards (measured, not timed)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from amygdala_vllm.reduce import ReduceOptions, reduce
from synthetic import SyntheticSpec, make_run

SHARD = 100  # texts per shard
HIDDEN = 1024
LAYERS = (3, 7)
EMOTIONS = ("a", "b", "c", "d", "e")


def _peak(root: Path, shards: int, method: str) -> tuple[int, int]:
    """(tracemalloc peak bytes of one reduce, bytes of the 'mean' arrays it reads)."""
    per_class = shards * SHARD // (2 * len(EMOTIONS))
    spec = SyntheticSpec(emotions=EMOTIONS, layers=LAYERS, hidden_size=HIDDEN, train_per_class=per_class,
                         heldout_per_class=0)
    ds, dirs, data = make_run(root, spec, shard_size=SHARD)
    assert len(list(dirs[0].glob("shard-*.safetensors"))) == shards
    tracemalloc.start()
    try:
        reduce(dirs, ds, root / "v.safetensors", ReduceOptions(method=method))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, data.mean.nbytes


@pytest.mark.parametrize("method", ["caa", "lda"])
def test_peak_memory_is_flat_in_the_number_of_shards(tmp_path: Path, method: str) -> None:
    small, small_data = _peak(tmp_path / "10", 10, method)
    large, large_data = _peak(tmp_path / "40", 40, method)
    # Loading the shards (even once, as float32) would add large_data - small_data (~23 MiB);
    # streaming adds only the per-text index and the dataset records (a few hundred bytes a text).
    growth = large - small
    assert small > 2 * SHARD * len(LAYERS) * HIDDEN * 8  # tracemalloc does see numpy blocks
    assert growth < 0.15 * (large_data - small_data), (small, large, large_data)
