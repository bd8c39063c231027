"""Turn the worker's per-token scores into the ``amygdala`` object of one response choice.

The worker scores every manifest concept at every manifest layer for an
opted-in request; the request's own selection (concepts, layers, tokens, raw)
and the manifest's calibration are applied here, in the API server, so the
worker's hot path never depends on per-request options.

Scores are kept by position: under preemption vLLM recomputes positions it
had already forwarded, and the recomputed score replaces the earlier one.
"""

from __future__ import annotations

import numpy as np

from ..calibration import calibration_arrays, to_z, token_z_arrays
from ..formats import ReadoutManifest
from ..pooling_modes import MODES, pool_scores
from .options import ReadoutOptions
from .schema import ChoiceScores, Pooled, TokenScores

__all__ = ["SequenceScores", "ChoiceBuilder"]


class SequenceScores:
    """Scores of one engine request (one choice), by position; ``take_new`` hands out each once."""

    def __init__(self) -> None:
        self.prompt_len: int | None = None
        self._rows: dict[int, tuple[int, np.ndarray]] = {}
        self._new: set[int] = set()

    def add(self, positions: np.ndarray, token_ids: np.ndarray, scores: np.ndarray, prompt_len: int) -> None:
        """Store ``scores[T, L, E]`` of ``positions``; a position seen again replaces its score."""
        self.prompt_len = int(prompt_len)
        for p, t, s in zip(positions.tolist(), token_ids.tolist(), scores):
            self._rows[p] = (t, s)
            self._new.add(p)

    def take_new(self) -> list[int]:
        """Positions scored since the last call, ascending."""
        out = sorted(self._new)
        self._new.clear()
        return out

    def positions(self) -> list[int]:
        """Every scored position, ascending."""
        return sorted(self._rows)

    def rows(self, positions: list[int]) -> tuple[list[int], np.ndarray]:
        """Token ids and ``[T, L_all, E_all]`` scores of ``positions``."""
        if not positions:
            return [], np.zeros((0, 0, 0), dtype=np.float32)
        return [self._rows[p][0] for p in positions], np.stack([self._rows[p][1] for p in positions])


class ChoiceBuilder:
    """Builds :class:`ChoiceScores` for one request's options against the served manifest."""

    def __init__(self, manifest: ReadoutManifest, options: ReadoutOptions):
        self.options = options
        self.skip = int(manifest.skip_first_tokens)
        self._li = [manifest.layers.index(i) for i in options.layers]
        self._ei = [manifest.concepts.index(c) for c in options.concepts]
        self._mid, self._std, self._ok = calibration_arrays(manifest, options.layers, options.concepts)
        # Per-token z against per-token statistics; pooled summaries against pooled ones.
        self._tmid, self._tscale, _ = token_z_arrays(manifest, options.layers, options.concepts)

    def _pick(self, scores: np.ndarray) -> np.ndarray:
        return scores[..., self._li, :][..., self._ei].astype(np.float64)

    def _tokens(self, positions: list[int], ids: list[int], raw: np.ndarray) -> TokenScores | None:
        if not positions:
            return None
        if not self.options.tokens:
            return TokenScores(positions=positions, token_ids=ids)
        z = _round(to_z(raw, self._tmid, self._tscale))
        # Positions before skip_first_tokens are not scored (left out of training and calibration): z null.
        z = [None if p < self.skip else row for p, row in zip(positions, z)]
        return TokenScores(positions=positions, token_ids=ids, z=z, raw=_round(raw) if self.options.raw else None)

    def build(self, seq: SequenceScores, positions: list[int], pooled: bool) -> ChoiceScores:
        """The object for ``positions`` of ``seq`` (split into prompt and completion), with the summary if ``pooled``."""
        ids, scores = seq.rows(positions)
        raw = self._pick(scores) if positions else np.zeros((0, len(self._li), len(self._ei)))
        plen = seq.prompt_len if seq.prompt_len is not None else 0
        cut = sum(1 for p in positions if p < plen)
        out = ChoiceScores(
            concepts=list(self.options.concepts), layers=list(self.options.layers),
            calibrated=self._ok.tolist(), skip_first_tokens=self.skip,
            prompt=self._tokens(positions[:cut], ids[:cut], raw[:cut]),
            completion=self._tokens(positions[cut:], ids[cut:], raw[cut:]),
        )
        if pooled:
            out.pooled = self._pooled(seq)
        return out

    def _pooled(self, seq: SequenceScores) -> Pooled | None:
        positions = seq.positions()
        if not positions:
            return None
        _, scores = seq.rows(positions)
        raw = self._pick(scores)
        pooled = {name: pool_scores(name, raw, self.skip, positions) for name in MODES}
        return Pooled(
            num_tokens=len(positions),
            z={name: _round(to_z(values, self._mid, self._std)) for name, values in pooled.items()},
            raw={name: _round(values) for name, values in pooled.items()} if self.options.raw else None,
        )


def _round(a: np.ndarray) -> list:
    """float32 precision is all the worker computed; more digits are noise on the wire."""
    return np.asarray(a, dtype=np.float32).tolist()
