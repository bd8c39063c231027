"""The vectors-file module: bytes, readers (numpy and torch), checks, the environment contract."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from amygdala_vllm import vectors_file as vf
from amygdala_vllm.errors import FormatError, ModelError, StoreError, UsageError
from amygdala_vllm.formats import LAYER_SEMANTICS, READOUT_FORMAT, Calibration, ReadoutManifest

CONCEPTS = ["joy", "anger", "calm"]
LAYERS = [1, 3]
H = 8


def _manifest(**over: object) -> ReadoutManifest:
    cal = {c: {str(l): Calibration(pos_mean=1.0, neg_mean=-1.0, pooled_std=0.5, raw_norm=2.0) for l in LAYERS}
           for c in CONCEPTS}
    fields: dict[str, object] = dict(
        format=READOUT_FORMAT, concepts=list(CONCEPTS), layers=list(LAYERS), layer_semantics=LAYER_SEMANTICS,
        hidden_size=H, model="tiny/model", model_fingerprint="abcd1234abcd1234", pooling="mean", method="caa",
        counts={}, calibration=cal)
    fields.update(over)
    return ReadoutManifest(**fields)  # type: ignore[arg-type]


def _values(seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((len(CONCEPTS), len(LAYERS), H))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _write(root: Path, dtype: str = "float32", manifest: ReadoutManifest | None = None, seed: int = 0,
           name: str = "v") -> tuple[Path, Path, np.ndarray]:
    man = manifest or _manifest()
    stored, value = vf.cast(_values(seed), dtype)
    out = root / f"{name}.safetensors"
    vf.write_pair(out, vf.encode_vectors(man, stored, dtype), man, force=True)
    return out, vf.manifest_path(out), value


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_written_values_come_back_exactly_through_numpy_and_torch(tmp_path: Path, dtype: str) -> None:
    import torch
    from safetensors.torch import load_file

    vec, man, value = _write(tmp_path, dtype)
    loaded = vf.load(vec)
    assert loaded.manifest == _manifest() and loaded.manifest_path == man
    np.testing.assert_array_equal(loaded.stacked(), value)
    # the reference reader agrees value for value (safetensors.numpy cannot read bf16; torch can)
    ref = load_file(str(vec))
    for li, layer in enumerate(LAYERS):
        np.testing.assert_array_equal(ref[f"layer_{layer}.vectors"].float().numpy(), value[:, li].astype(np.float32))
    tensors = loaded.torch()
    assert all(t.dtype == torch.float32 and tuple(t.shape) == (3, H) for t in tensors)
    np.testing.assert_array_equal(np.stack([t.numpy() for t in tensors], axis=1), value.astype(np.float32))


def test_bytes_are_deterministic_with_a_sorted_padded_header(tmp_path: Path) -> None:
    a, _, _ = _write(tmp_path, name="a")
    b, _, _ = _write(tmp_path, name="b")
    raw = a.read_bytes()
    assert raw == b.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0
    header = json.loads(raw[8 : 8 + n])
    assert list(header) == sorted(header)
    assert header["__metadata__"] == {
        "concepts": '["joy","anger","calm"]', "format": READOUT_FORMAT, "layer_semantics": LAYER_SEMANTICS,
        "layers": "[1,3]", "method": "caa", "model": "tiny/model", "pooling": "mean"}
    assert vf.safetensors_metadata(raw) == header["__metadata__"]


def test_bf16_rounds_to_nearest_even() -> None:
    x = np.array([1.0, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, -2.5], dtype=np.float32)
    _, value = vf.cast(x, "bfloat16")
    assert value.tolist() == [1.0, 1.0, 1.0 + 2.0**-6, -2.5]  # ties go to the even mantissa
    with pytest.raises(UsageError, match="unknown --dtype"):
        vf.cast(x, "int8")


def test_write_pair_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    vec, _, _ = _write(tmp_path)
    man = _manifest()
    with pytest.raises(StoreError, match="already exists"):
        vf.write_pair(vec, b"x", man, force=False)
    with pytest.raises(StoreError, match="does not exist"):
        vf.write_pair(tmp_path / "no" / "v.safetensors", b"x", man, force=True)


def test_one_read_per_process_until_the_file_is_replaced(tmp_path: Path) -> None:
    vec, man, _ = _write(tmp_path)
    first = vf.load(vec, man)
    assert vf.load(vec, man) is first
    assert not first.matrices[0].flags.writeable  # shared: nobody may change it in place
    _write(tmp_path, seed=1)  # atomic replace: a new file identity
    second = vf.load(vec, man)
    assert second is not first
    assert not np.array_equal(second.stacked(), first.stacked())


def _rewrite_manifest(path: Path, **over: object) -> None:
    from amygdala_vllm.formats import write_json

    write_json(path, _manifest(**over))


@pytest.mark.parametrize(
    "over, message",
    [
        ({"layers": [1, 2]}, r"manifest mismatch between .*missing key\(s\) \['layer_2.vectors'\], unexpected key\(s\) \['layer_3.vectors'\]"),
        ({"hidden_size": 16}, r"layer_1.vectors has shape \[3, 8\], expected \[3, 16\]"),
        ({"concepts": ["anger", "joy", "calm"]}, r"the file's concepts are \['joy', 'anger', 'calm'\]"),
        ({"concepts": []}, "lists no concepts or no layers"),
        ({"format": "amygdala-readout/0"}, "has format 'amygdala-readout/0'"),
    ],
)
def test_mismatched_pairs_are_refused(tmp_path: Path, over: dict, message: str) -> None:
    vec, man, _ = _write(tmp_path)
    _rewrite_manifest(man, **over)
    with pytest.raises(FormatError, match=message):
        vf.load(vec, man)


def test_non_finite_values_and_missing_calibration_are_refused(tmp_path: Path) -> None:
    man = _manifest()
    bad = _values()
    bad[1, 0, 2] = np.nan
    stored, _ = vf.cast(bad, "float32")
    vec = tmp_path / "nan.safetensors"
    vf.write_pair(vec, vf.encode_vectors(man, stored, "float32"), man, force=True)
    with pytest.raises(FormatError, match="layer_1.vectors holds NaN or Inf"):
        vf.load(vec)
    vec, man_path, _ = _write(tmp_path)
    _rewrite_manifest(man_path, calibration={c: {"1": _manifest().calibration[c]["1"]} for c in CONCEPTS})
    vf.load(vec)  # serving needs no calibration
    with pytest.raises(FormatError, match=r"calibration of 'joy' lacks layer\(s\) \[3\]"):
        vf.load(vec, calibrated=True)


def test_truncated_and_foreign_files_are_format_errors(tmp_path: Path) -> None:
    vec, man, _ = _write(tmp_path)
    raw = vec.read_bytes()
    vec.write_bytes(raw[:-4])
    with pytest.raises(FormatError, match="lies outside the file"):
        vf.load(vec, man)
    vec.write_bytes(b"not a safetensors file at all")
    with pytest.raises(FormatError, match="is not a safetensors file"):
        vf.load(vec, man)
    with pytest.raises(FormatError, match="does not exist"):
        vf.load(tmp_path / "missing.safetensors", man)


def test_model_checks_name_what_differs(tmp_path: Path) -> None:
    vec, man, _ = _write(tmp_path)
    ok = dict(num_layers=4, hidden_size=H, model_fingerprint="abcd1234abcd1234")
    manifest, tensors = vf.load_torch(vec, man, **ok)
    assert manifest.layers == LAYERS and len(tensors) == 2
    vf.load_torch(vec, man, **{**ok, "model_fingerprint": None})  # a hub name has no fingerprint to compare
    for over, message in [({"hidden_size": 16}, "hidden size 8 but the model's is 16"),
                          ({"num_layers": 3}, r"layers \[3\] but the model has 3 decoder layers"),
                          ({"model_fingerprint": "ffff"}, "fingerprint abcd1234abcd1234 .* this model's is ffff")]:
        with pytest.raises(ModelError, match=message):
            vf.load_torch(vec, man, **{**ok, **over})


def test_readout_env_sets_absolute_paths_and_restores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(vf.ENV_VECTORS, "/before.safetensors")
    monkeypatch.delenv(vf.ENV_MANIFEST, raising=False)
    with vf.readout_env(Path("rel/v.safetensors"), Path("rel/v.manifest.json")):
        vec, man = vf.paths_from_env()
        assert vec.is_absolute() and vec == Path("rel/v.safetensors").resolve()
        assert man == Path("rel/v.manifest.json").resolve()
    assert os.environ[vf.ENV_VECTORS] == "/before.safetensors" and vf.ENV_MANIFEST not in os.environ
    with pytest.raises(FormatError, match="needs both VLLM_READOUT_VECTORS and VLLM_READOUT_MANIFEST"):
        vf.paths_from_env()


def test_env_readers_say_which_half_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve``'s endpoint reads the pair only through these: off without vectors, an error with half a pair."""
    monkeypatch.delenv(vf.ENV_VECTORS, raising=False)
    monkeypatch.delenv(vf.ENV_MANIFEST, raising=False)
    assert not vf.readout_requested()
    monkeypatch.setenv(vf.ENV_VECTORS, "/v.safetensors")
    assert vf.readout_requested()
    with pytest.raises(FormatError, match="VLLM_READOUT_VECTORS is set but VLLM_READOUT_MANIFEST is not"):
        vf.paths_from_env()
    assert vf.env_values(Path("rel/v.safetensors"), Path("m.json")) == {
        vf.ENV_VECTORS: str(Path("rel/v.safetensors").resolve()), vf.ENV_MANIFEST: str(Path("m.json").resolve())}


def test_pair_paths_defaults_the_manifest_beside_the_vectors() -> None:
    assert vf.pair_paths("runs/a.safetensors") == (Path("runs/a.safetensors"), Path("runs/a.manifest.json"))
    assert vf.pair_paths(Path("a.safetensors"), "other.json") == (Path("a.safetensors"), Path("other.json"))
    with pytest.raises(UsageError, match="--vectors must name a .safetensors file"):
        vf.pair_paths("a.bin")
