"""Cross-talk: do two concepts' readouts move together?

Two views, per hooked layer: the cosine between the unit vectors (from
:func:`amygdala_vllm.reduce.cross_talk`, the geometry) and the Pearson
correlation between their held-out projections (the behaviour on real text;
two near-orthogonal vectors can still correlate when the texts that carry one
concept usually carry the other). Correlation ignores each projection's
constant offset, so raw dot products need no centring.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..reduce import cross_talk
from ..separation.schema import opt
from .schema import CrossTalkLayer

__all__ = ["crosstalk", "crosstalk_layer", "projection_correlation"]


def projection_correlation(x: np.ndarray) -> np.ndarray:
    """[E, E] Pearson correlation of the columns of ``x`` [N, E]; nan where a column has no spread."""
    x = np.asarray(x, dtype=np.float64)
    e = x.shape[1]
    if x.shape[0] < 2:
        return np.full((e, e), np.nan)
    d = x - x.mean(axis=0)
    norm = np.sqrt((d * d).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (d.T @ d) / np.outer(norm, norm)
    c[~np.isfinite(c)] = np.nan
    return np.clip(c, -1.0, 1.0)


def crosstalk(vectors: np.ndarray, pooled: np.ndarray, layers: Sequence[int]) -> list[CrossTalkLayer]:
    """Per layer, cosine between ``vectors`` [E, L, H] and correlation of ``pooled`` projections [N, L, E]."""
    n_con = vectors.shape[0]
    names = [str(i) for i in range(n_con)]
    cos = cross_talk(vectors, names, list(layers), top=0)
    out = []
    for li, layer in enumerate(layers):
        corr = projection_correlation(pooled[:, li, :]) if len(pooled) else np.full((n_con, n_con), np.nan)
        out.append(CrossTalkLayer(
            layer=int(layer),
            cosine=[[opt(v) for v in row] for row in cos[li].matrix],
            correlation=[[opt(v) for v in row] for row in corr],
        ))
    return out


def crosstalk_layer(layers: Sequence[int], best_layers: Sequence[int]) -> int:
    """The layer to show: the one most concepts read best at (ties: nearest the middle), else the middle."""
    middle = layers[len(layers) // 2]
    if not best_layers:
        return middle
    counts = Counter(best_layers)
    top = max(counts.values())
    mid_pos = len(layers) // 2
    return min((l for l, n in counts.items() if n == top), key=lambda l: (abs(layers.index(l) - mid_pos), l))
