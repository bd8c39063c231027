"""The ``specificity`` section of ``report.json`` (and of ``reduce --method auto``'s cross-validation).

These Structs sit here, beside the math that fills them
(:mod:`.specificity`), because two stages compute them: ``reduce`` scores
every candidate method by them in cross-validation, ``validate`` reports them
on held-out text. ``validate/schema.py`` nests :class:`SpecificityReport` in
``ValidateReport``; the format's version is ``formats.VALIDATE_FORMAT``.
"""

from __future__ import annotations

import math

import msgspec

__all__ = ["Strict", "SiblingLayer", "SpecificityConcept", "SpecificityLayer", "SpecificityReport", "opt"]


def opt(x: float) -> float | None:
    """A float for the report: non-finite becomes None (``null``)."""
    x = float(x)
    return x if math.isfinite(x) else None


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """Base: unknown fields are an error."""


class SiblingLayer(Strict):
    """One concept at one layer: AUROC against each sibling's positives, beside one-vs-rest."""

    layer: int
    siblings: list[str]  # the most similar vectors at this layer, then taxonomy family members
    sibling_auroc: list[float | None]  # in ``siblings`` order
    sibling_auroc_mean: float | None
    sibling_auroc_min: float | None
    one_vs_rest_auroc: float | None
    gap: float | None  # one-vs-rest minus sibling mean: how much of the AUROC is shared valence


class SpecificityConcept(Strict):
    concept: str
    layers: list[SiblingLayer]


class SpecificityLayer(Strict):
    """Whole-set figures at one layer (see ``separation/specificity.py``)."""

    layer: int
    median_sibling_auroc: float | None
    median_one_vs_rest_auroc: float | None
    top1: float | None  # identification over held-out positives, z-scored projections
    top5: float | None
    median_rank: float | None
    identified: int  # (text, concept) positive pairs ranked
    pc1_share: float | None  # share of the vector matrix's variance in its first principal component
    mean_abs_correlation: float | None  # between held-out projections of different concepts
    mean_abs_partial_correlation: float | None  # the same after their first component is partialled out


class SpecificityReport(Strict):
    """Sibling AUROC, identification and valence dominance per layer; ``best_layer`` by sibling AUROC."""

    nearest: int
    taxonomy: dict[str, list[str]]
    chance: float  # 1 / number of concepts
    best_layer: int | None
    recommended_layers: list[int]  # up to three, best median sibling AUROC first
    layers: list[SpecificityLayer]
    concepts: list[SpecificityConcept]
