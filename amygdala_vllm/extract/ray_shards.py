"""``extract --ray``: the fixed shard plan as Ray work, one engine per actor, files written by the driver.

A :data:`~amygdala_vllm.extract.run.ShardSource` for :func:`~amygdala_vllm.extract.run.run_extract`:
entering it connects to the cluster and starts the actors (nothing is written
before the connection works); it yields each shard's result as an actor
returns it. ``run_extract`` checks each shard against the plan and writes it
exactly as a one-process run does, so resume, ``capture.json`` and the bytes
are the same, and ``reduce`` needs no merge step.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from ..cluster._ray import connect, require
from ..cluster.actors import failed, reply, reserve_threads, torch_threads
from ..cluster.placement import ClusterOptions, plan_actors
from ..cluster.pool import ActorPool
from ..errors import AmygdalaError
from ..formats import TextRecord
from .capture import CaptureSpec, ShardCapturer, ShardResult
from .run import ProgressFn, ShardSource

__all__ = ["ray_shards", "RunStats", "CaptureActor"]

_TEXTS = msgspec.json.Encoder()
_TEXTS_IN = msgspec.json.Decoder(list[TextRecord])


class CaptureActor:
    """Owns one capture engine; captures the shards the driver hands it, one at a time."""

    def __init__(self, threads: int | None = None) -> None:
        reserve_threads(threads)
        self._capturer: Any = None

    def start(self, spec_json: bytes) -> tuple[bytes, bytes]:
        """Start the engine (the slow part: model load); a failure is returned, not raised."""
        try:
            self._capturer = ShardCapturer(msgspec.json.decode(spec_json, type=CaptureSpec))
        except AmygdalaError as exc:
            return failed(exc)
        return reply(threads=torch_threads()), b""

    def capture(self, index: int, texts_json: bytes) -> tuple[bytes, bytes]:
        """Capture shard ``index`` (its texts in plan order); payload = the shard file's bytes."""
        try:
            res = self._capturer.capture(index, _TEXTS_IN.decode(texts_json))
        except AmygdalaError as exc:
            return failed(exc)
        return reply(tokens=res.tokens, truncated=res.truncated, skipped=res.skipped, num_texts=res.num_texts), res.blob


class RunStats:
    """What the cluster did, for the CLI's summary and the tests: actors, lost shards, replacements."""

    def __init__(self) -> None:
        self.actors = ""
        self.retried = 0
        self.restarts = 0
        self.threads: list[int] = []  # torch threads of each actor's engine, as they became ready


def ray_shards(opts: ClusterOptions, stats: RunStats | None = None,
               announce: Callable[[str], None] | None = None) -> ShardSource:
    """A shard source that runs on Ray actors; ``announce`` hears the sizing line once actors are chosen."""
    require(opts.address)  # no Ray, or nobody at the address: one line, before any work

    @contextlib.contextmanager
    def source(spec: CaptureSpec, work: list[tuple[int, list[TextRecord]]],
               on_batch: ProgressFn | None) -> Iterator[Iterator[ShardResult]]:
        with connect(opts.address, temp_dir=opts.temp_dir) as ray:
            ray_executor = spec.engine.extra.get("distributed_executor_backend") == "ray"
            plan = plan_actors(ray, opts, CaptureActor, gpus_per_engine=spec.engine.ranks, ray_executor=ray_executor)
            size = min(plan.count, len(work))
            if announce:
                announce(f"Ray: {size} of {plan.describe}")
            if stats is not None:
                stats.actors = f"{size} of {plan.describe}"
            pool = ActorPool(ray, plan.spawn, size, (msgspec.json.encode(spec),), prefix=f"amygdala-extract-{_run_id()}",
                             what="shard", max_restarts=opts.max_restarts, max_attempts=opts.max_attempts,
                             release=plan.release)
            with pool:
                yield _results(pool, work, on_batch, opts, stats)

    return source


def _results(pool: ActorPool, work: list[tuple[int, list[TextRecord]]], on_batch: ProgressFn | None,
             opts: ClusterOptions, stats: RunStats | None) -> Iterator[ShardResult]:
    items = [(k, (k, _TEXTS.encode(records))) for k, records in work]
    planned = {k: len(records) for k, records in work}
    for k, reply, blob, actor in pool.map("capture", items):
        yield ShardResult(index=k, blob=blob, num_texts=reply.num_texts, planned=planned[k], tokens=reply.tokens,
                          truncated=reply.truncated, skipped=reply.skipped)
        # Reached once the driver has written shard k (generators resume on the next request).
        if on_batch:
            on_batch(planned[k], reply.tokens)
        if stats is not None:
            stats.retried, stats.restarts = pool.retried, pool.restarts
            stats.threads = [r.threads for r in pool.started]
        if opts.on_piece:
            opts.on_piece(k, actor)


def _run_id() -> str:
    return f"{os.getpid()}-{int(time.time())}"
