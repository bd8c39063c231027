"""Per-token calibration: the class means of per-token projections, from the pooled means alone.

A per-token score is ``w . x_i`` for one token row ``x_i``; calibrating it with
statistics of text-pooled means is wrong in offset (the bundled vectors gave
every per-token z between -1 and -9 while the pooled z of the same text was
+2). The per-token class mean needs no per-token capture: a text's mean row
averages its ``n`` pooled tokens, so ``sum_t n_t (w . mean_t) / sum_t n_t`` is
the mean of ``w . x_i`` over every pooled token of the class, exactly.
``n_t`` is ``num_tokens - skip_first_tokens`` (the worker's pooled count; a text
no longer than the skip is pooled as its last row, one token).

The scale is half the gap between the two class means, so a typical train
positive token reads +1 and a typical negative token -1. A per-token standard
deviation would need every token's projection (a readout pass over the train
texts); the half-gap keeps ``reduce`` a pure pass over the shards.
"""

from __future__ import annotations

import numpy as np

from .activations import Activations
from .stats import Classes

__all__ = ["token_class_means", "pooled_counts"]


def pooled_counts(num_tokens: np.ndarray, skip_first_tokens: int) -> np.ndarray:
    """Tokens in each text's mean: ``num_tokens - skip`` (at least 1)."""
    return np.maximum(np.asarray(num_tokens, dtype=np.int64) - int(skip_first_tokens), 1)


def token_class_means(acts: Activations, classes: Classes, vectors: np.ndarray) -> np.ndarray:
    """[2, E, L]: token-weighted class means of the projections of ``mean`` rows onto ``vectors`` [E, L, H]."""
    n_con, n_layers = vectors.shape[0], vectors.shape[1]
    sums = np.zeros((2, n_con, n_layers), dtype=np.float64)
    weights = np.zeros((2, n_con), dtype=np.float64)
    skip = acts.info.skip_first_tokens
    for j0, j1 in classes.blocks():
        ids = classes.ids[j0:j1]
        y = acts.read(ids, "mean")
        n = pooled_counts(acts.read_num_tokens(ids), skip).astype(np.float64)
        proj = np.einsum("blh,elh->bel", y, vectors)  # [b, E, L]
        ind = classes.indicator(j0, j1) * n[None, None, :]  # [2, E, b]
        sums += np.einsum("keb,bel->kel", ind, proj)
        weights += ind.sum(axis=2)
    return sums / np.maximum(weights, 1.0)[:, :, None]
