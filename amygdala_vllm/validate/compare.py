"""``--compare-methods``: every ``reduce`` method from the same train texts, scored on the same held-out texts.

Offline, from an activations dir that holds both splits (``extract --split
all``): no engine, no vectors file. The directions come from the reduce
library's own streaming statistics and direction functions (the very code
``reduce --method caa|lda`` runs), so the table answers "which ``--method``
should I have used" for this dataset and model. FACTS.md measured why it
matters: with noisy labels or a strong within-class nuisance axis, CAA points
partly at the nuisance and LDA does not.

Beside the per-concept CAA/LDA table, every method of :data:`VARIANTS` is
scored per layer by the medians over concepts of one-vs-rest and sibling
AUROC and by identification top-1/top-5 (``specificity.py``). The winner of a
layer follows the rule ``reduce --method auto`` ranks by on its cross-validation
folds (:func:`amygdala_vllm.reduce.variants.pick_winners`): the best mean of
median sibling AUROC and top-1 among those keeping median one-vs-rest AUROC >=
:data:`OVR_BAR`, ties to the simplest. With a single concept there is nothing
to tell apart: one-vs-rest decides, and grand-mean/mlda are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..dataset import Dataset
from ..errors import CaptureError
from ..formats import ReadoutManifest
from ..reduce import ReduceOptions, open_activations, select_concepts
from ..reduce.methods import given_neutral
from ..reduce.stats import Classes
from ..reduce.variants import OVR_BAR, VARIANTS, pick_winners, project, variant_vectors
from ..separation import metrics
from ..separation.schema import opt
from ..separation.specificity import specificity
from .evaluate import heldout_classes
from .schema import CompareReport, MethodConcept, MethodLayer, MethodScore

__all__ = ["compare_methods", "variant_vectors", "pick_winners", "VARIANTS", "OVR_BAR"]

log = logging.getLogger(__name__)


def compare_methods(
    activations: Sequence[Path],
    dataset: Dataset,
    manifest: ReadoutManifest,
    *,
    shrinkage: float = 0.1,
    pooling: str | None = None,
    taxonomy: dict[str, list[str]] | None = None,
) -> CompareReport:
    """Held-out AUROC per concept and layer for CAA and LDA; concepts and pooling follow the manifest."""
    pooling = pooling or manifest.pooling
    acts = open_activations(list(activations), dataset_sha256=dataset.sha256)
    acts.check_pooling(pooling)
    opts = ReduceOptions(pooling=pooling, emotions=list(manifest.concepts), min_examples=2, allow_missing=True,
                         shrinkage=shrinkage)
    concepts, members, _, missing = select_concepts(dataset, acts, opts)
    if missing:
        log.warning("--compare-methods: %d train texts are in no shard and are left out", missing)
    classes = Classes.build(members)
    given = given_neutral(dataset, acts, allow_missing=True)
    vecs = variant_vectors(acts, members, concepts, pooling, shrinkage, given)

    held = heldout_classes(dataset, concepts)
    wanted = np.unique(np.concatenate([a for pair in held.values() for a in pair] + [np.zeros(0, np.int64)]))
    ids = wanted[acts.present(wanted)]
    if len(wanted) == 0:
        raise CaptureError(f"the dataset {dataset.path} has no held-out examples for {', '.join(concepts)}")
    if len(ids) == 0:
        raise CaptureError(
            f"the activations in {', '.join(map(str, activations))} hold none of the {len(wanted)} held-out texts; "
            "capture them with `amygdala-vllm extract --split all`"
        )
    if len(ids) < len(wanted):
        log.warning("--compare-methods: %d of %d held-out texts are in no shard", len(wanted) - len(ids), len(wanted))
    proj = project(acts, ids, pooling, vecs)
    rows = {int(t): i for i, t in enumerate(ids)}
    scores = []
    for name, v in vecs.items():
        spec = specificity(concepts, acts.layers, v, proj[name], ids, held, taxonomy)
        scores += [MethodScore(method=name, layer=l.layer, one_vs_rest_auroc=l.median_one_vs_rest_auroc,
                               sibling_auroc=l.median_sibling_auroc, top1=l.top1, top5=l.top5) for l in spec.layers]
    proj = {k: proj[k] for k in ("caa", "lda")}
    out = []
    for e, c in enumerate(concepts):
        pos = [rows[int(t)] for t in held[c][0] if int(t) in rows]
        neg = [rows[int(t)] for t in held[c][1] if int(t) in rows]
        layers = [
            MethodLayer(layer=layer, **{k: opt(metrics.auroc(p[pos, li, e], p[neg, li, e])) for k, p in proj.items()})
            for li, layer in enumerate(acts.layers)
        ]
        best = {k: max((getattr(m, k) for m in layers if getattr(m, k) is not None), default=None) for k in proj}
        out.append(MethodConcept(concept=c, heldout_positive=len(pos), heldout_negative=len(neg), layers=layers,
                                 best_caa=best["caa"], best_lda=best["lda"]))
    return CompareReport(activations=[str(a) for a in activations], pooling=pooling, shrinkage=shrinkage,
                         train_texts=int(len(classes.ids)), heldout_texts=int(len(ids)), concepts=out,
                         scores=scores, winners=pick_winners(scores))
