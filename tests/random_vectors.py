"""Random unit readout vectors and their manifest, written for a model folder: the vectors every readout test loads.

Shared by the engine, serve, worker and validate tests (a test file never imports another test file).
"""

from __future__ import annotations

import numpy as np

LAYERS = [1, 3]
CONCEPTS = ["calm", "joy", "anger"]


def write_vectors(root, model_dir, *, hidden=128, layers=LAYERS, concepts=CONCEPTS, seed=0, manifest_layers=None,
                  **overrides):
    """Random unit vectors + a manifest for the tiny model; returns (vectors path, manifest path, matrices)."""
    from safetensors.numpy import save_file

    from amygdala_vllm.formats import LAYER_SEMANTICS, READOUT_FORMAT, ReadoutManifest, write_json
    from amygdala_vllm.models import model_fingerprint

    rng = np.random.default_rng(seed)
    mats = {}
    for i in layers:
        m = rng.standard_normal((len(concepts), hidden)).astype(np.float32)
        mats[i] = m / np.linalg.norm(m, axis=1, keepdims=True)
    vec = root / "v.safetensors"
    save_file({f"layer_{i}.vectors": m for i, m in mats.items()}, str(vec))
    fields = dict(format=READOUT_FORMAT, concepts=list(concepts), layers=list(manifest_layers or layers), layer_semantics=LAYER_SEMANTICS,
                  hidden_size=hidden, model=str(model_dir), model_fingerprint=model_fingerprint(str(model_dir)),
                  pooling="mean", method="caa", counts={}, calibration={})
    fields.update(overrides)
    man = root / "v.manifest.json"
    write_json(man, ReadoutManifest(**fields))
    return vec, man, mats
