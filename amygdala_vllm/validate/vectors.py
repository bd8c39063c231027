"""``validate``'s view of a vectors file: the manifest (with calibration) and float64 ``[E, L, H]``.

Reading and checking live in :mod:`amygdala_vllm.vectors_file`; these two
names are what ``validate`` (and its tests) call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import vectors_file
from ..errors import FormatError
from ..formats import ReadoutManifest

__all__ = ["load_manifest", "load_vectors"]


def load_manifest(path: Path) -> ReadoutManifest:
    """Read and check a readout manifest, calibration of every concept at every layer included."""
    return vectors_file.read_manifest(path, calibrated=True)


def load_vectors(path: Path, manifest: ReadoutManifest, manifest_file: Path | None = None) -> np.ndarray:
    """float64 [E, L, H] in manifest concept and layer order, checked against ``manifest``.

    ``manifest_file`` (default: ``NAME.manifest.json`` beside ``path``) must hold ``manifest``.
    """
    loaded = vectors_file.load(path, manifest_file)
    if loaded.manifest != manifest:
        raise FormatError(f"manifest mismatch: {loaded.manifest_path} is not the manifest given for {path}")
    return loaded.stacked()
