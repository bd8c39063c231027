"""The method variants ``reduce --method auto`` and ``validate --compare-methods`` rank, and the rule that ranks them.

A variant is a ``reduce --method`` with its ``--neutral-variance`` and
``--remove-shared``. Both rankers score every variant per layer by the medians
over concepts of one-vs-rest AUROC and sibling AUROC and by identification
top-1 (``separation/specificity.py``): ``auto`` on out-of-fold train texts,
``--compare-methods`` on held-out texts. The rule (:func:`pick_winners`) is one:

* a variant must keep median one-vs-rest AUROC >= :data:`OVR_BAR` (all variants
  compete if none does): telling an emotion from its absence is not traded away;
* among those, the highest **merit** = (median sibling AUROC + top-1) / 2 wins:
  separating an emotion from its nearest siblings, and naming it among all;
  with a single concept there are no siblings and one-vs-rest AUROC is the merit;
* variants within :data:`TIE` of the best merit tie, and a tie goes to the
  simplest, in :data:`VARIANTS` order (CAA first).

Each variant's vectors are either differences of class means (CAA,
grand-mean; with or without an orthogonal projection) or whitened directions
(``(S_w + lambda I)^-1`` applied to a mean difference: LDA, mlda).
``vectors_file.METHOD_KINDS`` names which; the manifest records it (docs/reduce.md: whitened
directions read better and may steer worse).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..errors import UsageError
from ..vectors_file import METHOD_KINDS
from .methods import build
from .stats import BLOCK

__all__ = ["VARIANTS", "OVR_BAR", "TIE", "kind_of", "variant_vectors",
           "project", "merit", "pick_winners"]

log = logging.getLogger(__name__)

#: name -> (reduce --method, --neutral-variance, --remove-shared), simplest first (ties go to the earliest).
VARIANTS: dict[str, tuple[str, float, int]] = {
    "caa": ("caa", 0.0, 0),
    "grand-mean": ("grand-mean", 0.0, 0),
    "lda": ("lda", 0.0, 0),
    "grand-mean+neutral0.5": ("grand-mean", 0.5, 0),
    "caa+remove-shared1": ("caa", 0.0, 1),
    "grand-mean+remove-shared1": ("grand-mean", 0.0, 1),
    "mlda": ("mlda", 0.0, 0),
}

#: Median one-vs-rest AUROC a winner must keep.
OVR_BAR = 0.9

#: Merits closer than this to the best count as a tie (then the simplest variant wins).
TIE = 0.002


def kind_of(variant: str) -> str:
    """``mean-difference`` or ``whitened`` for a :data:`VARIANTS` name or a plain ``reduce --method``."""
    method = VARIANTS[variant][0] if variant in VARIANTS else variant
    return METHOD_KINDS[method]


def variant_vectors(acts, members, concepts: Sequence[str], pooling: str, shrinkage: float,
                    given: np.ndarray | None = None, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Unit vectors [E, L, H] of each :data:`VARIANTS` entry (``names``: a subset); unsupported ones are left out.

    ``given``: the dataset's own neutral text ids (``pairs --neutral-texts``), or None to derive them.
    """
    out = {}
    for name in names or VARIANTS:
        method, neutral, shared = VARIANTS[name]
        try:
            b = build(acts, members, concepts, pooling, method, shrinkage=shrinkage, neutral_variance=neutral,
                      remove_shared_k=shared if shared < len(concepts) else 0, neutral=given)
        except UsageError as exc:
            log.info("variant %s left out: %s", name, exc)
            continue
        out[name] = b.full if b.specific is None else b.specific
    return out


def project(acts, ids: np.ndarray, pooling: str, vecs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pooled projections [N, L, E] of texts ``ids`` onto each entry of ``vecs`` ([E, L, H]), in blocks."""
    out = {k: np.empty((len(ids), v.shape[1], v.shape[0])) for k, v in vecs.items()}
    for j0 in range(0, len(ids), BLOCK):
        y = acts.read(ids[j0 : j0 + BLOCK], pooling)
        for k, v in vecs.items():
            out[k][j0 : j0 + BLOCK] = np.einsum("nlh,elh->nle", y, v)
    return out


def merit(sibling_auroc: float | None, top1: float | None, one_vs_rest_auroc: float | None) -> float:
    """(sibling AUROC + top-1) / 2; one-vs-rest alone where neither exists (a single concept); -1 if nothing."""
    both = [x for x in (sibling_auroc, top1) if x is not None]
    if len(both) == 2:
        return sum(both) / 2
    return one_vs_rest_auroc if one_vs_rest_auroc is not None and not both else -1.0


def pick_winners(scores: Sequence) -> dict[str, str]:
    """str(layer) -> the variant favoured there (the module docstring's rule).

    ``scores``: objects with ``method``, ``layer``, ``one_vs_rest_auroc``, ``sibling_auroc`` and ``top1``.
    """
    rank = {name: i for i, name in enumerate(VARIANTS)}
    out = {}
    for layer in sorted({s.layer for s in scores}):
        here = sorted((s for s in scores if s.layer == layer), key=lambda s: rank.get(s.method, len(rank)))
        keep = [s for s in here if (s.one_vs_rest_auroc or 0.0) >= OVR_BAR] or here
        merits = [merit(s.sibling_auroc, s.top1, s.one_vs_rest_auroc) for s in keep]
        if not merits or max(merits) <= -1.0:
            continue
        best = max(merits)
        out[str(layer)] = next(s.method for s, m in zip(keep, merits) if m >= best - TIE)
    return out
