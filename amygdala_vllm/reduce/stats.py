"""Streaming sufficient statistics: per-class sums, pooled within-class scatter, projection spread.

Texts are visited in one canonical order, whatever the shard layout: the sorted
union of the train text ids of the kept concepts, cut into fixed blocks of
:data:`BLOCK` texts. Every block has the same content in a single run and in a
merged one, so every float64 operation sees the same operands in the same order
and the result is bit-identical (this is what makes "merge == one run, byte for
byte" hold; summing per shard would not).

Every row is shifted by ``c`` (the mean of the first block, per layer) before it
is summed. The shift cancels in every mean difference and keeps float64 sums and
second moments small where activations carry a large common offset (the
attention-sink position can dwarf the signal).

Memory: the sums are ``[2, E, L, H]`` float64 and one block ``[BLOCK, L, H]``;
LDA adds one ``[H, H]`` float64 scatter per layer (~210 MB per layer at H=5120).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .activations import Activations

__all__ = ["BLOCK", "Classes", "ClassSums", "class_sums", "projection_spread"]

log = logging.getLogger(__name__)

#: Texts per canonical block. Changing it changes the last bits of the output.
BLOCK = 256


@dataclass(frozen=True)
class Classes:
    """Positive and negative train text ids of each concept, as positions in ``ids``."""

    ids: np.ndarray  # int64 [M]: sorted union of every class's text ids
    members: tuple[tuple[np.ndarray, np.ndarray], ...]  # per concept: (pos positions, neg positions)

    @classmethod
    def build(cls, classes: Sequence[tuple[np.ndarray, np.ndarray]]) -> Classes:
        """From per-concept (positive ids, negative ids) arrays."""
        parts = [a for pair in classes for a in pair]
        ids = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        members = tuple(
            (np.searchsorted(ids, np.unique(p)), np.searchsorted(ids, np.unique(n))) for p, n in classes
        )
        return cls(ids=ids.astype(np.int64), members=members)

    def counts(self) -> np.ndarray:
        """int64 [2, E]: class sizes (row 0 positives, row 1 negatives)."""
        return np.array([[len(m[k]) for m in self.members] for k in (0, 1)], dtype=np.int64)

    def blocks(self) -> Iterator[tuple[int, int]]:
        """``[j0, j1)`` position ranges of the canonical blocks."""
        for j0 in range(0, len(self.ids), BLOCK):
            yield j0, min(j0 + BLOCK, len(self.ids))

    def indicator(self, j0: int, j1: int) -> np.ndarray:
        """float64 [2, E, j1 - j0]: 1 where the block's text is in the class."""
        out = np.zeros((2, len(self.members), j1 - j0), dtype=np.float64)
        for e, pair in enumerate(self.members):
            for k in (0, 1):
                pos = pair[k]
                a, b = np.searchsorted(pos, j0), np.searchsorted(pos, j1)
                out[k, e, pos[a:b] - j0] = 1.0
        return out


@dataclass
class ClassSums:
    """What one streaming pass yields; everything in the shifted frame ``x - shift``."""

    shift: np.ndarray  # [L, H]
    sums: np.ndarray  # [2, E, L, H]
    counts: np.ndarray  # [2, E]
    scatter: np.ndarray | None  # [L, H, H]: sum over classes of sum_t y_t y_t^T, or None

    def means(self) -> np.ndarray:
        """[2, E, L, H] class means, shifted frame."""
        return self.sums / self.counts[:, :, None, None]

    def within_cov(self) -> np.ndarray:
        """[L, H, H] pooled within-class covariance over all 2E classes; consumes ``scatter``.

        ``sum_c sum_{t in c} (y_t - mu_c)(y_t - mu_c)^T / (sum_c n_c - 2E)``,
        from ``scatter - sum_c n_c mu_c mu_c^T``. A text in several classes
        (e.g. positive for one emotion, negative for another) counts once per
        class, exactly as if each concept's two-class problem were stacked.
        Computed in place, so the [L, H, H] buffer exists once.
        """
        if self.scatter is None:
            raise ValueError("scatter was not accumulated (or was already consumed)")
        cov, self.scatter = self.scatter, None
        n = self.counts.reshape(-1).astype(np.float64)
        dof = max(n.sum() - len(n), 1.0)
        for li in range(cov.shape[0]):
            a = self.sums[:, :, li, :].reshape(len(n), -1) / np.sqrt(n)[:, None]
            cov[li] -= a.T @ a
            cov[li] /= dof
        return cov


def class_sums(acts: Activations, classes: Classes, pooling: str, *, scatter: bool) -> ClassSums:
    """Pass 1: per-class sums (and, for LDA, the class-weighted scatter) in canonical order."""
    n_layers, hidden = len(acts.layers), acts.hidden_size
    n_con = len(classes.members)
    sums = np.zeros((2, n_con, n_layers, hidden), dtype=np.float64)
    scat = np.zeros((n_layers, hidden, hidden), dtype=np.float64) if scatter else None
    shift: np.ndarray | None = None
    for j0, j1 in classes.blocks():
        y = acts.read(classes.ids[j0:j1], pooling)
        if shift is None:
            shift = y.mean(axis=0)
        y -= shift
        ind = classes.indicator(j0, j1)
        flat = y.reshape(j1 - j0, -1)
        for k in (0, 1):
            sums[k] += (ind[k] @ flat).reshape(n_con, n_layers, hidden)
        if scat is not None:
            weight = ind.sum(axis=(0, 1))
            for li in range(n_layers):
                yl = y[:, li, :]
                scat[li] += yl.T @ (yl * weight[:, None])
        log.debug("pass 1: block %d-%d of %d", j0, j1, len(classes.ids))
    if shift is None:
        shift = np.zeros((n_layers, hidden), dtype=np.float64)
    return ClassSums(shift=shift, sums=sums, counts=classes.counts(), scatter=scat)


def projection_spread(
    acts: Activations, classes: Classes, pooling: str, vectors: np.ndarray, stats: ClassSums
) -> tuple[np.ndarray, np.ndarray]:
    """Pass 2: class means and pooled std of the projections onto ``vectors`` [E, L, H].

    Deviations are taken from the exact class mean projection (known from pass
    1), so the variance has no cancellation against the large constant offset a
    raw projection carries. Returns ``means`` [2, E, L] and ``pooled_std`` [E, L].
    """
    n_con, n_layers = vectors.shape[0], vectors.shape[1]
    mean_proj = np.einsum("kelh,elh->kel", stats.means(), vectors)  # shifted frame
    ssq = np.zeros((2, n_con, n_layers), dtype=np.float64)
    for j0, j1 in classes.blocks():
        y = acts.read(classes.ids[j0:j1], pooling) - stats.shift
        ind = classes.indicator(j0, j1)
        for li in range(n_layers):
            p = vectors[:, li, :] @ y[:, li, :].T  # [E, b]
            for k in (0, 1):
                dev = p - mean_proj[k, :, li][:, None]
                ssq[k, :, li] += (ind[k] * dev * dev).sum(axis=1)
    dof = np.maximum(stats.counts.sum(axis=0) - 2, 1).astype(np.float64)  # [E]
    pooled = np.sqrt(ssq.sum(axis=0) / dof[:, None])
    offset = np.einsum("lh,elh->el", stats.shift, vectors)
    return mean_proj + offset[None], pooled
