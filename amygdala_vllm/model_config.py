"""Read a model's decoder shape from its config before any engine starts.

Checking layer indices against the config costs milliseconds; finding out after
vLLM spent a minute loading a 27B checkpoint costs a minute. Multimodal
wrappers (Qwen3.5's ``...ForConditionalGeneration``) keep the decoder's numbers
under ``text_config``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError

__all__ = ["DecoderShape", "read_decoder_shape", "MAX_MODEL_LEN_CAP", "read_context_limit", "resolve_max_model_len"]

_DECODER_SUFFIXES = ("ForCausalLM", "ForConditionalGeneration", "LMHeadModel")


@dataclass(frozen=True)
class DecoderShape:
    """Decoder layer count, hidden size and architecture name of a model."""

    num_layers: int
    hidden_size: int
    architecture: str


def _load_config(model: str) -> dict:
    path = Path(model)
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.is_file():
            raise ModelError(f"{model} has no config.json; is it a Hugging Face model folder?")
        try:
            return json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read {cfg}: {exc}") from exc
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model).to_dict()
    except Exception as exc:  # transformers raises many types for a missing/offline model
        raise ModelError(f"cannot find model {model!r} locally or in the Hugging Face cache: {exc}") from exc


def read_decoder_shape(model: str) -> DecoderShape:
    """Shape of the decoder; refuses models that are not decoder-only LMs."""
    cfg = _load_config(model)
    archs = cfg.get("architectures") or []
    arch = archs[0] if archs else cfg.get("model_type", "?")
    if archs and not any(a.endswith(_DECODER_SUFFIXES) for a in archs):
        raise ModelError(f"{model} is a {arch}, not a decoder language model (…ForCausalLM)")
    text = cfg.get("text_config") or cfg
    try:
        return DecoderShape(int(text["num_hidden_layers"]), int(text["hidden_size"]), str(arch))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{model}: config lacks num_hidden_layers/hidden_size ({exc})") from exc


#: ``--max-model-len`` when none is given: the model's own limit, but at most this. The
#: KV cache and per-request buffers scale with it, and texts for readout vectors are short.
MAX_MODEL_LEN_CAP = 4096

# Config keys that bound a model's context, as vLLM reads them (it takes the smallest present).
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                 "max_sequence_length", "max_seq_length", "seq_len")


def read_context_limit(model: str) -> int | None:
    """The model's context limit from its config (smallest of the keys vLLM reads), or None if it names none."""
    cfg = _load_config(model)
    text = cfg.get("text_config") or cfg
    found = [int(text[k]) for k in _CONTEXT_KEYS if isinstance(text.get(k), int) and text[k] > 0]
    return min(found) if found else None


def resolve_max_model_len(model: str, requested: int | None) -> int:
    """``requested``, or the model's limit capped at :data:`MAX_MODEL_LEN_CAP`; never above the model's.

    A fixed default (2048) broke models whose context is shorter (1024): vLLM
    refuses a ``max_model_len`` over the model's before loading anything.
    """
    limit = read_context_limit(model)
    if requested is None:
        return min(limit, MAX_MODEL_LEN_CAP) if limit is not None else MAX_MODEL_LEN_CAP
    if requested < 2:
        raise ModelError(f"--max-model-len must be at least 2, got {requested}")
    if limit is not None and requested > limit:
        raise ModelError(f"--max-model-len {requested} is over {model}'s context of {limit} tokens")
    return requested
