"""``report.json`` (format ``amygdala-validate/2``): what ``validate`` measured, as msgspec Structs.

Every figure that may not exist (a concept without held-out negatives, a
projection without spread) is ``null``, never NaN: JSON has no NaN and a
reader should see "not measured" rather than a number. Structs forbid unknown
fields like every other format of this tool; change a field only together with
:data:`VALIDATE_FORMAT`.

Version 2 keys per-layer metrics by pooling-mode name (``pooled``: one entry
per mode of ``pooling_modes.MODES`` the scores carry) where version 1 had the
fields ``mean`` and ``last``; ``OODLayer.fraction_positive`` may be ``null``.
``formats.upgrade_validate_v1`` turns a version-1 document into version 2
(the version strings and the upgrade live in :mod:`amygdala_vllm.formats`
with every other format's).
"""

from __future__ import annotations


import msgspec

from ..formats import VALIDATE_FORMAT, VALIDATE_FORMAT_V1
from ..pooling_modes import MODES
from ..separation.schema import SpecificityReport, Strict as _Strict

__all__ = [
    "VALIDATE_FORMAT",
    "VALIDATE_FORMAT_V1",
    "PoolingMetrics",
    "LayerMetrics",
    "ConceptReport",
    "CrossTalkLayer",
    "Agreement",
    "OODLayer",
    "OODConcept",
    "OODReport",
    "MethodLayer",
    "MethodConcept",
    "CompareReport",
    "AutoLayerCheck",
    "MethodScore",
    "ValidateReport",
    "report_modes",
]


class PoolingMetrics(_Strict):
    """One concept at one layer, one pooling of the projections."""

    auroc: float | None
    cohens_d: float | None
    accuracy: float | None  # at the calibrated threshold; only for the manifest's pooling, if linear


class LayerMetrics(_Strict):
    """One concept at one hooked layer; ``threshold`` is the calibrated midpoint.

    ``pooled`` maps each pooling mode the scores carry to its metrics. The
    scores are per-token projections reduced by the mode: for a linear mode
    that is ``pooled activation . vector``, for ``max`` it is the max over
    tokens of ``row . vector``, which is not the ``max(rows) . vector`` that
    ``reduce --pooling max`` calibrates on.
    """

    layer: int
    threshold: float
    pooled: dict[str, PoolingMetrics]


class ConceptReport(_Strict):
    """Everything about one concept; ``status`` is ``n/a`` when a held-out class is empty."""

    concept: str
    status: str  # "ok" | "n/a"
    reason: str | None
    heldout_positive: int
    heldout_negative: int
    best_layer: int | None  # by AUROC with the manifest's pooling
    best_auroc: float | None
    layers: list[LayerMetrics]


class CrossTalkLayer(_Strict):
    """Concept x concept matrices at one layer, rows and columns in manifest concept order."""

    layer: int
    cosine: list[list[float | None]]  # between the unit vectors
    correlation: list[list[float | None]]  # Pearson, between held-out projections (manifest pooling)


class Agreement(_Strict):
    """Runtime projection vs offline dot(captured pooled activation, vector), max over texts."""

    checked: bool
    max_abs_diff: float | None
    max_abs_projection: float | None
    tolerance: float
    dtype: str
    passed: bool | None
    max_activation_scale: float | None = None  # S in validate.evaluate.agreement_tolerance


class OODLayer(_Strict):
    """Distribution of one concept's projection at one layer over the OOD texts (manifest pooling)."""

    layer: int
    mean: float
    std: float
    quantiles: dict[str, float]  # "q05".."q95"
    # (mean - threshold) / calibration pooled_std, signed so > 0 leans to the concept (null: not linear)
    z_mean: float | None
    # share of texts on the positive side of the calibrated threshold (null: the pooling is not linear)
    fraction_positive: float | None


class OODConcept(_Strict):
    concept: str
    layers: list[OODLayer]


class OODReport(_Strict):
    file: str
    texts: int
    concepts: list[OODConcept]


class MethodLayer(_Strict):
    """Held-out AUROC of offline CAA and LDA vectors at one layer."""

    layer: int
    caa: float | None
    lda: float | None


class MethodConcept(_Strict):
    concept: str
    heldout_positive: int
    heldout_negative: int
    layers: list[MethodLayer]
    best_caa: float | None
    best_lda: float | None


class CompareReport(_Strict):
    """``--compare-methods``: both directions from the same train texts, scored on the held-out ones."""

    activations: list[str]
    pooling: str
    shrinkage: float
    train_texts: int
    heldout_texts: int
    concepts: list[MethodConcept]
    scores: list[MethodScore] = []  # every method of ``reduce --method`` (and variants) per layer
    winners: dict[str, str] = {}  # str(layer) -> method the numbers favour there (see compare.py)


class MethodScore(_Strict):
    """``--compare-methods``: one method at one layer, medians over concepts."""

    method: str
    layer: int
    one_vs_rest_auroc: float | None
    sibling_auroc: float | None
    top1: float | None
    top5: float | None


class AutoLayerCheck(_Strict):
    """``reduce --method auto`` at one layer: the method it chose, its CV figures beside the held-out ones."""

    layer: int
    method: str
    kind: str  # mean-difference | whitened
    cv_one_vs_rest_auroc: float | None
    cv_sibling_auroc: float | None
    cv_top1: float | None
    heldout_one_vs_rest_auroc: float | None
    heldout_sibling_auroc: float | None
    heldout_top1: float | None
    cv_merit: float | None
    heldout_merit: float | None
    gap: float | None  # cv_merit - heldout_merit
    warning: bool  # gap above validate/auto_check.py GAP_WARN


class ValidateReport(_Strict):
    """``report.json``."""

    format: str
    model: str
    vectors: str
    manifest: str
    dataset: str
    dataset_sha256: str
    dataset_matches_manifest: bool
    method: str
    pooling: str  # the manifest's pooling: best layer, accuracy and cross-talk use it
    skip_first_tokens: int
    dtype: str
    layers: list[int]
    concepts: list[ConceptReport]
    heldout_texts: int
    best_layers: dict[str, int]
    crosstalk_layer: int
    crosstalk: list[CrossTalkLayer]
    agreement: Agreement
    min_auroc: float | None = None
    failures: list[str] = []
    ood: OODReport | None = None
    compare: CompareReport | None = None
    specificity: SpecificityReport | None = None  # added within format 1: older reports lack it
    auto: list[AutoLayerCheck] = []  # --method auto vectors: per layer, the choice and CV vs held-out (else empty)


def report_modes(report: ValidateReport) -> list[str]:
    """The pooling modes a report holds, the manifest's first, then in registry order (then any unknown, sorted).

    ``report.json`` sorts dict keys, so a report read back lists ``pooled``
    alphabetically; every renderer orders by this instead.
    """
    held: set[str] = set()
    for c in report.concepts:
        for layer in c.layers:
            held.update(layer.pooled)
    rest = [m for m in MODES if m in held and m != report.pooling]
    rest += sorted(held - set(MODES) - {report.pooling})
    return ([report.pooling] if report.pooling in held else []) + rest
