"""Compatibility names for the vectors-file writer, which lives in :mod:`amygdala_vllm.vectors_file`.

Kept only so branches written against ``reduce.writer`` merge cleanly; new code
imports from ``vectors_file``. Remove once nothing imports this module.
"""

from __future__ import annotations

from ..vectors_file import DTYPES, cast, manifest_path, safetensors_bytes
from ..vectors_file import write_pair as write_outputs

__all__ = ["DTYPES", "manifest_path", "cast", "safetensors_bytes", "write_outputs"]
