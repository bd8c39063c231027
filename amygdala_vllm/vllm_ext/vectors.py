"""Load readout vectors on the worker and check them against the model being served.

The vectors file and its manifest come from ``reduce``; serving loads them via
``VLLM_READOUT_VECTORS`` / ``VLLM_READOUT_MANIFEST``. A file that was trained on
another model, a different hidden size or layers the model does not have would
give meaningless scores without any error, so every mismatch is refused here.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import FormatError, ModelError
from ..formats import READOUT_FORMAT, ReadoutManifest, read_json

__all__ = ["ENV_VECTORS", "ENV_MANIFEST", "paths_from_env", "load_readout"]

ENV_VECTORS = "VLLM_READOUT_VECTORS"
ENV_MANIFEST = "VLLM_READOUT_MANIFEST"


def paths_from_env() -> tuple[Path, Path]:
    """The vectors and manifest paths named by the environment."""
    vec, man = os.environ.get(ENV_VECTORS), os.environ.get(ENV_MANIFEST)
    if not vec or not man:
        raise FormatError(f"readout needs both {ENV_VECTORS} and {ENV_MANIFEST} set")
    return Path(vec), Path(man)


def load_readout(
    vectors_path: Path, manifest_path: Path, *, num_layers: int, hidden_size: int, model_fingerprint: str | None
) -> tuple[ReadoutManifest, list[torch.Tensor]]:
    """Manifest and ``[E, H]`` float32 matrices in manifest layer order, validated."""
    manifest = read_json(manifest_path, ReadoutManifest, expect_format=READOUT_FORMAT)
    try:
        tensors = load_file(str(vectors_path))
    except FileNotFoundError as exc:
        raise FormatError(f"readout vectors {vectors_path} do not exist") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"readout vectors {vectors_path} are not a readable safetensors file: {exc}") from exc
    expected = {f"layer_{i}.vectors" for i in manifest.layers}
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise FormatError(f"{vectors_path} vs {manifest_path}: missing key(s) {missing}, unexpected key(s) {unexpected}")
    if manifest.hidden_size != hidden_size:
        raise ModelError(f"vectors have hidden size {manifest.hidden_size} but the model's is {hidden_size}")
    bad = [i for i in manifest.layers if not 0 <= i < num_layers]
    if bad:
        raise ModelError(f"manifest hooks layers {bad} but the model has {num_layers} decoder layers")
    if model_fingerprint and manifest.model_fingerprint and manifest.model_fingerprint != model_fingerprint:
        raise ModelError(
            f"vectors were trained on model fingerprint {manifest.model_fingerprint} ({manifest.model}) "
            f"but this model's is {model_fingerprint}"
        )
    out = []
    E = len(manifest.concepts)
    for i in manifest.layers:
        v = tensors[f"layer_{i}.vectors"]
        if tuple(v.shape) != (E, hidden_size):
            raise FormatError(f"layer_{i}.vectors has shape {tuple(v.shape)}, expected ({E}, {hidden_size})")
        out.append(v.float())
    return manifest, out
