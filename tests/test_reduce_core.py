"""reduce through the library: recovery of planted directions, numpy references, formats."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from amygdala_vllm.errors import UsageError
from amygdala_vllm.formats import READOUT_FORMAT_V1, ReadoutManifest
from amygdala_vllm.reduce import ReduceOptions, reduce
from amygdala_vllm.vectors_file import cast
from synthetic import SyntheticData, SyntheticSpec, auroc, make_run, write_activations


def _classes(data: SyntheticData, emotion: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    pick = lambda pol: np.array(  # noqa: E731
        [e.text_id for e in data.examples if e.emotion == emotion and e.polarity == pol and e.split == split]
    )
    return pick("positive"), pick("negative")


def _ref_caa(data: SyntheticData, pooling: str = "mean") -> np.ndarray:
    x = (data.mean if pooling == "mean" else data.last).astype(np.float64)
    out = []
    for emo in data.spec.emotions:
        pos, neg = _classes(data, emo)
        d = x[pos].mean(0) - x[neg].mean(0)
        out.append(d / np.linalg.norm(d, axis=-1, keepdims=True))
    return np.array(out)  # [E, L, H]


def _ref_lda(data: SyntheticData, shrinkage: float) -> np.ndarray:
    x = data.mean.astype(np.float64)
    n_layers = len(data.spec.layers)
    centred, diffs = [], []
    for emo in data.spec.emotions:
        pos, neg = _classes(data, emo)
        centred += [x[pos] - x[pos].mean(0), x[neg] - x[neg].mean(0)]
        diffs.append(x[pos].mean(0) - x[neg].mean(0))
    c = np.concatenate(centred)
    out = np.empty((len(diffs), n_layers, x.shape[2]))
    for li in range(n_layers):
        cov = c[:, li].T @ c[:, li] / (len(c) - 2 * len(diffs))
        cov += shrinkage * np.mean(np.diag(cov)) * np.eye(len(cov))
        for e, d in enumerate(diffs):
            w = np.linalg.solve(cov, d[li])
            out[e, li] = w / np.linalg.norm(w)
    return out


def _loaded(path: Path, layers: tuple[int, ...]) -> np.ndarray:
    t = load_file(str(path))
    return np.stack([t[f"layer_{i}.vectors"] for i in layers], axis=1).astype(np.float64)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_caa_recovers_plants_and_matches_numpy(tmp_path: Path, pooling: str) -> None:
    ds, dirs, data = make_run(tmp_path)
    out = tmp_path / "v.safetensors"
    reduce(dirs, ds, out, ReduceOptions(method="caa", pooling=pooling))
    got = _loaded(out, data.spec.layers)
    cos = np.einsum("elh,elh->el", got, data.plants)
    assert cos.min() > 0.99
    np.testing.assert_allclose(got, _ref_caa(data, pooling), atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-6)


def test_calibration_matches_numpy(tmp_path: Path) -> None:
    ds, dirs, data = make_run(tmp_path)
    out = tmp_path / "v.safetensors"
    man = reduce(dirs, ds, out, ReduceOptions(method="caa")).manifest
    vec = _loaded(out, data.spec.layers)
    x = data.mean.astype(np.float64)
    for e, emo in enumerate(man.concepts):
        pos, neg = _classes(data, emo)
        assert (man.counts[emo].positive, man.counts[emo].negative) == (len(pos), len(neg))
        for li, layer in enumerate(data.spec.layers):
            pp, pn = x[pos, li] @ vec[e, li], x[neg, li] @ vec[e, li]
            pooled = np.sqrt((((pp - pp.mean()) ** 2).sum() + ((pn - pn.mean()) ** 2).sum()) / (len(pp) + len(pn) - 2))
            cal = man.calibration[emo][str(layer)]
            assert cal.pos_mean == pytest.approx(pp.mean(), rel=1e-9)
            assert cal.neg_mean == pytest.approx(pn.mean(), rel=1e-9)
            assert cal.pooled_std == pytest.approx(pooled, rel=1e-9)
            raw = np.linalg.norm(x[pos, li].mean(0) - x[neg, li].mean(0))
            assert cal.raw_norm == pytest.approx(raw, rel=1e-9)


def test_lda_matches_numpy_reference(tmp_path: Path) -> None:
    ds, dirs, data = make_run(tmp_path, SyntheticSpec(hidden_size=16, train_per_class=60))
    out = tmp_path / "v.safetensors"
    reduce(dirs, ds, out, ReduceOptions(method="lda", shrinkage=0.1))
    np.testing.assert_allclose(_loaded(out, data.spec.layers), _ref_lda(data, 0.1), atol=1e-6, rtol=0)


def test_lda_beats_caa_under_a_shared_nuisance_axis(tmp_path: Path) -> None:
    spec = SyntheticSpec(hidden_size=32, train_per_class=150, heldout_per_class=100, noise=0.3,
                         nuisance=6.0, nuisance_mix=1.0)
    ds, dirs, data = make_run(tmp_path, spec)
    scores = {}
    for method in ("caa", "lda"):
        out = tmp_path / f"{method}.safetensors"
        reduce(dirs, ds, out, ReduceOptions(method=method))
        vec = _loaded(out, spec.layers)
        aucs = []
        for e, emo in enumerate(spec.emotions):
            pos, neg = _classes(data, emo, "heldout")
            for li in range(len(spec.layers)):
                aucs.append(auroc(data.mean[pos, li] @ vec[e, li], data.mean[neg, li] @ vec[e, li]))
        scores[method] = min(aucs)
    assert scores["lda"] > 0.97
    assert scores["lda"] > scores["caa"] + 0.1, scores


def test_heldout_texts_never_enter_a_vector(tmp_path: Path) -> None:
    ds, dirs, data = make_run(tmp_path)
    first = tmp_path / "a.safetensors"
    reduce(dirs, ds, first, ReduceOptions(method="lda"))
    held = data.ids("heldout")
    data.mean[held] += np.float32(1000.0) * np.random.default_rng(1).normal(size=data.mean[held].shape).astype(np.float32)
    data.last[held] = np.nan  # would also fail the finite check if it were read
    sha = json.loads((dirs[0] / "capture.json").read_text())["dataset_sha256"]
    write_activations(tmp_path / "perturbed", data, dataset_sha256=sha)
    write_activations(tmp_path / "train_only", data, dataset_sha256=sha, text_ids=data.ids("train"))
    for name in ("perturbed", "train_only"):
        out = tmp_path / f"{name}.safetensors"
        reduce([tmp_path / name], ds, out, ReduceOptions(method="lda"))
        assert out.read_bytes() == first.read_bytes()
        assert out.with_suffix(".manifest.json").read_bytes() == first.with_suffix(".manifest.json").read_bytes()


def test_outputs_load_with_plain_safetensors_and_msgspec(tmp_path: Path) -> None:
    ds, dirs, data = make_run(tmp_path)
    out = tmp_path / "v.safetensors"
    reduce(dirs, ds, out, ReduceOptions(method="caa", emotions=["warmth", "anger"]))
    tensors = load_file(str(out))
    assert sorted(tensors) == [f"layer_{i}.vectors" for i in data.spec.layers]
    assert all(t.shape == (2, data.spec.hidden_size) and t.dtype == np.float32 for t in tensors.values())
    with safe_open(str(out), framework="numpy") as f:
        meta = f.metadata()
    assert json.loads(meta["concepts"]) == ["warmth", "anger"]
    assert json.loads(meta["layers"]) == list(data.spec.layers)
    assert meta["model"] == "synthetic/model"
    man = msgspec.json.decode(out.with_suffix(".manifest.json").read_bytes(), type=ReadoutManifest)
    assert man.format == READOUT_FORMAT_V1 and man.concepts == ["warmth", "anger"]  # one fixed method: version 1
    assert man.layers == list(data.spec.layers) and man.layer_semantics == "residual_out"
    assert set(man.calibration) == {"warmth", "anger"}
    assert set(man.calibration["anger"]) == {str(i) for i in data.spec.layers}
    # rows follow the manifest order: row 0 is warmth
    np.testing.assert_allclose(tensors[f"layer_{data.spec.layers[0]}.vectors"][0], _ref_caa(data)[2, 0], atol=1e-6)


def _raw_tensor(path: Path, key: str) -> tuple[str, list[int], bytes]:
    blob = path.read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    head = json.loads(blob[8:8 + n])
    a, b = head[key]["data_offsets"]
    return head[key]["dtype"], head[key]["shape"], blob[8 + n + a:8 + n + b]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_outputs(tmp_path: Path, dtype: str) -> None:
    ds, dirs, data = make_run(tmp_path)
    out = tmp_path / "v.safetensors"
    reduce(dirs, ds, out, ReduceOptions(method="caa", dtype=dtype))
    tag, shape, raw = _raw_tensor(out, f"layer_{data.spec.layers[0]}.vectors")
    assert tag == {"float16": "F16", "bfloat16": "BF16"}[dtype] and shape == [3, data.spec.hidden_size]
    bits = np.frombuffer(raw, dtype="<u2")
    vals = bits.view(np.float16).astype(np.float64) if dtype == "float16" else \
        (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    np.testing.assert_allclose(vals.reshape(shape), _ref_caa(data)[:, 0], atol=8e-3)


def test_bf16_rounds_to_nearest_even() -> None:
    x = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5, 1.0 + 2**-9], dtype=np.float32)
    _, value = cast(x, "bfloat16")
    assert value.tolist() == [1.0, 1.0, 1.0 + 2**-6, -2.5, 1.0]


def test_drops_thin_concepts_with_reason(tmp_path: Path) -> None:
    ds, dirs, _ = make_run(tmp_path, SyntheticSpec(train_per_class=4))
    with pytest.raises(UsageError, match="no concept has at least 5"):
        reduce(dirs, ds, tmp_path / "v.safetensors", ReduceOptions())
    res = reduce(dirs, ds, tmp_path / "v.safetensors", ReduceOptions(min_examples=4))
    assert res.manifest.concepts == ["anger", "joy", "warmth"] and res.manifest.dropped == {}


def test_cross_talk_summary(tmp_path: Path) -> None:
    ds, dirs, data = make_run(tmp_path, replace(SyntheticSpec(), emotions=("a", "b", "c", "d")))
    res = reduce(dirs, ds, tmp_path / "v.safetensors", ReduceOptions(top_pairs=2))
    talk = res.summary.cross_talk
    assert [t.layer for t in talk] == list(data.spec.layers)
    m = np.array(talk[0].matrix)
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-6)
    np.testing.assert_allclose(m, m.T)
    top = talk[0].top_pairs
    assert len(top) == 2 and top[0].cosine >= top[1].cosine
    off = m[np.triu_indices(4, 1)]
    assert top[0].cosine == pytest.approx(off.max())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loads_with_safetensors_torch_as_vllm_does(tmp_path: Path, dtype: str) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file as load_torch

    ds, dirs, data = make_run(tmp_path)
    out = tmp_path / "v.safetensors"
    reduce(dirs, ds, out, ReduceOptions(method="caa", dtype=dtype))
    t = load_torch(str(out))
    key = f"layer_{data.spec.layers[1]}.vectors"
    assert t[key].dtype == getattr(torch, dtype)
    np.testing.assert_allclose(t[key].float().numpy(), _ref_caa(data)[:, 1], atol=8e-3 if dtype == "bfloat16" else 1e-6)
