"""The manifest's calibration as numbers: midpoints, scales and z, for every stage that shows a score.

A raw projection (residual stream . unit vector) has a different offset and
scale at every layer, so raw numbers cannot be compared across layers or
concepts, nor read as "how much". ``reduce`` stores, per (concept, layer), the
train class means of the projection and their pooled standard deviation
(:class:`~amygdala_vllm.formats.Calibration`); this module is the one rule that
turns them into z: centre on the midpoint of the class means, divide by the
pooled std, so ``z > 0`` leans positive and ``|z|`` around 1 is a typical
train-text distance. Where calibration is missing the raw score is kept (and
flagged), so nothing is silently rescaled.

Why one module at the bottom (it imports no stage): ``render`` (``readout``'s
table, JSON and HTML), ``serve`` (each response's ``amygdala`` object) and
``validate`` (thresholds, accuracy, OOD z) all read the same calibration, and
three copies of the rule could drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .formats import Calibration, ReadoutManifest
from .pooling_modes import MODES

__all__ = [
    "midpoint",
    "signed_z",
    "calibration_transfers",
    "calibration_arrays",
    "token_calibration_arrays",
    "token_z_arrays",
    "to_z",
]


def midpoint(pos_mean: float, neg_mean: float) -> float:
    """The midpoint of the train class means of the projection: ``validate``'s threshold, z's zero."""
    return (float(pos_mean) + float(neg_mean)) / 2.0


def signed_z(value: float, cal: Calibration) -> float:
    """``(value - midpoint) / pooled_std``, signed so > 0 leans toward the concept; nan without a positive std.

    The sign flips where the train positives projected below the negatives (a
    direction that generalises badly), so a positive z always means "more of
    the concept".
    """
    z = (value - midpoint(cal.pos_mean, cal.neg_mean)) / cal.pooled_std if cal.pooled_std > 0 else float("nan")
    return z if cal.pos_mean >= cal.neg_mean else -z


def calibration_transfers(pooling: str) -> bool:
    """Whether the calibration (thresholds, accuracy, OOD z) of manifest pooling ``pooling`` applies to its scores.

    ``reduce`` calibrates on ``pooled activation . vector``; readout pools the
    per-token scores ``row_t . vector``. The two agree for a linear mode only:
    ``max_t(row_t . v)`` is not ``max(rows) . v``, so a ``max`` manifest's
    thresholds say nothing about its runtime scores.
    """
    return pooling in MODES and MODES[pooling].linear


def _calibration_grid(
    manifest: ReadoutManifest, layers: Sequence[int], concepts: Sequence[str],
    entry: Callable[[Calibration], tuple[float, float] | None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(midpoint, scale, calibrated)`` over layers x concepts, each entry by ``entry(cal) -> (mid, scale) | None``.

    A missing entry, or one ``entry`` rejects, is uncalibrated: midpoint 0 and
    scale 1, i.e. the raw score.
    """
    mid = np.zeros((len(layers), len(concepts)), dtype=np.float64)
    scale = np.ones_like(mid)
    ok = np.zeros(mid.shape, dtype=bool)
    for j, concept in enumerate(concepts):
        per_layer = manifest.calibration.get(concept, {})
        for i, layer in enumerate(layers):
            cal = per_layer.get(str(layer))
            got = entry(cal) if cal is not None else None
            if got is not None:
                mid[i, j], scale[i, j] = got
                ok[i, j] = True
    return mid, scale, ok


def _pooled_entry(cal: Calibration) -> tuple[float, float] | None:
    if not (math.isfinite(cal.pooled_std) and cal.pooled_std > 0):
        return None
    if not (math.isfinite(cal.pos_mean) and math.isfinite(cal.neg_mean)):
        return None
    return (cal.pos_mean + cal.neg_mean) / 2, cal.pooled_std


def _token_entry(cal: Calibration) -> tuple[float, float] | None:
    if cal.token_pos_mean is None or cal.token_neg_mean is None:
        return None
    gap = (cal.token_pos_mean - cal.token_neg_mean) / 2
    if not (math.isfinite(gap) and gap != 0):
        return None
    return (cal.token_pos_mean + cal.token_neg_mean) / 2, gap


def calibration_arrays(
    manifest: ReadoutManifest, layers: Sequence[int], concepts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(midpoint, pooled_std, calibrated)``, each ``[len(layers), len(concepts)]``.

    A missing entry, or one whose ``pooled_std`` is not a positive finite
    number (a concept whose train texts all projected alike), counts as
    uncalibrated: midpoint 0 and scale 1, i.e. the raw score.
    """
    return _calibration_grid(manifest, layers, concepts, _pooled_entry)


def token_calibration_arrays(
    manifest: ReadoutManifest, layers: Sequence[int], concepts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(midpoint, half_gap, calibrated)`` of per-token scores, each ``[len(layers), len(concepts)]``.

    From the manifest's per-token class means (``reduce/token_calibration.py``):
    ``z = (score - midpoint) / half_gap`` puts a typical train positive token
    at +1 and a typical negative one at -1 (the half-gap is signed, so z > 0
    always leans toward the concept). Manifests written before per-token
    calibration existed lack the means: those entries are not calibrated here
    and per-token scores fall back to the pooled calibration.
    """
    return _calibration_grid(manifest, layers, concepts, _token_entry)


def token_z_arrays(
    manifest: ReadoutManifest, layers: Sequence[int], concepts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(midpoint, scale, token_calibrated)`` for per-token z, each ``[len(layers), len(concepts)]``.

    The per-token class means where the manifest has them (a pooled mean's
    statistics put every token of a text far from 0: issue 15 measured -1 to -9
    on a plainly joyful sentence), the pooled calibration elsewhere. One rule
    for ``readout``, its HTML and the serving responses.
    """
    mid, std, ok = calibration_arrays(manifest, layers, concepts)
    tmid, thalf, tok = token_calibration_arrays(manifest, layers, concepts)
    tok &= ok
    return np.where(tok, tmid, mid), np.where(tok, thalf, std), tok


def to_z(raw: np.ndarray, mid: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(raw - mid) / std`` broadcast over leading axes, in float64."""
    return (np.asarray(raw, dtype=np.float64) - mid) / std
