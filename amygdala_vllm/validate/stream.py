"""Held-out scores reduced as they arrive: what the report needs, never every token of every text.

``Readout.score_texts`` gives, per text, the per-token series ``[T, L, E]``
(float32) next to its pooled values. The report reads only the pooled values
(one ``[L, E]`` row per text and mode) and four running figures of the
agreement check (worst difference, largest |projection| and activation scale,
longest text). Holding the per-token series of every held-out text until the
end cost ``tokens x layers x concepts x 4`` bytes: 10.6 GB for 3,669 texts at
200 concepts x 4 layers. :class:`ScoreStream` keeps ``N x L x E`` float64 per
mode instead (the same float64 rows :func:`~.evaluate.projections_from_scores`
stacks, so every figure is unchanged), and the driver hands it each batch of
texts as the engine returns it and then drops the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import FormatError
from ..pooling_modes import MODES
from .evaluate import Projections, ScoresLike, agreement_from
from .schema import Agreement

__all__ = ["ScoreStream"]


class ScoreStream:
    """Pooled projections and agreement figures of ``text_ids``, filled in order by :meth:`add`.

    ``shape`` (``(L, E)``, the manifest's) is checked on each text as it
    arrives, so a wrong vectors file fails on the first batch, not after the
    whole held-out set.
    """

    def __init__(self, text_ids: Sequence[int], shape: tuple[int, int] | None = None):
        self.text_ids = np.asarray(text_ids, dtype=np.int64)
        if len(np.unique(self.text_ids)) != len(self.text_ids):
            raise ValueError("text ids must be unique (each text is scored once)")
        self.shape = shape
        self.filled = 0
        self._pooled: dict[str, np.ndarray] = {}
        self._names: list[str] | None = None
        self._worst: float | None = None  # largest agreement difference
        self._scale = 0.0  # largest |pooled projection| over the linear modes
        self._norm: float | None = None  # largest agreement_scale
        self._tokens = 1  # longest text, in tokens

    def add(self, scores: Iterable[ScoresLike]) -> None:
        """Take the next texts' scores (in ``text_ids`` order); keeps their pooled rows only."""
        for s in scores:
            self._add(s)

    def _add(self, s: ScoresLike) -> None:
        k = self.filled
        if k >= len(self.text_ids):
            raise ValueError(f"more scores than the {len(self.text_ids)} text ids")
        if self._names is None:
            self._names = [name for name in MODES if name in s.pooled]
            first = np.shape(s.pooled[self._names[0]]) if self._names else ()
            if self.shape is not None and first != tuple(self.shape):
                raise FormatError(f"scores have shape [L, E] = {list(first)}, the manifest {list(self.shape)}")
            self._pooled = {name: np.zeros((len(self.text_ids), *first)) for name in self._names}
        if set(s.pooled) != set(self._names):
            raise ValueError(f"every text must carry the same registered pooling modes ({', '.join(self._names)})")
        for name, rows in self._pooled.items():
            rows[k] = np.asarray(s.pooled[name], dtype=np.float64)
            if MODES[name].linear and np.size(s.pooled[name]):
                self._scale = max(self._scale, float(np.max(np.abs(s.pooled[name]))))
        if s.agreement is not None:
            self._worst = float(s.agreement) if self._worst is None else max(self._worst, float(s.agreement))
        norm = getattr(s, "agreement_scale", None)
        if norm is not None:
            self._norm = float(norm) if self._norm is None else max(self._norm, float(norm))
        self._tokens = max(self._tokens, len(getattr(s, "token_ids", ()) or ()))
        self.filled = k + 1

    def projections(self) -> Projections:
        """The pooled projections, mode -> float64 ``[N, L, E]``; every text must have arrived."""
        if self.filled != len(self.text_ids):
            raise ValueError(f"{self.filled} scores for {len(self.text_ids)} text ids")
        if self._names is None:
            return Projections(self.text_ids, {name: np.zeros((0, 0, 0)) for name in MODES})
        return Projections(self.text_ids, self._pooled)

    def agreement(self, dtype: str, hidden_size: int = 1) -> Agreement:
        """Max agreement difference over texts against its bar (:func:`~.evaluate.agreement_from`)."""
        return agreement_from(self._worst, self._scale, self._norm, self._tokens, dtype, hidden_size)
