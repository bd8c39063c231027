"""``--compare-methods``: CAA and shrinkage LDA from the same train texts, scored on the same held-out texts.

Offline, from an activations dir that holds both splits (``extract --split
all``): no engine, no vectors file. The directions come from the reduce
library's own streaming statistics and direction functions (the very code
``reduce --method caa|lda`` runs), so the table answers "which ``--method``
should I have used" for this dataset and model. FACTS.md measured why it
matters: with noisy labels or a strong within-class nuisance axis, CAA points
partly at the nuisance and LDA does not.
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
from ..reduce import directions
from ..reduce.stats import BLOCK, Classes, class_sums
from . import metrics
from .evaluate import heldout_classes
from .schema import CompareReport, MethodConcept, MethodLayer, opt

__all__ = ["compare_methods", "method_vectors"]

log = logging.getLogger(__name__)


def method_vectors(acts, classes: Classes, pooling: str, concepts: Sequence[str], shrinkage: float
                   ) -> dict[str, np.ndarray]:
    """Unit CAA and LDA vectors [E, L, H] from one streaming pass over the train texts."""
    stats = class_sums(acts, classes, pooling, scatter=True)
    means = stats.means()
    diff = means[0] - means[1]
    layers = acts.layers
    caa = directions.unit(directions.caa(diff), concepts, layers)
    lda = directions.unit(directions.lda(diff, stats.within_cov(), shrinkage), concepts, layers)
    return {"caa": caa, "lda": lda}


def _project(acts, ids: np.ndarray, pooling: str, vecs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {k: np.empty((len(ids), v.shape[1], v.shape[0])) for k, v in vecs.items()}
    for j0 in range(0, len(ids), BLOCK):
        y = acts.read(ids[j0 : j0 + BLOCK], pooling)
        for k, v in vecs.items():
            out[k][j0 : j0 + BLOCK] = np.einsum("nlh,elh->nle", y, v)
    return out


def compare_methods(
    activations: Sequence[Path],
    dataset: Dataset,
    manifest: ReadoutManifest,
    *,
    shrinkage: float = 0.1,
    pooling: str | None = None,
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
    vecs = method_vectors(acts, classes, pooling, concepts, shrinkage)

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
    proj = _project(acts, ids, pooling, vecs)
    rows = {int(t): i for i, t in enumerate(ids)}
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
                         train_texts=int(len(classes.ids)), heldout_texts=int(len(ids)), concepts=out)
