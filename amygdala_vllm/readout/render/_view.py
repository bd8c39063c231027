"""Turn raw readout scores into the calibrated selection every renderer draws.

The z rule itself (midpoint, pooled std, per-token half gap) lives in
:mod:`amygdala_vllm.calibration`, shared with ``serve`` and ``validate``; this
module picks layers and concepts and applies it.

The renderers (terminal, JSON, HTML) all take a :class:`ReadoutView`, built
once here, so they cannot disagree about which layers, concepts or numbers
they show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ...calibration import calibration_arrays, to_z, token_z_arrays
from ...errors import UsageError
from ...formats import ReadoutManifest

__all__ = [
    "ScoredText",
    "ReadoutView",
    "CLIP_Z",
    "z_note",
    "resolve_layers",
    "check_concepts",
    "rank_concepts",
    "build_view",
]

CLIP_Z = 3.0
"""|z| at which colours saturate: three pooled standard deviations from the midpoint."""


class ScoredText(Protocol):
    """What the renderers need from :class:`amygdala_vllm.readout.scorer.TextScores`.

    A protocol, not an import, so rendering never pulls in the engine side.
    """

    @property
    def token_ids(self) -> list[int]: ...
    @property
    def tokens(self) -> list[str]: ...
    @property
    def scores(self) -> np.ndarray: ...  # float32 [T, L, E], manifest order
    @property
    def pooled(self) -> dict[str, np.ndarray]: ...  # pooling mode -> float32 [L, E], registry order
    @property
    def agreement(self) -> float | None: ...


@dataclass(frozen=True)
class ReadoutView:
    """Scores of one text restricted to the chosen layers and concepts.

    Arrays are ``[T, l, e]`` (per token) or ``[l, e]`` (pooled), with ``l``
    indexing :attr:`layers` and ``e`` indexing :attr:`concepts`. ``z`` equals
    ``raw`` wherever :attr:`calibrated` is False. Per-token ``z`` uses the
    per-token calibration where the manifest has it (:attr:`token_calibrated`),
    the pooled ``pooled_z`` (one ``[l, e]`` array per pooling mode, in the
    order the scores list them) the pooled one. For a non-linear mode (max) the
    pooled calibration was measured on ``max(rows) . vector``, not on the
    ``max_t(row_t . vector)`` shown, so its z is only a rough guide.
    """

    model: str
    tokens: list[str]
    token_ids: list[int]
    layers: list[int]
    concepts: list[str]
    raw: np.ndarray
    z: np.ndarray
    pooled_raw: dict[str, np.ndarray]
    pooled_z: dict[str, np.ndarray]
    calibrated: np.ndarray
    skip_first_tokens: int
    agreement: float | None = None
    token_calibrated: bool = False  # per-token z from per-token statistics (every calibrated column)

    def shade_scale(self) -> np.ndarray:
        """Per-column factor that maps a shown value onto the z colour scale, ``[l, e]``.

        Calibrated columns are already z (factor 1). An uncalibrated column has
        no meaningful unit, so its largest |raw| over the text maps to a full
        colour (``CLIP_Z``): relative within the column, and labelled "raw".
        """
        scored = self.raw[self.skip_first_tokens:]  # an unscored position would set every column's scale
        peak = np.nanmax(np.abs(scored), axis=0) if scored.shape[0] else np.zeros(self.calibrated.shape)
        peak = np.where(np.isfinite(peak) & (peak > 0), peak, 1.0)
        return np.where(self.calibrated, 1.0, CLIP_Z / peak).astype(np.float64)

    def shade(self) -> np.ndarray:
        """Values on the z colour scale for every token and column, ``[T, l, e]``; NaN where not scored."""
        return self.z * self.shade_scale()[None]

    def scored(self, t: int) -> bool:
        """Whether position ``t`` has a z (False before ``skip_first_tokens``: raw only, shown grey)."""
        return t >= self.skip_first_tokens


#: Captions of the two calibrations, shared by the terminal and HTML views.
TOKEN_NOTE = "tokens: z = (score - token midpoint) / half the token gap (train positive token ~ +1, negative ~ -1)"
POOLED_NOTE = "z = (score - midpoint) / pooled std"


def z_note(view: ReadoutView) -> str:
    """What the shown z values mean for ``view``."""
    return f"{TOKEN_NOTE}; {'/'.join(view.pooled_z)}: {POOLED_NOTE}" if view.token_calibrated else POOLED_NOTE


def resolve_layers(manifest: ReadoutManifest, spec: str | None) -> list[int]:
    """Layers to show: ``None`` = the middle hooked layer, ``'all'``, or a number.

    The middle of an even count is the lower of the two: with the default
    extract layers (25/50/70/85 % depth) that is the half-way layer.
    """
    hooked = list(manifest.layers)
    if not hooked:
        raise UsageError("the manifest lists no layers")
    if spec is None:
        return [hooked[(len(hooked) - 1) // 2]]
    spec = spec.strip()
    if spec.lower() == "all":
        return hooked
    try:
        layer = int(spec)
    except ValueError:
        raise UsageError(f"--layer must be a layer number or 'all', got {spec!r}") from None
    if layer not in hooked:
        raise UsageError(f"layer {layer} is not hooked; the manifest has layers {', '.join(map(str, hooked))}")
    return [layer]


def check_concepts(manifest: ReadoutManifest, names: Sequence[str]) -> list[str]:
    """Return ``names`` (deduplicated, in order) or fail naming the unknown one."""
    known = set(manifest.concepts)
    out: list[str] = []
    for name in names:
        if name not in known:
            hint = f" (it was dropped: {manifest.dropped[name]})" if name in manifest.dropped else ""
            raise UsageError(
                f"unknown concept {name!r}{hint}; the manifest has {', '.join(manifest.concepts)}"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError("--concepts names no concept")
    return out


def rank_concepts(manifest: ReadoutManifest, scored: ScoredText, layers: Sequence[int]) -> list[str]:
    """All concepts, the ones the text expresses most first: largest (signed) pooled mean z over the chosen layers.

    Signed, not |z|: a reader asks which emotions a text carries, and the
    bundled vectors ranked by |z| showed four concepts the text was *far from*
    (curiosity, clarity, tiredness, anxiety, all negative) above joy (+2.07).
    Only calibrated entries count: a raw dot product has no unit to compare
    with a z, so an uncalibrated (concept, layer) ranks below every calibrated
    one. Ties (and NaN) keep manifest order, so the ranking is deterministic.
    """
    rows = [manifest.layers.index(layer) for layer in layers]
    mid, std, ok = calibration_arrays(manifest, layers, manifest.concepts)
    z = to_z(np.asarray(scored.pooled["mean"])[rows], mid, std)
    strength = np.where(ok, np.nan_to_num(z, nan=-np.inf), -np.inf).max(axis=0)
    order = sorted(range(len(manifest.concepts)), key=lambda j: (-strength[j], j))
    return [manifest.concepts[j] for j in order]


def build_view(
    scored: ScoredText,
    manifest: ReadoutManifest,
    *,
    layers: Sequence[int],
    concepts: Sequence[str] | None = None,
    top_k: int | None = None,
    model: str | None = None,
) -> ReadoutView:
    """Select and calibrate: ``concepts=None`` means ranked by strength, first ``top_k``.

    ``layers`` and ``concepts`` must already be checked against the manifest
    (:func:`resolve_layers`, :func:`check_concepts`).
    """
    scores = np.asarray(scored.scores)
    n_tok, n_layers, n_concepts = len(scored.tokens), len(manifest.layers), len(manifest.concepts)
    if scores.shape != (n_tok, n_layers, n_concepts):
        raise ValueError(f"scores have shape {scores.shape}, expected {(n_tok, n_layers, n_concepts)}")
    chosen = list(concepts) if concepts is not None else rank_concepts(manifest, scored, layers)
    if top_k is not None and concepts is None:
        chosen = chosen[:top_k]
    rows = [manifest.layers.index(layer) for layer in layers]
    cols = [manifest.concepts.index(c) for c in chosen]
    mid, std, ok = calibration_arrays(manifest, layers, chosen)
    tmid, tscale, tok = token_z_arrays(manifest, layers, chosen)

    def pick(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float32)[..., rows, :][..., cols]

    raw = pick(scores)
    z = to_z(raw, tmid, tscale)
    z[: manifest.skip_first_tokens] = np.nan  # not scored: left out of training and calibration
    pooled_raw = {name: pick(values) for name, values in scored.pooled.items()}
    return ReadoutView(
        model=model if model is not None else manifest.model,
        tokens=list(scored.tokens),
        token_ids=[int(t) for t in scored.token_ids],
        layers=list(layers),
        concepts=chosen,
        raw=raw,
        z=z,
        pooled_raw=pooled_raw,
        pooled_z={name: to_z(values, mid, std) for name, values in pooled_raw.items()},
        calibrated=ok,
        skip_first_tokens=manifest.skip_first_tokens,
        agreement=scored.agreement,
        token_calibrated=bool(tok[ok].all()) if ok.any() else False,
    )
