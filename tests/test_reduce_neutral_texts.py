"""``reduce`` uses the dataset's own neutral texts (``pairs --neutral-texts``) when it lists any.

Synthetic activations (tests/synthetic.py) whose planted directions lean on a
nuisance axis; extra neutral texts vary strongly along that axis, while the
derived neutral set (texts only used as negatives) does not. With the listed
texts the neutral projection must remove the axis from every vector, match a
numpy reference computed from exactly those texts, and mlda must pool them as
its neutral class; without the list, reduce keeps deriving the set as before.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from amygdala_vllm.dataset import dataset_sha256, emotion_counts, write_dataset_files
from amygdala_vllm.errors import CaptureError
from amygdala_vllm.formats import PAIRS_FORMAT, DatasetInfo, DatasetStats, TextRecord
from amygdala_vllm.reduce import ReduceOptions, reduce
from amygdala_vllm.validate.vectors import load_manifest, load_vectors
from synthetic import SyntheticSpec, make_synthetic, write_activations

N_NEUTRAL = 60
SPEC = SyntheticSpec(hidden_size=24, train_per_class=30, heldout_per_class=5, nuisance_mix=0.8, seed=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("neutral")
    data = make_synthetic(SPEC)
    rng = np.random.default_rng(7)
    n0 = len(data.texts)
    base = data.mean[data.ids("train")].astype(np.float64).mean(axis=0)
    # neutral texts: the common mean, large spread along the nuisance axis, small noise elsewhere
    extra = (base + rng.normal(size=(N_NEUTRAL, 1, 1)) * 5.0 * data.axis
             + 0.05 * rng.normal(size=(N_NEUTRAL,) + base.shape))
    texts = data.texts + [TextRecord(id=n0 + i, key=f"neutral-texts:{i + 1}", text=f"neutral {i}", sha256=f"{i:064x}")
                          for i in range(N_NEUTRAL)]
    data = replace(data, texts=texts, mean=np.concatenate([data.mean, extra.astype(np.float32)]),
                   last=np.concatenate([data.last, extra.astype(np.float32)]))
    neutral = list(range(n0, n0 + N_NEUTRAL))
    out = {}
    for name, listed in (("given", neutral), ("derived", [])):
        ds = root / f"ds-{name}"
        ds.mkdir()
        info = DatasetInfo(format=PAIRS_FORMAT, source={"kind": "synthetic"}, options={},
                           emotions=emotion_counts(data.examples, SPEC.emotions),
                           stats=DatasetStats(nodes_read=len(texts), nodes_skipped={}, texts=len(texts)),
                           neutral=listed)
        write_dataset_files(ds, info, texts if listed else data.texts, data.examples)
        acts = root / f"acts-{name}"
        ids = range(len(texts)) if listed else data.ids()
        write_activations(acts, data, dataset_sha256=dataset_sha256(ds, listed), text_ids=list(ids), shard_size=50)
        out[name] = (ds, acts)
    return root, data, neutral, out


def _reduce(root: Path, ds: Path, acts: Path, name: str, **opts):
    vec = root / f"{name}.safetensors"
    reduce([acts], ds, vec, ReduceOptions(**opts))  # type: ignore[arg-type]
    man = load_manifest(vec.with_suffix(".manifest.json"))
    return man, load_vectors(vec, man)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_neutral_projection_removes_what_the_given_texts_vary_along(run) -> None:
    root, data, neutral, out = run
    man, vecs = _reduce(root, *out["given"], "given-caa", method="caa", neutral_variance=0.5)
    assert man.method_options["neutral_texts"] == N_NEUTRAL
    # the axis is gone (up to the sample estimate of it)
    assert np.abs(np.einsum("elh,lh->el", vecs, data.axis)).max() < 0.02
    _, derived = _reduce(root, *out["derived"], "derived-caa", method="caa", neutral_variance=0.5)
    assert np.abs(np.einsum("elh,lh->el", derived, data.axis)).max() > 0.2  # derived negatives do not vary along it
    # numpy reference from exactly the listed texts
    x = data.mean.astype(np.float64)
    pos = [[e.text_id for e in data.examples if e.emotion == c and e.split == "train" and e.polarity == "positive"]
           for c in SPEC.emotions]
    neg = [[e.text_id for e in data.examples if e.emotion == c and e.split == "train" and e.polarity == "negative"]
           for c in SPEC.emotions]
    raw = np.stack([x[p].mean(axis=0) for p in pos]) - np.stack([x[n].mean(axis=0) for n in neg])
    for li in range(x.shape[1]):
        vals, u = np.linalg.eigh(np.cov(x[neutral][:, li], rowvar=False))
        vals, u = vals[::-1], u[:, ::-1]
        k = int(np.argmax(np.cumsum(vals) / vals.sum() >= 0.5)) + 1
        raw[:, li] -= raw[:, li] @ u[:, :k] @ u[:, :k].T
    np.testing.assert_allclose(vecs, _unit(raw), atol=1e-5)


def test_mlda_pools_the_given_texts_as_its_neutral_class(run) -> None:
    root, data, neutral, out = run
    _, vecs = _reduce(root, *out["given"], "given-mlda", method="mlda")
    x = data.mean.astype(np.float64)
    groups = [[e.text_id for e in data.examples if e.emotion == c and e.split == "train" and e.polarity == "positive"]
              for c in SPEC.emotions] + [neutral]
    mu = np.stack([x[g].mean(axis=0) for g in groups[:-1]])
    gm = mu - mu.mean(axis=0)
    ref = np.empty_like(gm)
    for li in range(x.shape[1]):
        dev = [x[g][:, li] - x[g][:, li].mean(axis=0) for g in groups]
        sw = sum(d.T @ d for d in dev) / (sum(len(g) for g in groups) - len(groups))
        sw += 0.1 * np.mean(np.diag(sw)) * np.eye(len(sw))
        ref[:, li] = np.linalg.solve(sw, gm[:, li].T).T
    np.testing.assert_allclose(vecs, _unit(ref), atol=1e-5)


def test_given_neutral_texts_missing_from_the_capture(run, tmp_path: Path) -> None:
    _, data, neutral, out = run
    ds, _ = out["given"]
    acts = tmp_path / "acts"
    write_activations(acts, data, dataset_sha256=dataset_sha256(ds, neutral), text_ids=list(data.ids()))
    with pytest.raises(CaptureError, match="neutral text"):
        reduce([acts], ds, tmp_path / "x.safetensors", ReduceOptions(method="caa", neutral_variance=0.5))
    reduce([acts], ds, tmp_path / "y.safetensors", ReduceOptions(method="caa"))  # plain CAA does not need them


def test_compare_methods_uses_the_same_neutral_texts(run) -> None:
    from amygdala_vllm.dataset import load_dataset
    from amygdala_vllm.reduce import open_activations, select_concepts
    from amygdala_vllm.reduce.methods import given_neutral
    from amygdala_vllm.validate.compare import variant_vectors

    root, _, neutral, out = run
    ds, acts_dir = out["given"]
    _, reduced = _reduce(root, ds, acts_dir, "given-gm", method="grand-mean", neutral_variance=0.5)
    dataset = load_dataset(ds)
    acts = open_activations([acts_dir], dataset_sha256=dataset.sha256)
    try:
        concepts, members, _, _ = select_concepts(dataset, acts, ReduceOptions())
        given = given_neutral(dataset, acts)
        assert given is not None and given.tolist() == neutral
        vecs = variant_vectors(acts, members, concepts, "mean", 0.1, given)
    finally:
        acts.close()
    np.testing.assert_allclose(vecs["grand-mean+neutral0.5"], reduced, atol=1e-6)
