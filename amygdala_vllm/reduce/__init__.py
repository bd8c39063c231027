"""``amygdala-vllm reduce``: activations dirs + dataset -> readout vectors + manifest.

Pure numpy and safetensors (no torch, no vLLM), so it runs on any machine the
activations can be copied to. The public API is :func:`reduce` with
:class:`ReduceOptions`; :func:`open_activations` and :func:`cross_talk` are
exposed for ``validate`` and the benchmarks.
"""

from __future__ import annotations

from .activations import Activations, open_activations
from .core import METHODS, ClassSize, ReduceOptions, ReduceResult, ReduceSummary, reduce, select_concepts
from .directions import CrossPair, LayerCrossTalk, cross_talk
from ..vectors_file import DTYPES, manifest_path

__all__ = [
    "reduce",
    "ReduceOptions",
    "ReduceResult",
    "ReduceSummary",
    "ClassSize",
    "METHODS",
    "DTYPES",
    "manifest_path",
    "Activations",
    "open_activations",
    "select_concepts",
    "cross_talk",
    "CrossPair",
    "LayerCrossTalk",
]
