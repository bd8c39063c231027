"""The pooling modes as data: one table of how a text's many token rows become one.

A pooling mode turns a text's per-token rows (residual activations on the
worker, or per-token projections ``[T, L, E]`` in readout and serving) into one
row per layer. Each mode is stated once here: its name, whether it is linear
(a linear pooling commutes with the projection ``row . vector``, so the
runtime-vs-offline agreement check applies to it), how the worker computes it
(``vllm_ext/pooling.py`` implements that sentence), and how a per-token score
series reduces to it given ``skip_first_tokens``. Readout and serving call
:func:`pool_scores` instead of restating the rule, so the offline dot product
and the runtime scores pool the same positions.

No torch or vLLM import: ``reduce`` and ``--help`` load this module too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import UsageError

__all__ = ["PoolingMode", "MODES", "DEFAULT_MODES", "mode", "parse_modes", "pool_scores"]


def _body(scores: np.ndarray, skip: int, positions: np.ndarray) -> np.ndarray:
    """Rows at positions ``>= skip``; a series no longer than ``skip`` falls back to its last row.

    The first position is an attention sink whose huge activation swamps a mean
    over a short text, hence the skip; the fallback matches the worker's (a text
    of ``<= skip`` tokens records its last row as its mean).
    """
    return scores[positions >= skip] if scores.shape[0] > skip else scores[-1:]


def _mean(scores: np.ndarray, skip: int, positions: np.ndarray) -> np.ndarray:
    return _body(scores, skip, positions).mean(axis=0)


def _last(scores: np.ndarray, skip: int, positions: np.ndarray) -> np.ndarray:
    return scores[-1]


def _max(scores: np.ndarray, skip: int, positions: np.ndarray) -> np.ndarray:
    return _body(scores, skip, positions).max(axis=0)


@dataclass(frozen=True)
class PoolingMode:
    """One pooling mode: ``reduce(scores[T, ...], skip_first_tokens, positions[T]) -> [...]``."""

    name: str
    linear: bool
    worker_rule: str
    reduce: Callable[[np.ndarray, int, np.ndarray], np.ndarray]


#: Every mode, by name, in the order outputs list them.
MODES: dict[str, PoolingMode] = {
    m.name: m
    for m in (
        PoolingMode("mean", True, "sum of prompt rows at positions >= skip_first_tokens, divided by their count "
                    "(the last row when the prompt has no such position)", _mean),
        PoolingMode("last", True, "the row at position prompt_len - 1", _last),
        # Not linear: max(rows) . v != max(rows . v), so no agreement check and no readout of it.
        PoolingMode("max", False, "element-wise maximum of prompt rows at positions >= skip_first_tokens "
                    "(the last row when the prompt has no such position)", _max),
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
