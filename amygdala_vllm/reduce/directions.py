"""Directions from class statistics: CAA, shrinkage LDA, and the cross-talk between them.

CAA is the plain mean difference ``mu_pos - mu_neg`` (``--method auto``, the
default, picks it or another method per layer: :mod:`.auto`). It is exactly
what the seed computed and what a reader expects, but any axis along which
texts vary a lot within a class leaks into it.

Shrinkage LDA sends the same mean difference through the inverse of a shared,
regularised within-class covariance: ``w = (S_w + lambda I)^-1 (mu_pos - mu_neg)``
with ``lambda = shrinkage * mean(diag(S_w))`` (FACTS.md: 0.1 x mean variance
added to the diagonal measured best on SmolLM2). ``w`` lives in the raw
activation space, so the projection ``w . x`` needs no whitening at serving
time; it is unit-normalised like a CAA vector and written in the same format.
Shrinkage keeps the solve well-posed when texts are fewer than hidden units.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np

from ..errors import CaptureError, UsageError

__all__ = ["unit", "caa", "lda", "CrossPair", "LayerCrossTalk", "cross_talk"]


def unit(raw: np.ndarray, concepts: Sequence[str], layers: Sequence[int]) -> np.ndarray:
    """Normalise ``raw`` [E, L, H] to unit L2 norm per (concept, layer)."""
    norms = np.linalg.norm(raw, axis=-1)
    if not np.all(norms > 0):
        e, li = map(int, np.argwhere(~(norms > 0))[0])
        raise CaptureError(
            f"concept {concepts[e]!r} has a zero direction at layer {layers[li]}: "
            "its positive and negative texts have identical mean activations"
        )
    return raw / norms[..., None]


def caa(mean_diff: np.ndarray) -> np.ndarray:
    """Contrastive activation addition: the mean difference itself (normalised later)."""
    return mean_diff.copy()


def lda(mean_diff: np.ndarray, within_cov: np.ndarray, shrinkage: float) -> np.ndarray:
    """Shrinkage LDA directions [E, L, H] from mean differences and per-layer ``S_w`` [L, H, H].

    The shrinkage is added to ``within_cov``'s diagonal in place (it is a large buffer).
    """
    if not shrinkage >= 0:
        raise UsageError(f"--shrinkage must be >= 0, got {shrinkage}")
    out = np.empty_like(mean_diff)
    for li in range(mean_diff.shape[1]):
        cov = within_cov[li]
        cov.flat[:: cov.shape[0] + 1] += shrinkage * float(np.mean(np.diag(cov)))
        try:
            out[:, li, :] = np.linalg.solve(cov, mean_diff[:, li, :].T).T
        except np.linalg.LinAlgError as exc:
            raise UsageError(
                f"the within-class covariance at layer index {li} is singular; use --shrinkage > 0"
            ) from exc
    return out


class CrossPair(msgspec.Struct):
    """Two concepts whose vectors point in similar directions at one layer."""

    a: str
    b: str
    cosine: float


class LayerCrossTalk(msgspec.Struct):
    """Cosines between every pair of concept vectors at one layer."""

    layer: int
    top_pairs: list[CrossPair]
    matrix: list[list[float]]


def cross_talk(
    vectors: np.ndarray, concepts: Sequence[str], layers: Sequence[int], *, top: int = 10
) -> list[LayerCrossTalk]:
    """Cosine matrix per layer of unit ``vectors`` [E, L, H]; the ``top`` most similar pairs first.

    High cosine between two concepts (the seed's warmth and love) means their
    readouts will move together, whatever the text.
    """
    out = []
    iu = np.triu_indices(len(concepts), k=1)
    for li, layer in enumerate(layers):
        v = vectors[:, li, :]
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        cos = np.clip(v @ v.T, -1.0, 1.0)
        pair_cos = cos[iu]
        order = np.argsort(-pair_cos, kind="stable")[:top]
        pairs = [CrossPair(concepts[iu[0][i]], concepts[iu[1][i]], float(pair_cos[i])) for i in order]
        out.append(LayerCrossTalk(layer=int(layer), top_pairs=pairs, matrix=cos.tolist()))
    return out
