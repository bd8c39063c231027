"""``validate --ray``: score held-out texts across Ray actors, each with its own readout engine.

An :data:`~amygdala_vllm.validate.run.OpenReadout` for ``run_validate``: the
driver reads the vectors and manifest and sends their bytes to every actor (so
only the model has to be visible on every node), cuts the texts into chunks
of ``batch_size``, and puts the per-text scores back in input order. Each
actor runs the agreement check on its own texts, as the one-process readout does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from ..models import resolve_model
from ._ray import connect, require
from .actors import ReadoutActor, ReadoutSpec, decode_scores
from .placement import ClusterOptions, plan_actors
from .pool import ActorPool

__all__ = ["ray_readout"]


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
    def open_readout(model: str, vectors: Path, manifest: Path, *, dtype: str, max_model_len: int,
                     kv_cache_gb: float, batch_size: int, enforce_eager: bool = True) -> Iterator[_RayReadout]:
        spec = ReadoutSpec(model=resolve_model(model), dtype=dtype, max_model_len=max_model_len,
                           kv_cache_gb=kv_cache_gb, batch_size=batch_size, enforce_eager=enforce_eager)
        start = (msgspec.json.encode(spec), Path(vectors).read_bytes(), Path(manifest).read_bytes())
        with connect(opts.address, temp_dir=opts.temp_dir) as ray:
            plan = plan_actors(ray, opts, ReadoutActor, gpus_per_engine=1, ray_executor=False)
            pool = ActorPool(ray, plan.spawn, plan.count, start, prefix=f"amygdala-readout-{id(spec)}", what="chunk",
                             max_restarts=opts.max_restarts, max_attempts=opts.max_attempts, release=plan.release)
            with pool:
                yield _RayReadout(pool, batch_size)

    return open_readout
