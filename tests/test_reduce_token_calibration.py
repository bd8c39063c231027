"""Per-token calibration in the manifest equals the token-weighted class means of the projections."""

from __future__ import annotations

import numpy as np

from amygdala_vllm.reduce import ReduceOptions, reduce
from amygdala_vllm.reduce.token_calibration import pooled_counts
from amygdala_vllm.shards import Shard, read_shard, write_shard
from amygdala_vllm.validate.vectors import load_manifest, load_vectors
from synthetic import SyntheticSpec, make_run


def test_pooled_counts_follow_the_worker() -> None:
    # a text no longer than the skip is pooled as its last row: one token
    assert pooled_counts(np.array([1, 2, 12]), 1).tolist() == [1, 1, 11]


def test_manifest_token_means_weight_every_pooled_token_alike(tmp_path) -> None:
    ds, dirs, data = make_run(tmp_path, SyntheticSpec(seed=7))
    rng = np.random.default_rng(0)
    lengths = {}
    for path in sorted(dirs[0].glob("shard-*.safetensors")):
        sh = read_shard(path)
        n = rng.integers(1, 40, size=len(sh.text_ids)).astype(np.int32)
        lengths.update(zip(sh.text_ids.tolist(), n.tolist()))
        write_shard(path, Shard(sh.text_ids, n, sh.mean, sh.last))
    vec = tmp_path / "v.safetensors"
    reduce(dirs, ds, vec, ReduceOptions(method="grand-mean"))
    man = load_manifest(tmp_path / "v.manifest.json")
    vectors = load_vectors(vec, man)
    for e, emo in enumerate(man.concepts):
        for pol, field in (("positive", "token_pos_mean"), ("negative", "token_neg_mean")):
            ids = [ex.text_id for ex in data.examples if ex.emotion == emo and ex.polarity == pol and ex.split == "train"]
            w = np.maximum(np.array([lengths[i] for i in ids]) - 1, 1).astype(np.float64)
            for li, layer in enumerate(man.layers):
                proj = data.mean[ids].astype(np.float64)[:, li] @ vectors[e, li]
                want = float((w * proj).sum() / w.sum())
                got = getattr(man.calibration[emo][str(layer)], field)
                assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), (emo, pol, layer, got, want)
