"""``validate --ray``: score held-out texts across Ray actors, each with its own readout engine.

An :data:`~amygdala_vllm.validate.run.OpenReadout` for ``run_validate``: the
driver reads the vectors and manifest and sends their bytes to every actor (so
only the model has to be visible on every node), cuts the texts into chunks
of ``batch_size``, and puts the per-text scores back in input order. Each
actor runs the agreement check on its own texts, as the one-process readout does.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ..cluster._ray import connect, require
from ..cluster.actors import failed, reply, reserve_threads, torch_threads
from ..cluster.placement import ClusterOptions, plan_actors
from ..cluster.pool import ActorPool
from ..engine_settings import EngineSettings
from ..errors import AmygdalaError, FormatError, UsageError
from ..models import resolve_model
from ..vectors_file import pair_paths
from ..vllm_ext import rpc
from .scorer import Readout, TextScores

__all__ = ["ray_readout", "ReadoutSpec", "ReadoutActor", "encode_scores", "decode_scores"]


class ReadoutSpec(msgspec.Struct, forbid_unknown_fields=True):
    """How a readout actor starts its engine (``validate --ray``): the driver's settings, model resolved."""

    engine: EngineSettings


class ReadoutActor:
    """Owns one readout engine with the driver's vectors; scores the texts it is handed."""

    def __init__(self, threads: int | None = None) -> None:
        reserve_threads(threads)
        self._readout: Any = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self, spec_json: bytes, vectors: bytes, manifest: bytes) -> tuple[bytes, bytes]:
        """Write the vectors the driver sent to a private temp dir, then start the engine on them.

        Sending the bytes (a few MB even for 200 concepts on a 27B model) means
        the vectors need not sit on shared storage; only the model must.
        """
        spec = msgspec.json.decode(spec_json, type=ReadoutSpec)
        self._dir = tempfile.TemporaryDirectory(prefix="amygdala-readout-")
        vec, man = pair_paths(Path(self._dir.name) / "vectors.safetensors")
        vec.write_bytes(vectors)
        man.write_bytes(manifest)
        try:
            self._readout = Readout(vec, man, engine=spec.engine, check_agreement=True)
        except AmygdalaError as exc:
            return failed(exc)
        return reply(threads=torch_threads()), b""

    def score(self, index: int, texts_json: bytes) -> tuple[bytes, bytes]:
        """Score one chunk of texts; payload = :func:`encode_scores` bytes."""
        texts = msgspec.json.decode(texts_json, type=list[str])
        try:
            scores = self._readout.score_texts(texts)
        except AmygdalaError as exc:
            return failed(exc)
        return reply(num_texts=len(scores)), encode_scores(scores)


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
    t, meta = rpc.unpack(blob, _ScoresMeta, "a readout actor's reply")
    try:
        return [TextScores(token_ids=t[f"{i}.token_ids"].tolist(), tokens=tokens, scores=t[f"{i}.scores"],
                           pooled={name: t[f"{i}.pooled.{name}"] for name in meta.modes[i]},
                           agreement=meta.agreement[i], agreement_scale=meta.agreement_scale[i])
                for i, tokens in enumerate(meta.tokens)]
    except (KeyError, IndexError) as exc:
        raise FormatError(f"a readout actor's reply is malformed: no {exc}") from exc


class _RayReadout:
    def __init__(self, pool: ActorPool, batch_size: int):
        self.pool = pool
        self.batch_size = batch_size
        #: ``run_validate`` streams texts through ``score_texts`` this many at a time: four chunks per actor
        #: keep every actor busy, while the per-token scores held at once stay bounded by the call
        self.texts_per_call = 4 * batch_size * pool.size

    def score_texts(self, texts: list[str], progress: Callable[[int], None] | None = None) -> list[Any]:
        chunks = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        items = [(k, (k, msgspec.json.encode(chunk))) for k, chunk in enumerate(chunks)]
        out: dict[int, list[Any]] = {}
        for k, _reply, blob, _actor in self.pool.map("score", items):
            out[k] = decode_scores(blob)
            if progress:
                progress(len(out[k]))
        return [s for k in range(len(chunks)) for s in out[k]]


def ray_readout(opts: ClusterOptions) -> Callable[..., contextlib.AbstractContextManager]:
    """The opener ``run_validate(open_readout=...)`` takes: same signature as the one-process one."""
    require(opts.address)  # no Ray, or nobody at the address: one line, before any work

    @contextlib.contextmanager
    def open_readout(vectors: Path, manifest: Path, engine: EngineSettings) -> Iterator[_RayReadout]:
        if engine.model is None:
            raise UsageError("a readout on Ray needs the model (the manifest's, or --model)")
        spec = ReadoutSpec(engine=msgspec.structs.replace(engine, model=resolve_model(engine.model)))
        start = (msgspec.json.encode(spec), Path(vectors).read_bytes(), Path(manifest).read_bytes())
        with connect(opts.address, temp_dir=opts.temp_dir) as ray:
            plan = plan_actors(ray, opts, ReadoutActor, gpus_per_engine=engine.ranks, ray_executor=False)
            pool = ActorPool(ray, plan.spawn, plan.count, start, prefix=f"amygdala-readout-{id(spec)}", what="chunk",
                             max_restarts=opts.max_restarts, max_attempts=opts.max_attempts, release=plan.release)
            with pool:
                yield _RayReadout(pool, engine.batch_size)

    return open_readout
