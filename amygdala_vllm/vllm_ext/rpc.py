"""Calls into the worker extension and the one codec of their replies.

Calls: ``llm.collective_rpc`` with the worker's failures turned into this project's errors.

Worker methods raise plain ``ValueError``/``RuntimeError`` for misuse (layers
out of range, drain before start) and the project's own errors for bad inputs
(vectors for another model). How they come back depends on vLLM's executor
(read in vLLM 0.32, ``v1/executor/uniproc_executor.py`` and
``multiproc_executor.py``, ``v1/engine/core.py``):
- one process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): the worker's exception
  object itself, type and message intact;
- separate processes: a bare ``Exception``/``RuntimeError`` whose text wraps the
  worker's message, ``... Worker failed with error '<message>', please check the
  stack trace above ...``; the type is lost on the way.
Here every such failure becomes an :class:`~amygdala_vllm.errors.AmygdalaError`
(the project's own passes through untouched; anything else becomes the error
type the caller names), with the worker's message and the method named, so the
CLI prints one line instead of a traceback.

Codec: every reply that carries arrays (capture, readout and serving drains,
the Ray actors' scored texts) is one safetensors frame spelled here once
(:func:`pack`/:func:`unpack` and the typed encoders below), read by the
driver, the API server and the cluster driver alike. Nothing here imports vLLM
or torch, so the Ray actors and ``serve/`` use it without pulling in an engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from ..errors import AmygdalaError, CaptureError, FormatError
from ..vectors_file import safetensors_metadata

__all__ = ["call", "worker_message", "TAG_KEY", "REPLY_VERSION", "pack", "unpack", "RequestScores", "ScoresReply",
           "CaptureReply", "encode_scores", "decode_scores", "encode_capture", "decode_capture", "replies"]

_WRAPPED = re.compile(r"Worker failed with error '(?P<msg>.*)', please check the stack trace", re.DOTALL)
_UTILITY = "Call to collective_rpc method failed: "


def worker_message(exc: BaseException) -> str:
    """The worker's own message inside whatever vLLM wrapped around it."""
    text = str(exc)
    m = _WRAPPED.search(text)
    if m:
        return m.group("msg")
    return text.removeprefix(_UTILITY) or type(exc).__name__


def call(llm: Any, method: str, *args: Any, error: type[AmygdalaError] = CaptureError) -> list[Any]:
    """``llm.collective_rpc(method, args=args)``; a worker failure raises ``error`` (or the worker's own type)."""
    try:
        return llm.collective_rpc(method, args=args)
    except AmygdalaError:
        raise
    except Exception as exc:  # vLLM re-raises worker failures as Exception/RuntimeError/ValueError
        raise error(f"{method} failed on a vLLM worker: {worker_message(exc)}") from exc


# ------------------------------------------------------------------ codec
#
# Every reply that carries arrays (the drains of capture, readout and serving,
# and the Ray actors' scored texts) is one safetensors frame: the arrays, plus
# one msgspec Struct as JSON under the metadata key ``amygdala``. Both ends
# use numpy (worker tensors are on the host when encoded), so this module
# imports neither vLLM nor torch and ``cluster/`` can use it.

REPLY_VERSION = 1
_META = "amygdala"
M = TypeVar("M", bound=msgspec.Struct)

TAG_KEY = "amygdala_tag"
"""The ``vllm_xargs`` key the API server sets (never a client): the tag the worker files a request's scores under."""


def pack(arrays: dict[str, np.ndarray], meta: msgspec.Struct) -> bytes:
    """One reply frame: ``arrays`` as safetensors with ``meta`` as JSON in its metadata."""
    tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return save_arrays(tensors, metadata={_META: msgspec.json.encode(meta).decode()})


def unpack(blob: bytes, meta_type: type[M], where: str) -> tuple[dict[str, np.ndarray], M]:
    """Inverse of :func:`pack`; anything else raises :class:`FormatError` naming ``where``."""
    try:
        meta = msgspec.json.decode(safetensors_metadata(blob, where)[_META], type=meta_type)
        arrays = load_arrays(bytes(blob))
    except FormatError:
        raise
    except (KeyError, msgspec.DecodeError, msgspec.ValidationError, SafetensorError) as exc:
        raise FormatError(f"{where} is malformed: {type(exc).__name__}: {exc}") from exc
    version = getattr(meta, "version", REPLY_VERSION)
    if version != REPLY_VERSION:
        raise FormatError(f"{where} has reply version {version}; this driver reads {REPLY_VERSION} "
                          "(worker and driver must run the same amygdala-vllm)")
    return arrays, meta


def _array(arrays: dict[str, np.ndarray], key: str, where: str) -> np.ndarray:
    if key not in arrays:
        raise FormatError(f"{where} is malformed: no array {key!r}")
    return arrays[key]


@dataclass(frozen=True)
class RequestScores:
    """Per-token scores of one engine request: each position once (the score computed last), ascending."""

    req_id: str
    tag: str  # serving: the tag the API server filed the request under; readout: ""
    prompt_len: int
    positions: np.ndarray  # int64 [T]
    token_ids: np.ndarray  # int64 [T], the token the model was fed at each position
    scores: np.ndarray  # float32 [T, L, E] (this worker's layers, manifest concept order)


@dataclass(frozen=True)
class ScoresReply:
    """One worker's scores drain (readout or serving): its layers and the requests drained."""

    layers: list[int]
    requests: list[RequestScores]


@dataclass(frozen=True)
class CaptureReply:
    """One worker's capture drain: per request its prompt length, rows seen and pooled rows per mode."""

    layers: list[int]
    req_ids: list[str]
    num_tokens: np.ndarray  # int [n]
    rows_seen: np.ndarray  # int [n]
    pooled: dict[str, np.ndarray]  # mode -> float32 [n, L, H]


class _Scored(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    req_id: str
    tag: str
    prompt_len: int


class _ScoresMeta(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    layers: list[int]
    requests: list[_Scored]


class _CaptureMeta(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    layers: list[int]
    req_ids: list[str]
    modes: list[str]


def encode_scores(reply: ScoresReply) -> bytes:
    """A scores drain as bytes: ``r{k}.positions``/``.token_ids``/``.scores`` for the k-th request."""
    arrays: dict[str, np.ndarray] = {}
    for k, r in enumerate(reply.requests):
        arrays[f"r{k}.positions"] = np.asarray(r.positions, np.int64)
        arrays[f"r{k}.token_ids"] = np.asarray(r.token_ids, np.int64)
        arrays[f"r{k}.scores"] = np.asarray(r.scores, np.float32)
    meta = _ScoresMeta(version=REPLY_VERSION, layers=list(reply.layers),
                       requests=[_Scored(r.req_id, r.tag, int(r.prompt_len)) for r in reply.requests])
    return pack(arrays, meta)


def decode_scores(blob: bytes, where: str = "a worker's scores reply") -> ScoresReply:
    """Inverse of :func:`encode_scores`."""
    arrays, meta = unpack(blob, _ScoresMeta, where)
    out = []
    for k, r in enumerate(meta.requests):
        pos, ids, sc = (_array(arrays, f"r{k}.{name}", where) for name in ("positions", "token_ids", "scores"))
        if not len(pos) == len(ids) == len(sc):
            raise FormatError(f"{where} is malformed: request {k} has {len(pos)} positions, {len(ids)} token ids "
                              f"and {len(sc)} score rows")
        out.append(RequestScores(req_id=r.req_id, tag=r.tag, prompt_len=r.prompt_len, positions=pos, token_ids=ids,
                                 scores=sc))
    return ScoresReply(layers=list(meta.layers), requests=out)


def encode_capture(reply: CaptureReply) -> bytes:
    """A capture drain as bytes: ``num_tokens``, ``rows_seen`` [n] and one ``pooled.{mode}`` [n, L, H] per mode."""
    arrays = {"num_tokens": np.asarray(reply.num_tokens, np.int64), "rows_seen": np.asarray(reply.rows_seen, np.int64)}
    arrays.update({f"pooled.{mode}": np.asarray(v, np.float32) for mode, v in reply.pooled.items()})
    meta = _CaptureMeta(version=REPLY_VERSION, layers=list(reply.layers), req_ids=list(reply.req_ids),
                        modes=list(reply.pooled))
    return pack(arrays, meta)


def decode_capture(blob: bytes, where: str = "a worker's capture reply") -> CaptureReply:
    """Inverse of :func:`encode_capture`."""
    arrays, meta = unpack(blob, _CaptureMeta, where)
    n = len(meta.req_ids)
    out = CaptureReply(layers=list(meta.layers), req_ids=list(meta.req_ids),
                       num_tokens=_array(arrays, "num_tokens", where), rows_seen=_array(arrays, "rows_seen", where),
                       pooled={mode: _array(arrays, f"pooled.{mode}", where) for mode in meta.modes})
    if any(len(a) != n for a in (out.num_tokens, out.rows_seen, *out.pooled.values())):
        raise FormatError(f"{where} is malformed: arrays do not hold one row per request ({n})")
    return out


def replies(blobs: list[Any]) -> list[bytes]:
    """The non-empty replies of a collective call (ranks that do not report answer empty bytes)."""
    return [bytes(b) for b in blobs if b]
