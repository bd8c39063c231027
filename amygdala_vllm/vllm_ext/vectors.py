"""Compatibility names for the worker's vectors loader, which lives in :mod:`amygdala_vllm.vectors_file`.

Kept only so branches written against ``vllm_ext.vectors`` merge cleanly; new
code imports from ``vectors_file``. Remove once nothing imports this module.
"""

from __future__ import annotations

from ..vectors_file import ENV_MANIFEST, ENV_VECTORS, paths_from_env
from ..vectors_file import load_torch as load_readout

__all__ = ["ENV_VECTORS", "ENV_MANIFEST", "paths_from_env", "load_readout"]
