"""Specificity: do the vectors tell emotions apart, or only pleasant from unpleasant?

One-vs-rest AUROC (the concept's held-out positives against its held-out
negatives) is high for any vector that reads valence: on the bundled pipeline
(SmolLM2, CAA, layer 15) it is 0.84-1.00 while the held-out projections of
love and warmth correlate 0.99. The figures here ask the harder questions, all
from pooled projections ``P`` [N, L, E] of scored texts (pure numpy):

* sibling AUROC: the concept's held-out positives against the held-out
  positives of a *sibling* that are not positive for the concept. Siblings are
  the :data:`NEAREST` concepts whose vectors are most similar (cosine) at that
  layer, plus every member of a family the concept shares in an optional
  taxonomy. Reported as mean and minimum over siblings, beside one-vs-rest and
  the gap between them;
* identification: every concept's projection is z-scored across the scored
  texts (a raw dot product carries a per-concept offset and scale; the
  name-that-feeling replication found this z-scoring mattered most), then for
  each (held-out positive text, concept) pair the concept's rank among the
  concepts the text is *not* also positive for: top-1, top-5, median rank,
  against chance 1/E;
* valence dominance: the share of variance of the [E, H] vector matrix in its
  first principal component (centred across concepts; Anthropic's 171 emotion
  vectors: 26 %), and the mean absolute correlation between the concepts'
  held-out projections before and after their first principal component (the
  shared axis, over texts) is partialled out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import numpy as np

from ..errors import FormatError, UsageError
from ..formats import read_input
from . import metrics
from .schema import SiblingLayer, SpecificityConcept, SpecificityLayer, SpecificityReport, opt

__all__ = [
    "NEAREST",
    "read_taxonomy",
    "siblings_of",
    "sibling_auroc",
    "zscore",
    "identification",
    "pc1_share",
    "partial_correlation",
    "specificity",
]

#: Most similar vectors taken as siblings of each concept (plus taxonomy families).
NEAREST = 3

Classes = Mapping[str, tuple[np.ndarray, np.ndarray]]


def read_taxonomy(path: Path) -> dict[str, list[str]]:
    """``{family: [concept, ...]}`` from a JSON file; anything else is a :class:`FormatError`."""
    raw = read_input(Path(path), what="taxonomy file")
    try:
        data = msgspec.json.decode(raw, type=dict[str, list[str]])
    except msgspec.DecodeError as exc:
        raise FormatError(f"taxonomy file {path} must be a JSON object {{family: [concept, ...]}}: {exc}") from exc
    return data


def siblings_of(cosine: np.ndarray, concepts: Sequence[str], taxonomy: Mapping[str, Sequence[str]] | None = None,
                nearest: int = NEAREST) -> list[list[int]]:
    """Per concept, sibling indices: the ``nearest`` highest-cosine others, then taxonomy family members."""
    n = len(concepts)
    index = {c: i for i, c in enumerate(concepts)}
    out = []
    for e in range(n):
        order = [int(j) for j in np.argsort(-cosine[e], kind="stable") if j != e][:nearest]
        for members in (taxonomy or {}).values():
            if concepts[e] in members:
                order += [index[m] for m in members if m in index and index[m] != e and index[m] not in order]
        out.append(order)
    return out


def sibling_auroc(scores: np.ndarray, positives: np.ndarray, sibling_positives: np.ndarray) -> float:
    """AUROC of one concept's ``scores`` [N] between its positive rows and a sibling's positive rows not in them."""
    neg = np.setdiff1d(sibling_positives, positives)
    return metrics.auroc(scores[positives], scores[neg])


def zscore(x: np.ndarray) -> np.ndarray:
    """Each column of ``x`` [N, E] z-scored across rows (ddof 0); a column without spread becomes 0."""
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(axis=0)
    return np.where(sd > 0, (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0), 0.0)


def identification(z: np.ndarray, positive_sets: Sequence[np.ndarray]) -> np.ndarray:
    """1-based ranks of each (text, concept) positive pair among the concepts that text is not positive for.

    ``z`` [N, E]; ``positive_sets[e]`` rows positive for concept e. Ties count
    against the concept (a rank is 1 + the number of rivals scoring >= it).
    """
    n, n_con = z.shape
    member = np.zeros((n, n_con), dtype=bool)
    for e, rows in enumerate(positive_sets):
        member[rows, e] = True
    ranks = []
    for e, rows in enumerate(positive_sets):
        for r in rows:
            rivals = ~member[r]
            ranks.append(1 + int((z[r, rivals] >= z[r, e]).sum()))
    return np.asarray(ranks, dtype=np.int64)


def pc1_share(vectors: np.ndarray) -> float:
    """Share of variance of ``vectors`` [E, H] (centred across concepts) in the first principal component."""
    v = np.asarray(vectors, dtype=np.float64)
    if len(v) < 2:
        return float("nan")
    s = np.linalg.svd(v - v.mean(axis=0), compute_uv=False) ** 2
    return float(s[0] / s.sum()) if s.sum() > 0 else float("nan")


def _mean_abs_offdiag(c: np.ndarray) -> float:
    n = len(c)
    if n < 2:
        return float("nan")
    vals = np.abs(c[~np.eye(n, dtype=bool)])
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if len(vals) else float("nan")


def partial_correlation(x: np.ndarray) -> tuple[float, float]:
    """Mean |off-diagonal correlation| of the columns of ``x`` [N, E], raw and after removing their PC1.

    The columns are z-scored, the first principal component over texts (the
    shared axis every concept moves along) is regressed out of each, and the
    correlations of the residuals are averaged.
    """
    z = zscore(x)
    if z.shape[0] < 3 or z.shape[1] < 2:
        return float("nan"), float("nan")
    raw = np.corrcoef(z, rowvar=False) if np.all(z.std(axis=0) > 0) else np.full((z.shape[1],) * 2, np.nan)
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    pc = u[:, :1]
    resid = z - pc @ (pc.T @ z)
    with np.errstate(invalid="ignore", divide="ignore"):
        part = np.corrcoef(resid, rowvar=False)
    return _mean_abs_offdiag(raw), _mean_abs_offdiag(part)


def _cosine(v: np.ndarray) -> np.ndarray:
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    return np.clip(u @ u.T, -1.0, 1.0)


def _median(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return opt(float(np.median(v))) if v else None


def specificity(
    concepts: Sequence[str],
    layers: Sequence[int],
    vectors: np.ndarray,
    pooled: np.ndarray,
    text_ids: np.ndarray,
    classes: Classes,
    taxonomy: Mapping[str, Sequence[str]] | None = None,
) -> SpecificityReport:
    """Every specificity figure for ``vectors`` [E, L, H] and projections ``pooled`` [N, L, E] of ``text_ids``."""
    named = sorted({m for ms in (taxonomy or {}).values() for m in ms})
    if named and not set(named) & set(concepts):
        raise UsageError(f"the taxonomy names none of the manifest's concepts (it has e.g. {named[:3]})")
    ids = np.asarray(text_ids, dtype=np.int64)
    row = {int(t): i for i, t in enumerate(ids)}

    def rows(a: np.ndarray) -> np.ndarray:
        return np.array([row[int(t)] for t in a if int(t) in row], dtype=np.int64)

    pos = [rows(classes[c][0]) if c in classes else np.zeros(0, np.int64) for c in concepts]
    neg = [rows(classes[c][1]) if c in classes else np.zeros(0, np.int64) for c in concepts]
    chance = 1.0 / len(concepts)
    per_concept: list[list[SiblingLayer]] = [[] for _ in concepts]
    per_layer = []
    for li, layer in enumerate(layers):
        p = pooled[:, li, :] if len(ids) else np.zeros((0, len(concepts)))
        sib = siblings_of(_cosine(vectors[:, li, :]), concepts, taxonomy)
        sib_means = []
        for e in range(len(concepts)):
            vals = [sibling_auroc(p[:, e], pos[e], pos[s]) for s in sib[e]]
            finite = [v for v in vals if np.isfinite(v)]
            ovr = opt(metrics.auroc(p[pos[e], e], p[neg[e], e]))
            mean = opt(float(np.mean(finite))) if finite else None
            sib_means.append(mean)
            per_concept[e].append(SiblingLayer(
                layer=int(layer), siblings=[concepts[s] for s in sib[e]], sibling_auroc=[opt(v) for v in vals],
                sibling_auroc_mean=mean, sibling_auroc_min=opt(float(np.min(finite))) if finite else None,
                one_vs_rest_auroc=ovr, gap=None if ovr is None or mean is None else ovr - mean,
            ))
        ranks = identification(zscore(p), pos) if len(ids) and len(concepts) > 1 else np.zeros(0, np.int64)
        raw_corr, part_corr = partial_correlation(p) if len(ids) else (float("nan"), float("nan"))
        per_layer.append(SpecificityLayer(
            layer=int(layer),
            median_sibling_auroc=_median(sib_means),
            median_one_vs_rest_auroc=_median([c[-1].one_vs_rest_auroc for c in per_concept]),
            top1=opt(float(np.mean(ranks == 1))) if len(ranks) else None,
            top5=opt(float(np.mean(ranks <= 5))) if len(ranks) else None,
            median_rank=opt(float(np.median(ranks))) if len(ranks) else None,
            identified=int(len(ranks)),
            pc1_share=opt(pc1_share(vectors[:, li, :])),
            mean_abs_correlation=opt(raw_corr),
            mean_abs_partial_correlation=opt(part_corr),
        ))
    best = metrics.best_index([np.nan if l.median_sibling_auroc is None else l.median_sibling_auroc
                               for l in per_layer])
    ranked = sorted((l for l in per_layer if l.median_sibling_auroc is not None),
                    key=lambda l: (-l.median_sibling_auroc, l.layer))  # type: ignore[operator]
    return SpecificityReport(
        nearest=NEAREST, taxonomy=dict(taxonomy or {}), chance=chance,
        best_layer=None if best is None else int(layers[best]),
        recommended_layers=[l.layer for l in ranked[:3]],
        layers=per_layer,
        concepts=[SpecificityConcept(concept=c, layers=per_concept[e]) for e, c in enumerate(concepts)],
    )
