"""``amygdala-vllm validate``: reload the vectors into vLLM and measure what they separate.

The driver (:func:`run_validate`) scores the dataset's held-out texts through
vLLM's readout (the same path serving uses) and reports, per concept and layer,
AUROC, Cohen's d and accuracy at the calibrated threshold for the projections
pooled by every registered pooling mode (``pooling_modes.MODES``), the cross-talk between concepts, and the agreement
between runtime and offline projections. Everything but the engine call is
plain numpy (:func:`evaluate`, :func:`compare_methods`, :mod:`.metrics`), and
nothing here imports vLLM or torch at import time.
"""

from __future__ import annotations

from ..separation.metrics import accuracy_at, auroc, best_index, calibrated_threshold, cohens_d
from .compare import compare_methods
from .evaluate import Projections, evaluate, evaluate_projections, projections_from_scores
from .report import read_report, write_report
from .run import ValidateOptions, ValidateResult, run_validate
from .schema import VALIDATE_FORMAT, ValidateReport
from .vectors import load_manifest, load_vectors

__all__ = [
    "run_validate",
    "ValidateOptions",
    "ValidateResult",
    "evaluate",
    "evaluate_projections",
    "projections_from_scores",
    "Projections",
    "compare_methods",
    "auroc",
    "cohens_d",
    "accuracy_at",
    "calibrated_threshold",
    "best_index",
    "write_report",
    "read_report",
    "ValidateReport",
    "VALIDATE_FORMAT",
    "load_manifest",
    "load_vectors",
]
