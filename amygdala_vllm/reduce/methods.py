"""Directions that aim at specificity: grand mean, neutral projection, shared-axis removal, multi-class LDA.

Plain CAA contrasts a concept's positives with texts that lack its tag; with
emotions that share valence, every positive emotion's vector then points
mostly along one shared axis (bundled pipeline, SmolLM2, layer 15: held-out
projections of love and warmth correlate 0.99). The methods here follow the
anchors in FACTS.md ("Emotion-vector methods"):

* ``grand-mean``: the concept's positive mean minus the mean over every kept
  concept's positive mean (Anthropic's emotion-concepts recipe); what all
  emotions share cancels, negatives are not used for the direction;
* ``mlda``: multi-class shrinkage LDA, the grand-mean difference sent through
  ``(S_w + lambda I)^-1``, with ``S_w`` pooled over the within-class scatter of
  every concept's positives and of the neutral texts;
* ``neutral_variance`` (any method): project out of the direction the top
  principal components of neutral activations that hold that share of their
  variance (Anthropic: 50 %; "mainly token noise"). ``(P d) . x = d . (P x)``
  for the symmetric projector ``P``, so this is the same as projecting the
  activations before differencing;
* ``remove_shared`` K (any method): project out the top K right singular
  vectors of the [E, H] matrix of the method's unit vectors (uncentred, so an
  axis every concept leans the same way on, like shared valence, is removed).

Every result is one vector per (concept, layer), read as ``w . x`` of pooled
activations: runtime readout == offline projection holds for all of them.
Neutral texts are those the dataset lists as neutral (``pairs --neutral-texts
FILE``, :func:`given_neutral`) when it lists any; otherwise the train texts
positive for no kept concept (texts the dataset uses only as negatives: the
graph's nodes without any of these tags).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..dataset import Dataset
from ..errors import CaptureError, UsageError
from . import directions
from .activations import Activations
from .stats import Classes, ClassSums, class_sums

__all__ = ["SPECIFIC_METHODS", "Built", "build", "Neutral", "neutral_ids", "neutral_stats", "grand_mean",
           "given_neutral", "multiclass_within_cov",
           "mlda", "neutral_basis", "project_out", "remove_shared", "MIN_NEUTRAL"]

log = logging.getLogger(__name__)

#: Methods this module adds to ``reduce --method``.
SPECIFIC_METHODS = ("grand-mean", "mlda")

#: Fewest neutral texts a covariance is estimated from.
MIN_NEUTRAL = 5


def neutral_ids(members: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Train text ids that are a negative of some kept concept and a positive of none."""
    pos = np.unique(np.concatenate([p for p, _ in members] + [np.zeros(0, np.int64)]))
    neg = np.unique(np.concatenate([n for _, n in members] + [np.zeros(0, np.int64)]))
    return np.setdiff1d(neg, pos).astype(np.int64)


def given_neutral(dataset: Dataset, acts: Activations, *, allow_missing: bool = False) -> np.ndarray | None:
    """The dataset's own neutral text ids (``dataset.json``'s ``neutral``) that a shard holds; None if it lists none.

    Missing ones are an error, as for any train text, unless ``allow_missing``.
    """
    if not dataset.info.neutral:
        return None
    ids = np.array(dataset.info.neutral, dtype=np.int64)
    here = acts.present(ids)
    if not here.all():
        absent = ids[~here]
        if not allow_missing:
            raise CaptureError(f"{len(absent)} neutral text(s) of the dataset are in no shard, e.g. ids "
                               f"{absent[:5].tolist()}; extract them or pass --allow-missing")
        log.warning("%d neutral text(s) are in no shard and are left out", len(absent))
    return ids[here]


@dataclass
class Neutral:
    """Mean [L, H] and covariance [L, H, H] (ddof 1) of the neutral texts' pooled activations."""

    ids: np.ndarray
    mean: np.ndarray
    cov: np.ndarray


def neutral_stats(acts: Activations, ids: np.ndarray, pooling: str) -> Neutral:
    """One streaming pass over the neutral texts (the same canonical blocks as :func:`class_sums`)."""
    if len(ids) < MIN_NEUTRAL:
        raise UsageError(f"only {len(ids)} neutral train texts (from pairs --neutral-texts, else positive for no "
                         "kept concept); "
                         f"neutral statistics need at least {MIN_NEUTRAL}")
    stats = class_sums(acts, Classes.build([(ids, np.zeros(0, np.int64))]), pooling, scatter=True)
    n = float(len(ids))
    mean = stats.sums[0, 0] / n  # shifted frame [L, H]
    cov = stats.scatter
    assert cov is not None
    for li in range(cov.shape[0]):
        cov[li] -= n * np.outer(mean[li], mean[li])
        cov[li] /= n - 1.0
    return Neutral(ids=ids, mean=mean + stats.shift, cov=cov)


def grand_mean(positive_means: np.ndarray) -> np.ndarray:
    """``mu_c - mean_c' mu_c'`` for positive class means [E, L, H]."""
    return positive_means - positive_means.mean(axis=0, keepdims=True)


def multiclass_within_cov(stats: ClassSums) -> np.ndarray:
    """[L, H, H] pooled within-class covariance of the classes in ``stats.sums[0]`` (negatives unused).

    ``(scatter - sum_c S_c S_c^T / n_c) / (sum_c n_c - C)``; consumes ``stats.scatter``.
    """
    if stats.scatter is None:
        raise ValueError("scatter was not accumulated")
    cov, stats.scatter = stats.scatter, None
    n = stats.counts[0].astype(np.float64)
    dof = max(n.sum() - len(n), 1.0)
    for li in range(cov.shape[0]):
        a = stats.sums[0, :, li, :] / np.sqrt(n)[:, None]
        cov[li] -= a.T @ a
        cov[li] /= dof
    return cov


def mlda(acts: Activations, members: Sequence[tuple[np.ndarray, np.ndarray]], neutral: np.ndarray, pooling: str,
         shrinkage: float) -> np.ndarray:
    """Multi-class shrinkage LDA directions [E, L, H]: ``(S_w + lambda I)^-1 (mu_c - mean of concept means)``.

    Classes are each concept's train positives plus the neutral texts; a text
    positive for several concepts counts once per class. The neutral class
    only shapes ``S_w``: its mean is left out of the grand mean, so a concept's
    readout is not pulled toward "any emotion vs none".
    """
    empty = np.zeros(0, np.int64)
    classes = Classes.build([(p, empty) for p, _ in members] + [(neutral, empty)])
    stats = class_sums(acts, classes, pooling, scatter=True)
    n_con = len(members)
    means = stats.sums[0, :n_con] / stats.counts[0, :n_con, None, None]
    return directions.lda(grand_mean(means), multiclass_within_cov(stats), shrinkage)


def neutral_basis(cov: np.ndarray, variance: float) -> list[np.ndarray]:
    """Per layer, the top principal directions [H, k] of ``cov`` [L, H, H] holding ``variance`` of its trace."""
    if not 0.0 < variance < 1.0:
        raise UsageError(f"--neutral-variance must be within (0, 1), got {variance}")
    out = []
    for li in range(cov.shape[0]):
        vals, vecs = np.linalg.eigh(cov[li])
        vals, vecs = vals[::-1].clip(min=0.0), vecs[:, ::-1]
        share = np.cumsum(vals) / vals.sum()
        k = int(np.searchsorted(share, variance) + 1)
        out.append(vecs[:, :k])
    return out


def project_out(raw: np.ndarray, bases: Sequence[np.ndarray]) -> np.ndarray:
    """``d - U U^T d`` per layer for directions [E, L, H] and orthonormal bases [H, k] per layer."""
    out = raw.copy()
    for li, u in enumerate(bases):
        out[:, li, :] -= (out[:, li, :] @ u) @ u.T
    return out


def remove_shared(unit_vectors: np.ndarray, k: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Unit vectors [E, L, H] with their top ``k`` shared (uncentred) singular directions projected out."""
    n_con = unit_vectors.shape[0]
    if not 0 < k < n_con:
        raise UsageError(f"--remove-shared must be within 1..{n_con - 1} (fewer than the {n_con} concepts), got {k}")
    bases = []
    for li in range(unit_vectors.shape[1]):
        _, _, vt = np.linalg.svd(unit_vectors[:, li, :], full_matrices=False)
        bases.append(vt[:k].T)
    return project_out(unit_vectors, bases), bases


@dataclass
class Built:
    """What a method yields: pass-1 class sums, the unit vectors, and what ``remove_shared`` made of them."""

    stats: ClassSums  # positive/negative sums of every kept concept (used for the calibration)
    full: np.ndarray  # unit [E, L, H]: the method (with the neutral projection, if any)
    specific: np.ndarray | None  # unit [E, L, H] with the shared axes removed, when ``remove_shared`` > 0
    options: dict[str, float]  # what the manifest records in ``method_options``


def build(acts: Activations, members: Sequence[tuple[np.ndarray, np.ndarray]], concepts: Sequence[str],
          pooling: str, method: str, *, shrinkage: float = 0.1, neutral_variance: float = 0.0,
          remove_shared_k: int = 0, neutral: np.ndarray | None = None) -> Built:
    """Directions of ``method`` (caa|lda|grand-mean|mlda) with the optional neutral projection and shared removal.

    ``neutral``: the neutral text ids to use (:func:`given_neutral`); None derives them from ``members``.
    """
    layers = acts.layers
    if method in SPECIFIC_METHODS and len(concepts) < 2:
        raise UsageError(f"--method {method} contrasts each concept with the others and needs at least 2 concepts, "
                         f"got {len(concepts)}")
    stats = class_sums(acts, Classes.build(members), pooling, scatter=method == "lda")
    options: dict[str, float] = {}
    if method in ("lda", "mlda"):
        options["shrinkage"] = float(shrinkage)
    if neutral is None:
        neutral = neutral_ids(members) if method == "mlda" or neutral_variance > 0 else np.zeros(0, np.int64)
    if method == "caa":
        raw = directions.caa(stats.means()[0] - stats.means()[1])
    elif method == "lda":
        means = stats.means()
        raw = directions.lda(means[0] - means[1], stats.within_cov(), shrinkage)
    elif method == "grand-mean":
        raw = grand_mean(stats.means()[0])
    elif method == "mlda":
        if len(neutral) < MIN_NEUTRAL:
            raise UsageError(f"--method mlda needs at least {MIN_NEUTRAL} neutral train texts "
                             f"(given with pairs --neutral-texts, else positive for no kept concept); "
                             f"the dataset has {len(neutral)}")
        raw = mlda(acts, members, neutral, pooling, shrinkage)
    else:
        raise UsageError(f"unknown --method {method!r}")
    if neutral_variance > 0:
        basis = neutral_basis(neutral_stats(acts, neutral, pooling).cov, neutral_variance)
        raw = project_out(raw, basis)
        options["neutral_variance"] = float(neutral_variance)
        options["neutral_texts"] = float(len(neutral))
        options["neutral_components_max"] = float(max(b.shape[1] for b in basis))
        log.info("neutral projection: %d texts, %s components per layer", len(neutral), [b.shape[1] for b in basis])
    full = directions.unit(raw, concepts, layers)
    specific = None
    if remove_shared_k > 0:
        specific = directions.unit(remove_shared(full, remove_shared_k)[0], concepts, layers)
        options["remove_shared"] = float(remove_shared_k)
    return Built(stats=stats, full=full, specific=specific, options=options)
