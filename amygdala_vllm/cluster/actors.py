"""What runs inside a Ray actor: one engine each, for capture (extract) or readout (validate).

These are plain classes; :mod:`._ray` wraps them with ``ray.remote`` at run
time, so this module (like everything but ``_ray.py``) never imports Ray.
Arguments and replies are bytes and plain ints only: specs and texts travel as
msgspec JSON, activations and scores as safetensors bytes (``vllm_ext/rpc.py``'s
frame, which imports neither vLLM nor torch), so no object of ours
(and no tensor) is pickled on the way. Every method answers ``(status, payload)``
where ``status`` is a :class:`Reply`; a deliberate error (an
:class:`~amygdala_vllm.errors.AmygdalaError`) comes back as its type name and
message, so the driver can stop with the actor's own one-line reason.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ..errors import AmygdalaError, FormatError
from ..formats import TextRecord
from ..vectors_file import pair_paths
from ..vllm_ext import rpc

__all__ = ["Reply", "ReadoutSpec", "CaptureActor", "ReadoutActor", "encode_scores", "decode_scores"]


class Reply(msgspec.Struct, forbid_unknown_fields=True):
    """Status of one actor call: ``error_type`` empty when it worked."""

    node: str
    pid: int
    error_type: str = ""
    message: str = ""
    tokens: int = 0
    truncated: list[int] = []
    skipped: list[int] = []
    num_texts: int = 0
    threads: int = 0  # torch threads of the actor's engine (reported on start)


class ReadoutSpec(msgspec.Struct, forbid_unknown_fields=True):
    """How a readout actor starts its engine (``validate --ray``)."""

    model: str
    dtype: str
    max_model_len: int
    kv_cache_gb: float
    batch_size: int
    enforce_eager: bool


def _reply(**kw: Any) -> bytes:
    return msgspec.json.encode(Reply(node=socket.gethostname(), pid=os.getpid(), **kw))


def _failed(exc: AmygdalaError) -> tuple[bytes, bytes]:
    return _reply(error_type=type(exc).__name__, message=str(exc)), b""


_TEXTS = msgspec.json.Decoder(list[TextRecord])


def _threads(threads: int | None) -> None:
    """On a CPU cluster: torch threads = the cores this actor reserved (before torch is imported)."""
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


class CaptureActor:
    """Owns one capture engine; captures the shards the driver hands it, one at a time."""

    def __init__(self, threads: int | None = None) -> None:
        _threads(threads)
        self._capturer: Any = None

    def start(self, spec_json: bytes) -> tuple[bytes, bytes]:
        """Start the engine (the slow part: model load); a failure is returned, not raised."""
        from ..shard_capture import CaptureSpec, ShardCapturer

        try:
            self._capturer = ShardCapturer(msgspec.json.decode(spec_json, type=CaptureSpec))
        except AmygdalaError as exc:
            return _failed(exc)
        return _reply(threads=_torch_threads()), b""

    def capture(self, index: int, texts_json: bytes) -> tuple[bytes, bytes]:
        """Capture shard ``index`` (its texts in plan order); payload = the shard file's bytes."""
        try:
            res = self._capturer.capture(index, _TEXTS.decode(texts_json))
        except AmygdalaError as exc:
            return _failed(exc)
        return _reply(tokens=res.tokens, truncated=res.truncated, skipped=res.skipped, num_texts=res.num_texts), res.blob


class ReadoutActor:
    """Owns one readout engine with the driver's vectors; scores the texts it is handed."""

    def __init__(self, threads: int | None = None) -> None:
        _threads(threads)
        self._readout: Any = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self, spec_json: bytes, vectors: bytes, manifest: bytes) -> tuple[bytes, bytes]:
        """Write the vectors the driver sent to a private temp dir, then start the engine on them.

        Sending the bytes (a few MB even for 200 concepts on a 27B model) means
        the vectors need not sit on shared storage; only the model must.
        """
        from ..readout import Readout

        spec = msgspec.json.decode(spec_json, type=ReadoutSpec)
        self._dir = tempfile.TemporaryDirectory(prefix="amygdala-readout-")
        vec, man = pair_paths(Path(self._dir.name) / "vectors.safetensors")
        vec.write_bytes(vectors)
        man.write_bytes(manifest)
        try:
            self._readout = Readout(spec.model, vec, man, dtype=spec.dtype, max_model_len=spec.max_model_len,
                                    kv_cache_gb=spec.kv_cache_gb, batch_size=spec.batch_size,
                                    check_agreement=True, enforce_eager=spec.enforce_eager)
        except AmygdalaError as exc:
            return _failed(exc)
        return _reply(threads=_torch_threads()), b""

    def score(self, index: int, texts_json: bytes) -> tuple[bytes, bytes]:
        """Score one chunk of texts; payload = :func:`encode_scores` bytes."""
        texts = msgspec.json.decode(texts_json, type=list[str])
        try:
            scores = self._readout.score_texts(texts)
        except AmygdalaError as exc:
            return _failed(exc)
        return _reply(num_texts=len(scores)), encode_scores(scores)


class _ScoresMeta(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    tokens: list[list[str]]
    agreement: list[float | None]
    agreement_scale: list[float | None]
    modes: list[list[str]]  # per text, its pooling modes in order (safetensors sorts its keys)


def encode_scores(scores: list[Any]) -> bytes:
    """``readout.TextScores`` as one reply frame (:func:`~amygdala_vllm.vllm_ext.rpc.pack`): ``{i}.token_ids``,
    ``{i}.scores`` and ``{i}.pooled.{mode}`` per text, the rest in the metadata."""
    tensors: dict[str, np.ndarray] = {}
    for i, s in enumerate(scores):
        tensors[f"{i}.token_ids"] = np.asarray(s.token_ids, np.int64)
        tensors[f"{i}.scores"] = np.asarray(s.scores, np.float32)
        for name, values in s.pooled.items():
            tensors[f"{i}.pooled.{name}"] = np.asarray(values, np.float32)
    meta = _ScoresMeta(version=rpc.REPLY_VERSION, tokens=[list(s.tokens) for s in scores],
                       agreement=[s.agreement for s in scores], agreement_scale=[s.agreement_scale for s in scores],
                       modes=[list(s.pooled) for s in scores])
    return rpc.pack(tensors, meta)


def decode_scores(blob: bytes) -> list[Any]:
    """Inverse of :func:`encode_scores`: ``readout.TextScores`` in the original order."""
    from ..readout import TextScores

    t, meta = rpc.unpack(blob, _ScoresMeta, "a readout actor's reply")
    try:
        return [TextScores(token_ids=t[f"{i}.token_ids"].tolist(), tokens=tokens, scores=t[f"{i}.scores"],
                           pooled={name: t[f"{i}.pooled.{name}"] for name in meta.modes[i]},
                           agreement=meta.agreement[i], agreement_scale=meta.agreement_scale[i])
                for i, tokens in enumerate(meta.tokens)]
    except (KeyError, IndexError) as exc:
        raise FormatError(f"a readout actor's reply is malformed: no {exc}") from exc
