"""``amygdala-readout-scores/2``: the ``readout --json`` document, and the chat input format.

Both are msgspec Structs that forbid unknown fields, with their encoder and
decoder beside them: a consumer that reads the scores back, or a chat file with
a misspelt key, fails at once instead of being half-understood.

Numbers are the float32 values written in their shortest exact form (no
float64 noise such as ``0.30000001192092896``); a non-finite score becomes
``null``.

Version 2 keys the pooled scores by pooling-mode name (``pooled``) where
version 1 had the fields ``mean`` and ``last``; :func:`decode_scores` still
reads a version-1 document, as the version 2 it converts to. The version
strings and that upgrade live in :mod:`amygdala_vllm.formats` with every other.
"""

from __future__ import annotations

import msgspec
import numpy as np

from ...errors import FormatError
from ...formats import SCORES_FORMAT, SCORES_FORMAT_V1, encode_json, upgrade_scores_v1
from ._view import ReadoutView

__all__ = [
    "SCORES_FORMAT",
    "ChatMessage",
    "Pooled",
    "ReadoutScores",
    "to_document",
    "encode_scores",
    "decode_scores",
    "parse_chat",
]

class ChatMessage(msgspec.Struct, forbid_unknown_fields=True):
    """One turn of a conversation, as chat templates take it."""

    role: str
    content: str


class Pooled(msgspec.Struct, forbid_unknown_fields=True):
    """One pooled score per layer and concept: ``z[l][e]`` and ``raw[l][e]``."""

    z: list[list[float | None]]
    raw: list[list[float | None]]


class ReadoutScores(msgspec.Struct, forbid_unknown_fields=True):
    """Scores of one text. Axes: ``t`` token, ``l`` index into ``layers``, ``e`` into ``concepts``.

    ``z[t][l][e]`` is calibrated where ``calibrated[l][e]`` is true and equals
    ``raw[t][l][e]`` (the plain dot product with the unit vector) otherwise; it
    is ``null`` at positions ``t < skip_first_tokens``, which are not scored
    (left out of training and calibration; ``raw`` still holds their value).
    ``pooled`` maps each pooling mode to the per-token ``raw`` series reduced by
    it (``pooling_modes.MODES``): ``mean`` over positions ``>= skip_first_tokens``,
    ``last`` the last token, ``max`` the largest score over positions
    ``>= skip_first_tokens`` (``max_t(row_t . v)``, not ``max(rows) . v``).
    """

    format: str
    model: str
    text: str
    tokens: list[str]
    token_ids: list[int]
    layers: list[int]
    concepts: list[str]
    calibrated: list[list[bool]]
    skip_first_tokens: int
    z: list[list[list[float | None]]]
    raw: list[list[list[float | None]]]
    pooled: dict[str, Pooled]
    messages: list[ChatMessage] | None = None
    agreement: float | None = None


def _numbers(a: np.ndarray) -> list:
    """Nested lists of the float32 values, shortest exact repr, NaN/inf -> None."""
    f32 = np.asarray(a, dtype=np.float32)
    text = f32.astype(str)
    finite = np.isfinite(f32)

    def walk(t: np.ndarray, ok: np.ndarray) -> list:
        if t.ndim == 1:
            return [float(v) if good else None for v, good in zip(t.tolist(), ok.tolist())]
        return [walk(sub, sub_ok) for sub, sub_ok in zip(t, ok)]

    return walk(text, finite)


def to_document(view: ReadoutView, text: str, messages: list[ChatMessage] | None = None) -> ReadoutScores:
    """The JSON document for ``view``; ``text`` is the input (or the rendered chat)."""
    return ReadoutScores(
        format=SCORES_FORMAT,
        model=view.model,
        text=text,
        tokens=list(view.tokens),
        token_ids=list(view.token_ids),
        layers=list(view.layers),
        concepts=list(view.concepts),
        calibrated=view.calibrated.tolist(),
        skip_first_tokens=view.skip_first_tokens,
        z=_numbers(view.z) if view.tokens else [],
        raw=_numbers(view.raw) if view.tokens else [],
        pooled={name: Pooled(z=_numbers(view.pooled_z[name]), raw=_numbers(raw))
                for name, raw in view.pooled_raw.items()},
        messages=messages,
        agreement=view.agreement,
    )


def encode_scores(doc: ReadoutScores) -> bytes:
    """Formatted, deterministic JSON, newline-terminated."""
    return encode_json(doc)


def decode_scores(data: bytes) -> ReadoutScores:
    """Read a scores document back (a version-1 one as version 2); anything else is a :class:`FormatError`."""
    try:
        raw = msgspec.json.decode(data)
        fmt = raw.get("format") if isinstance(raw, dict) else None
        if fmt not in (SCORES_FORMAT, SCORES_FORMAT_V1):
            raise FormatError(f"format is {fmt!r}, expected {SCORES_FORMAT!r}")
        if fmt == SCORES_FORMAT_V1:
            raw = upgrade_scores_v1(raw)
        return msgspec.convert(raw, type=ReadoutScores)
    except msgspec.DecodeError as exc:
        raise FormatError(f"not an {SCORES_FORMAT} document: {exc}") from exc


_chat_decoder = msgspec.json.Decoder(list[ChatMessage])


def parse_chat(data: str | bytes, *, source: str = "input") -> list[ChatMessage]:
    """A JSON list of ``{"role", "content"}`` objects, non-empty; else one clear error."""
    try:
        messages = _chat_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise FormatError(
            f"--chat {source} must be a JSON list of {{\"role\": ..., \"content\": ...}} messages: {exc}"
        ) from exc
    if not messages:
        raise FormatError(f"--chat {source} holds no messages")
    return messages
