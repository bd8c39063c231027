"""The pooling modes as data: one table of how a text's many token rows become one.

A pooling mode turns a text's per-token rows (residual activations on the
worker, or per-token projections ``[T, L, E]`` in readout and serving) into one
row per layer. A mode is two words of data, not code: which prompt rows it
takes (``body``: positions ``>= skip_first_tokens``, the last row when there is
none; ``last``: the row at ``prompt_len - 1``) and how it folds them into one
(``mean``, ``max`` or ``min``, element-wise). Both sides interpret the same
entry: :func:`pool_scores` here (numpy, for readout's and serving's per-token
scores) and the worker's accumulator in ``vllm_ext/pooling.py`` (torch, folding
rows step by step as each layer runs). So a new mode built from these rows and
folds is one line in :data:`MODES`; only a new kind of fold needs the worker to
learn it (its ``_FOLDS`` table) and this module's :data:`FOLDS`.

A mode is linear when it is a weighted sum of rows (the ``mean`` fold, or a
single row): a linear pooling commutes with the projection ``row . vector``, so
the runtime-vs-offline agreement check applies to it. For a non-linear mode the
pooled score of a series (``max_t row_t . v``) is not the projection of the
pooled row (``max_t(row_t) . v``).

No torch or vLLM import: ``reduce`` and ``--help`` load this module too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import UsageError

__all__ = ["PoolingMode", "MODES", "DEFAULT_MODES", "FOLDS", "mode", "parse_modes", "pool_scores"]

Rows = Literal["body", "last"]
Fold = Literal["mean", "max", "min"]

#: How several rows fold into one, element-wise over the row axis (the worker mirrors each in torch).
FOLDS: dict[str, Callable[..., np.ndarray]] = {"mean": np.mean, "max": np.max, "min": np.min}

_ROWS_RULE = {
    "body": "prompt rows at positions >= skip_first_tokens (the last row when the prompt has no such position)",
    "last": "the row at position prompt_len - 1",
}


@dataclass(frozen=True)
class PoolingMode:
    """One pooling mode: the prompt rows it takes and the fold that makes them one row."""

    name: str
    rows: Rows
    fold: Fold = "mean"

    def __post_init__(self) -> None:
        if self.rows not in _ROWS_RULE or self.fold not in FOLDS:
            raise ValueError(f"pooling mode {self.name!r}: rows {self.rows!r} / fold {self.fold!r} not known")

    @property
    def linear(self) -> bool:
        """True when pooling commutes with a projection (a mean of rows, or one row)."""
        return self.rows == "last" or self.fold == "mean"

    @property
    def worker_rule(self) -> str:
        """The rule in words (help texts and docs)."""
        rows = _ROWS_RULE[self.rows]
        return rows if self.rows == "last" else f"element-wise {self.fold} of {rows}"

    def reduce(self, scores: np.ndarray, skip: int, positions: np.ndarray) -> np.ndarray:
        """``scores[T, ...]`` at ``positions[T]`` -> ``[...]`` by this mode (dtype kept)."""
        if self.rows == "last":
            return scores[-1]
        # The first position is an attention sink whose huge activation swamps a mean over a
        # short text, hence the skip; a series no longer than the skip falls back to its last
        # row, as the worker does (it records the last row for a text of <= skip tokens).
        body = scores[positions >= skip] if scores.shape[0] > skip else scores[-1:]
        return FOLDS[self.fold](body, axis=0).astype(scores.dtype, copy=False)


#: Every mode, by name, in the order outputs list them. Adding a mode is one line here (and its tests).
MODES: dict[str, PoolingMode] = {
    m.name: m
    for m in (
        PoolingMode("mean", "body", "mean"),
        PoolingMode("last", "last"),
        PoolingMode("max", "body", "max"),
    )
}

#: The modes every capture records unless asked otherwise (and always records: readout pools by these).
DEFAULT_MODES: tuple[str, ...] = ("mean", "last")


def mode(name: str) -> PoolingMode:
    """The registered mode ``name``; an unknown name is a usage error listing the known ones."""
    try:
        return MODES[name]
    except KeyError:
        raise UsageError(f"unknown pooling mode {name!r}; choose from {', '.join(MODES)}") from None


def parse_modes(spec: str) -> tuple[str, ...]:
    """``"mean,last"`` -> ``("mean", "last")``, each checked against :data:`MODES`, no repeats, not empty."""
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    if not names:
        raise UsageError("no pooling mode given")
    for n in names:
        mode(n)
    if len(set(names)) != len(names):
        raise UsageError(f"pooling mode listed twice in {spec!r}")
    return names


def pool_scores(name: str, scores: np.ndarray, skip_first_tokens: int,
                positions: np.ndarray | list[int] | None = None) -> np.ndarray:
    """Reduce a per-token series ``scores[T, ...]`` (``T >= 1``, ascending positions) by mode ``name``.

    ``positions`` are the token positions of the rows (default ``0..T-1``; serving
    passes its own, as it keeps scores by position). The input dtype is kept, so
    readout's float32 and serving's float64 pool exactly as they did.
    """
    if scores.shape[0] == 0:
        raise UsageError("cannot pool an empty score series")
    pos = np.arange(scores.shape[0]) if positions is None else np.asarray(positions)
    if pos.shape != (scores.shape[0],):
        raise UsageError(f"{pos.shape[0]} positions for {scores.shape[0]} score rows")
    return mode(name).reduce(scores, int(skip_first_tokens), pos)
