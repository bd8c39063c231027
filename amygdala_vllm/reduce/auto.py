"""``reduce --method auto``: per layer, the method that cross-validates best on the train split.

Which direction reads best depends on the data (docs/reduce.md's table): CAA
on one set, LDA or multi-class LDA on another. Choosing by the held-out table
would leak the held-out texts into the vectors, so ``auto`` ranks the
candidates (:data:`~.variants.VARIANTS`) by seeded, stratified k-fold
cross-validation over the **train** texts only:

1. the train texts of the kept concepts are dealt into ``folds`` folds, each
   concept's positives and then its negatives spread evenly (smallest classes
   first), in an order drawn from ``seed``;
2. for each fold every candidate is fitted on the other folds and projects the
   fold's texts; the fold's one-vs-rest AUROC, sibling AUROC and
   identification top-1 (``separation/specificity.py``) are averaged over folds;
3. per layer, :func:`~.variants.pick_winners` ranks them (one-vs-rest kept
   >= 0.9, then the best (sibling AUROC + top-1) / 2, ties to the simplest,
   CAA first), and the winner is fitted on the whole train split.

A concept with fewer train positives or negatives than folds cannot be
cross-validated: it takes plain CAA at every layer (said once, recorded in the
manifest's ``auto.fallback``) and the others are ranked without it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..formats import AutoChoice, CvScore, LayerChoice
from .activations import Activations
from .variants import OVR_BAR, TIE, VARIANTS, kind_of, merit, pick_winners, project, variant_vectors

__all__ = ["FOLDS", "SEED", "RULE", "assign_folds", "cross_validate", "fit_chosen"]

log = logging.getLogger(__name__)

#: Default number of cross-validation folds and the seed of their order.
FOLDS = 5
SEED = 0

RULE = (f"per layer, among candidates keeping median one-vs-rest AUROC >= {OVR_BAR}: the best mean of median "
        f"sibling AUROC and identification top-1 over {'{folds}'} train folds; within {TIE} is a tie, "
        "won by the simplest (CAA first)")

Members = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class _Cv:
    method: str
    layer: int
    one_vs_rest_auroc: float | None
    sibling_auroc: float | None
    top1: float | None


def assign_folds(members: Members, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, fold)``: the sorted union of the members' text ids and each one's fold in ``0..folds-1``.

    Classes are dealt smallest first (positives of every concept, then
    negatives); each unassigned text of a class, in a seeded order, goes to the
    fold holding fewest of that class so far (lowest fold on a tie).
    """
    ids = np.unique(np.concatenate([a for pair in members for a in pair] + [np.zeros(0, np.int64)]))
    fold = np.full(len(ids), -1, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes = [pair[k] for k in (0, 1) for pair in members]
    for cls in sorted(classes, key=len):
        at = np.searchsorted(ids, cls)
        count = np.bincount(fold[at][fold[at] >= 0], minlength=folds)
        for j in rng.permutation(at[fold[at] < 0]):
            f = int(np.argmin(count))
            fold[j] = f
            count[f] += 1
    return ids, fold


def _mean(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def cross_validate(acts: Activations, members: Members, concepts: Sequence[str], pooling: str, shrinkage: float,
                   given: np.ndarray | None, *, folds: int = FOLDS, seed: int = SEED) -> AutoChoice:
    """Rank every candidate per layer by ``folds``-fold cross-validation over the train ``members`` only."""
    from ..separation.specificity import specificity

    layers = acts.layers
    ids, fold = assign_folds(members, folds, seed)
    fallback, kept = {}, []
    for e, (pos, neg) in enumerate(members):
        n_min = min(len(pos), len(neg))
        lone = any(len(np.setdiff1d(cls, ids[fold == f])) == 0 for f in range(folds) for cls in (pos, neg))
        if n_min < folds or lone:
            fallback[concepts[e]] = (f"{len(pos)} train positives, {len(neg)} negatives: too few for {folds} folds; "
                                     "plain CAA")
        else:
            kept.append(e)
    if fallback:
        log.warning("--method auto: %s cannot be cross-validated in %d folds (too few train texts) and take(s) "
                    "plain CAA", ", ".join(fallback), folds)
    winners: dict[str, str] = {}
    scores: list[_Cv] = []
    if kept:
        names = [concepts[e] for e in kept]
        sub = [members[e] for e in kept]
        figures: dict[tuple[str, int], list[tuple[float | None, ...]]] = {}
        for f in range(folds):
            out_ids = ids[fold == f]
            train = [(np.setdiff1d(p, out_ids), np.setdiff1d(n, out_ids)) for p, n in sub]
            test = {c: (np.intersect1d(p, out_ids), np.intersect1d(n, out_ids)) for c, (p, n) in zip(names, sub)}
            vecs = variant_vectors(acts, train, names, pooling, shrinkage, given)
            proj = project(acts, out_ids, pooling, vecs)
            for name, v in vecs.items():
                spec = specificity(names, layers, v, proj[name], out_ids, test)
                for l in spec.layers:
                    figures.setdefault((name, l.layer), []).append(
                        (l.median_one_vs_rest_auroc, l.median_sibling_auroc, l.top1))
            log.info("--method auto: fold %d of %d scored (%d candidates)", f + 1, folds, len(vecs))
        for (name, layer), rows in figures.items():
            if len(rows) < folds:  # a candidate that some fold could not fit does not compete
                continue
            scores.append(_Cv(name, layer, *(_mean([r[i] for r in rows]) for i in range(3))))
        winners = pick_winners(scores)
    order = {name: i for i, name in enumerate(VARIANTS)}
    out = {}
    for layer in layers:
        here = sorted((s for s in scores if s.layer == layer), key=lambda s: order[s.method])
        out[str(layer)] = LayerChoice(
            method=winners.get(str(layer), "caa"),
            cv=[CvScore(method=s.method, one_vs_rest_auroc=s.one_vs_rest_auroc, sibling_auroc=s.sibling_auroc,
                        top1=s.top1, merit=merit(s.sibling_auroc, s.top1, s.one_vs_rest_auroc)) for s in here],
        )
    return AutoChoice(folds=folds, seed=seed, rule=RULE.format(folds=folds), layers=out, fallback=fallback)


def fit_chosen(acts: Activations, members: Members, concepts: Sequence[str], pooling: str, shrinkage: float,
               given: np.ndarray | None, choice: AutoChoice) -> tuple[np.ndarray, dict[str, dict[str, str]]]:
    """Unit vectors [E, L, H] of each layer's chosen method fitted on the whole train split, and their kinds."""
    wanted = {c.method for c in choice.layers.values()} | ({"caa"} if choice.fallback else set())
    vecs = variant_vectors(acts, members, concepts, pooling, shrinkage, given, names=sorted(wanted, key=list(VARIANTS).index))
    unit = np.empty((len(concepts), len(acts.layers), acts.hidden_size), dtype=np.float64)
    kinds: dict[str, dict[str, str]] = {c: {} for c in concepts}
    for li, layer in enumerate(acts.layers):
        method = choice.layers[str(layer)].method
        if method not in vecs:  # cannot happen for a method that fitted on every fold; CAA always fits
            log.warning("--method auto: %s does not fit the whole train split at layer %d; plain CAA", method, layer)
            method = choice.layers[str(layer)].method = "caa"
            vecs.setdefault("caa", variant_vectors(acts, members, concepts, pooling, shrinkage, given, names=["caa"])["caa"])
        for e, c in enumerate(concepts):
            m = "caa" if c in choice.fallback else method
            unit[e, li] = vecs[m][e, li]
            kinds[c][str(layer)] = kind_of(m)
    return unit, kinds
