"""From held-out projections to the validation report: per-concept metrics, cross-talk, agreement.

Everything here works on arrays, never on an engine: the driver gets the
projections from ``Readout.score_texts`` (one call) and hands them over as the
``TextScores`` it returned, so every figure can be tested with projections made
up on the spot, and the same code scores activations captured offline.

Positives and negatives of a concept are its held-out examples
(``split == "heldout"`` in ``examples.jsonl``); a text scored once serves every
concept that uses it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..dataset import Dataset
from ..calibration import calibration_transfers
from ..errors import FormatError, UsageError
from ..formats import ReadoutManifest
from ..pooling_modes import MODES
from ..separation import metrics
from ..separation.schema import opt
from ..separation.specificity import specificity
from .crosstalk import crosstalk, crosstalk_layer
from .schema import (
    VALIDATE_FORMAT,
    Agreement,
    ConceptReport,
    LayerMetrics,
    PoolingMetrics,
    ValidateReport,
)

__all__ = [
    "ScoresLike",
    "Projections",
    "projections_from_scores",
    "heldout_classes",
    "concept_reports",
    "agreement_of",
    "agreement_from",
    "agreement_tolerance",
    "evaluate",
    "evaluate_projections",
]

log = logging.getLogger(__name__)


class ScoresLike(Protocol):
    """What evaluation needs of ``amygdala_vllm.readout.scorer.TextScores``."""

    pooled: dict[str, np.ndarray]  # pooling mode -> [L, E]
    agreement: float | None


@dataclass(frozen=True)
class Projections:
    """Pooled projections of scored texts: mode -> float64 [N, L, E] (registry order), rows by ``text_ids``."""

    text_ids: np.ndarray  # int64 [N], unique
    pooled: dict[str, np.ndarray]

    def of(self, pooling: str) -> np.ndarray:
        """The projections pooled by ``pooling``; a mode the scores lack is a usage error naming those they have."""
        if pooling not in self.pooled:
            raise UsageError(f"the scores hold no {pooling!r} pooling; they hold {', '.join(self.pooled) or 'none'}")
        return self.pooled[pooling]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row positions of ``ids`` (all of which must be present)."""
        order = np.argsort(self.text_ids)
        return order[np.searchsorted(self.text_ids, ids, sorter=order)]


def projections_from_scores(scores: Sequence[ScoresLike], text_ids: Sequence[int]) -> Projections:
    """Stack per-text scores in ``text_ids`` order, per pooling mode; shapes and modes must agree."""
    if len(scores) != len(text_ids):
        raise ValueError(f"{len(scores)} scores for {len(text_ids)} text ids")
    ids = np.asarray(text_ids, dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("text ids must be unique (each text is scored once)")
    if not scores:
        return Projections(ids, {name: np.zeros((0, 0, 0)) for name in MODES})
    names = [name for name in MODES if name in scores[0].pooled]
    if any(set(s.pooled) != set(names) for s in scores):
        raise ValueError(f"every text must carry the same registered pooling modes ({', '.join(names)})")
    return Projections(ids, {name: np.stack([np.asarray(s.pooled[name], dtype=np.float64) for s in scores])
                             for name in names})


def heldout_classes(dataset: Dataset, concepts: Sequence[str], scored: np.ndarray | None = None
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per concept, sorted (positive, negative) held-out text ids, restricted to ``scored`` if given."""
    out: dict[str, tuple[set[int], set[int]]] = {c: (set(), set()) for c in concepts}
    for ex in dataset.examples:
        if ex.split == "heldout" and ex.emotion in out:
            out[ex.emotion][0 if ex.polarity == "positive" else 1].add(ex.text_id)
    keep = None if scored is None else set(int(i) for i in scored)
    res = {}
    for c, (pos, neg) in out.items():
        both = pos & neg
        if both:
            raise FormatError(f"{dataset.path}: held-out text {min(both)} is both a positive and a negative for {c!r}")
        if keep is not None:
            pos, neg = pos & keep, neg & keep
        res[c] = (np.array(sorted(pos), dtype=np.int64), np.array(sorted(neg), dtype=np.int64))
    return res


def _pooling_metrics(p: np.ndarray, n: np.ndarray, threshold: float | None, above: bool) -> PoolingMetrics:
    acc = metrics.accuracy_at(p, n, threshold, positive_above=above) if threshold is not None else float("nan")
    return PoolingMetrics(auroc=opt(metrics.auroc(p, n)), cohens_d=opt(metrics.cohens_d(p, n)), accuracy=opt(acc))


def concept_reports(manifest: ReadoutManifest, proj: Projections,
                    classes: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[ConceptReport]:
    """Metrics per concept and layer for every pooling mode of ``proj``; n/a where a held-out class is empty.

    Accuracy is given for the manifest's pooling only, and only if that mode
    is linear: the calibration was measured on the train projections of that
    pooling's activation (``pooled activation . vector``), which says nothing
    about another mode's offset, and for a non-linear mode the scores here
    (``max_t(row_t . vector)``) are not what it measured (``max(rows) . vector``).
    """
    proj.of(manifest.pooling)  # fails early, naming the modes the scores hold
    transfers = calibration_transfers(manifest.pooling)
    out = []
    for e, c in enumerate(manifest.concepts):
        pos, neg = classes.get(c, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        reason = "no held-out positives" if len(pos) == 0 else "no held-out negatives" if len(neg) == 0 else None
        rp, rn = proj.rows(pos), proj.rows(neg)
        layers = []
        for li, layer in enumerate(manifest.layers):
            cal = manifest.calibration[c][str(layer)]
            thr = metrics.calibrated_threshold(cal.pos_mean, cal.neg_mean)
            above = cal.pos_mean >= cal.neg_mean
            per = {}
            for pooling, x in proj.pooled.items():
                x = x[:, li, e] if len(proj.text_ids) else np.zeros(0)
                t = thr if pooling == manifest.pooling and transfers else None
                per[pooling] = _pooling_metrics(x[rp], x[rn], t, above)
            layers.append(LayerMetrics(layer=layer, threshold=thr, pooled=per))
        key = [m.pooled[manifest.pooling].auroc for m in layers]
        best = metrics.best_index([np.nan if a is None else a for a in key])
        out.append(ConceptReport(
            concept=c, status="ok" if reason is None else "n/a", reason=reason,
            heldout_positive=len(pos), heldout_negative=len(neg),
            best_layer=None if best is None else manifest.layers[best],
            best_auroc=None if best is None else key[best], layers=layers,
        ))
    return out


#: Unit roundoff of float32, the arithmetic in which both sides of the agreement check are computed.
FP32_UNIT_ROUNDOFF = 2.0 ** -24
#: Safety factor over the expected rounding (measured figures sit far below 1x, see agreement_tolerance).
AGREEMENT_K = 4.0
_DTYPE_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float": "fp32"}


def agreement_tolerance(dtype: str, activation_scale: float, hidden_size: int = 1, tokens: int = 1) -> float:
    """The bar the agreement figure must stay under: ``K * u * (sqrt(H) + sqrt(T)) * S``.

    What is compared: the runtime score (each token's residual row ``x_t``
    upcast to float32 and dotted with ``v`` on the worker, then averaged over
    tokens) against the offline one (the worker's float32 mean of the very same
    rows, dotted with ``v`` on the driver). Both start from the same rows in the
    model's dtype (bf16/fp16 rows upcast exactly), so the model dtype cancels:
    only float32 summation order differs, in every model dtype. Rounding in a
    float32 dot product of length ``H`` grows like ``sqrt(H) * u * |x| |v|``
    (u = 2**-24, random-walk rounding), and in the float32 mean over ``T`` rows
    like ``sqrt(T) * u * |x|``; ``S`` is the largest ``|activation| * |v|``
    over the pooled rows, ``K`` = 4 a safety factor. A fixed bar failed in
    fp32: on human-rated tweets (SmolLM2 fp32, projections up to 1,714) the two
    sides differed by 2.4e-4 (about 1 ulp of the projection) against an absolute
    1e-4. Here that run gets a bar of ~1e-2, while a wrong layer or vector is
    off by the size of a projection (tens to thousands).
    """
    key = _DTYPE_ALIASES.get(dtype, dtype)
    if key not in ("fp32", "bf16", "fp16"):
        raise UsageError(f"unknown --dtype {dtype!r}; choose bf16, fp16 or fp32")
    rounding = math.sqrt(max(hidden_size, 1)) + math.sqrt(max(tokens, 1))
    return AGREEMENT_K * FP32_UNIT_ROUNDOFF * rounding * max(activation_scale, 0.0)


def agreement_of(scores: Sequence[ScoresLike], dtype: str, hidden_size: int = 1) -> Agreement:
    """Max agreement difference over texts, and whether it passes the bar of :func:`agreement_tolerance`.

    ``S`` is the texts' largest ``agreement_scale`` (|pooled activation| x |vector|);
    scores without one fall back to their largest |projection| over the linear modes
    (the ones the check compares), a lower bound of it.
    """
    vals = [s.agreement for s in scores if s.agreement is not None]
    linear = [s.pooled[n] for s in scores for n, m in MODES.items() if m.linear and np.size(s.pooled.get(n, ()))]
    scale = max((float(np.max(np.abs(a))) for a in linear), default=0.0)
    norms = [float(v) for s in scores if (v := getattr(s, "agreement_scale", None)) is not None]
    tokens = max((len(getattr(s, "token_ids", ()) or ()) for s in scores), default=1)
    return agreement_from(max(vals, default=None), scale, max(norms, default=None), tokens, dtype, hidden_size)


def agreement_from(worst: float | None, scale: float, norm: float | None, tokens: int, dtype: str,
                   hidden_size: int = 1) -> Agreement:
    """The agreement figure from its four maxima over texts (difference, |projection|, activation scale, tokens).

    Shared by :func:`agreement_of` (a list of scores) and :class:`~.stream.ScoreStream` (maxima kept as
    texts arrive).
    """
    activation = max(scale, norm) if norm is not None else scale
    tol = agreement_tolerance(dtype, activation, hidden_size, max(tokens, 1))
    if worst is None:
        return Agreement(checked=False, max_abs_diff=None, max_abs_projection=opt(scale), tolerance=tol,
                         dtype=dtype, passed=None, max_activation_scale=opt(activation))
    worst = float(worst)
    return Agreement(checked=True, max_abs_diff=opt(worst), max_abs_projection=opt(scale), tolerance=tol,
                     dtype=dtype, passed=bool(worst <= tol), max_activation_scale=opt(activation))


def evaluate_projections(
    dataset: Dataset,
    manifest: ReadoutManifest,
    vectors: np.ndarray,
    proj: Projections,
    agreement: Agreement,
    *,
    vectors_path: Path | str = "",
    manifest_path: Path | str = "",
    model: str | None = None,
    dtype: str,
    taxonomy: dict[str, list[str]] | None = None,
) -> ValidateReport:
    """The report (without OOD, comparison or failures) from pooled projections [N, L, E].

    ``dtype`` is the one the engine ran in (resolved, never ``auto``): the report records it.
    """
    classes = heldout_classes(dataset, manifest.concepts, proj.text_ids)
    concepts = concept_reports(manifest, proj, classes)
    best = {c.concept: c.best_layer for c in concepts if c.best_layer is not None}
    layer = crosstalk_layer(manifest.layers, list(best.values()))
    talk = crosstalk(vectors, proj.of(manifest.pooling), manifest.layers)
    if manifest.dataset_sha256 and manifest.dataset_sha256 != dataset.sha256:
        log.warning("the vectors were reduced from dataset %s..., validating on %s...: held-out texts of this "
                    "dataset may have been train texts there", manifest.dataset_sha256[:12], dataset.sha256[:12])
    return ValidateReport(
        format=VALIDATE_FORMAT, model=model or manifest.model, vectors=str(vectors_path), manifest=str(manifest_path),
        dataset=str(dataset.path), dataset_sha256=dataset.sha256,
        dataset_matches_manifest=not manifest.dataset_sha256 or manifest.dataset_sha256 == dataset.sha256,
        method=manifest.method, pooling=manifest.pooling, skip_first_tokens=manifest.skip_first_tokens, dtype=dtype,
        layers=list(manifest.layers), concepts=concepts, heldout_texts=len(proj.text_ids), best_layers=best,
        crosstalk_layer=layer, crosstalk=talk, agreement=agreement,
        specificity=specificity(manifest.concepts, manifest.layers, vectors, proj.of(manifest.pooling),
                                proj.text_ids, classes, taxonomy),
    )


def evaluate(
    dataset: Dataset,
    manifest: ReadoutManifest,
    vectors: np.ndarray,
    scores: Sequence[ScoresLike],
    text_ids: Sequence[int],
    *,
    dtype: str,
    **kwargs: object,
) -> ValidateReport:
    """The report from ``Readout.score_texts`` output for ``text_ids`` (same order); see :func:`evaluate_projections`."""
    proj = projections_from_scores(scores, text_ids)
    shape = proj.of(manifest.pooling).shape[1:] if len(proj.text_ids) else None
    if shape is not None and shape != (len(manifest.layers), len(manifest.concepts)):
        raise FormatError(f"scores have shape [L, E] = {list(shape)}, the manifest "
                          f"{[len(manifest.layers), len(manifest.concepts)]}")
    agreement = agreement_of(scores, dtype, manifest.hidden_size)
    return evaluate_projections(dataset, manifest, vectors, proj, agreement, dtype=dtype,
                                **kwargs)  # type: ignore[arg-type]
