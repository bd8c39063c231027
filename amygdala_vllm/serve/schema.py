"""The ``amygdala`` object each response choice carries: defined once, as msgspec Structs.

Written into the JSON of ``/v1/chat/completions`` and ``/v1/completions``
choices (``choices[i].amygdala``) when the request opted in through
``vllm_xargs``; documented field by field in ``docs/serve.md``.

Index order everywhere: ``[token][layer][concept]`` with ``layers`` and
``concepts`` as listed in the object. ``z`` is the calibrated score
``(raw - (pos_mean + neg_mean) / 2) / pooled_std`` from the manifest (as
``amygdala-vllm readout`` shows it); where a (concept, layer) has no
calibration ``z`` equals ``raw`` and ``calibrated[layer][concept]`` is false.

The last sampled token of a completion is never forwarded through the model
(generation stops after sampling it), so it has no residual stream and no
score: ``completion`` covers every completion token but the last.
"""

from __future__ import annotations

import msgspec

__all__ = ["TokenScores", "Pooled", "ChoiceScores", "encode_scores"]


class TokenScores(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Scores of a run of tokens (the prompt, or completion tokens)."""

    positions: list[int]
    """Position of each scored token in the sequence (prompt starts at 0)."""
    token_ids: list[int]
    z: list[list[list[float]] | None] | None = None
    """``[token][layer][concept]`` calibrated scores; absent when ``amygdala_tokens`` is 0; ``null`` for a
    position before ``skip_first_tokens`` (not scored: left out of training and calibration; ``raw`` has it)."""
    raw: list[list[list[float]]] | None = None
    """``[token][layer][concept]`` dot products ``activation . vector``; only with ``amygdala_raw: 1``."""


class Pooled(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Per-sequence summary over every scored token (prompt and completion), keyed by pooling mode.

    One entry per mode of ``pooling_modes.MODES``, in its order: the per-token
    raw series reduced by that mode (``mean``: positions >= ``skip_first_tokens``;
    ``last``: the last scored token, i.e. the second-to-last completion token;
    ``max``: the largest score at positions >= ``skip_first_tokens``, which is
    ``max_t(row_t . v)``, not ``max(rows) . v``), then calibrated with the
    pooled calibration.
    """

    num_tokens: int
    z: dict[str, list[list[float]]]
    """mode -> ``[layer][concept]`` calibrated pooled scores."""
    raw: dict[str, list[list[float]]] | None = None
    """mode -> ``[layer][concept]`` pooled dot products; only with ``amygdala_raw: 1``."""


class ChoiceScores(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``choices[i].amygdala``: in a full response everything; in a stream chunk the new tokens only."""

    concepts: list[str]
    layers: list[int]
    calibrated: list[list[bool]]
    """``[layer][concept]``: true where ``z`` is calibrated (else ``z`` equals ``raw``)."""
    prompt: TokenScores | None = None
    """Prompt tokens scored (in a stream: those newly scored since the previous chunk)."""
    completion: TokenScores | None = None
    """Completion tokens scored; never the last sampled token (it is not forwarded)."""
    pooled: Pooled | None = None
    """Present in a full response and on the stream chunk that finishes the choice."""
    skip_first_tokens: int = 1



def encode_scores(obj: ChoiceScores) -> dict:
    """The object as plain JSON-ready builtins (to splice into vLLM's response JSON)."""
    return msgspec.to_builtins(obj)
