"""Show readout scores: calibrated z, terminal table and strip, JSON document, HTML heat map.

Pure functions over numpy arrays and the manifest; nothing here imports vLLM or
torch, so rendering is testable (and usable on saved scores) without an
engine. Build a :class:`ReadoutView` once with :func:`build_view`, then hand it
to any renderer.
"""

from __future__ import annotations

from ._colour import z_hex, z_rgb
from ._document import (
    SCORES_FORMAT,
    ChatMessage,
    Pooled,
    ReadoutScores,
    decode_scores,
    encode_scores,
    parse_chat,
    to_document,
)
from ._html import render_html
from ._terminal import colour_strip, legend, score_table, visible_token
from ...calibration import calibration_arrays, to_z, token_z_arrays  # re-exported: the z rule renderers apply
from ._view import (
    CLIP_Z,
    ReadoutView,
    ScoredText,
    build_view,
    check_concepts,
    rank_concepts,
    resolve_layers,
)

__all__ = [
    "CLIP_Z",
    "SCORES_FORMAT",
    "ChatMessage",
    "Pooled",
    "ReadoutScores",
    "ReadoutView",
    "ScoredText",
    "build_view",
    "calibration_arrays",
    "check_concepts",
    "colour_strip",
    "decode_scores",
    "encode_scores",
    "legend",
    "parse_chat",
    "rank_concepts",
    "render_html",
    "resolve_layers",
    "score_table",
    "to_document",
    "to_z",
    "token_z_arrays",
    "visible_token",
    "z_hex",
    "z_rgb",
]
