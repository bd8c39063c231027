"""``--distributed-executor-backend ray`` without ``--ray``: one engine whose TP/PP workers vLLM places on Ray.

This process connects to the cluster first (``connect``: no dashboard, our
temp dir, shut down afterwards), so vLLM finds Ray initialised and uses it
instead of starting a default one of its own. Capture needs nothing more:
with tensor parallelism the residual stream is replicated and TP rank 0
reports; with pipeline parallelism each stage hooks its own layers.

On CPU, vLLM 0.32's Ray executor does not run: ``LLM(tensor_parallel_size=2,
distributed_executor_backend="ray")`` raises "current platform cpu does not
support ray" after its config set-up, and with the multiprocessing engine core
(the default at TP > 1) that surfaces as "Engine core initialization failed"
plus a traceback. So the same condition vLLM checks (its platform's Ray device
key) is checked here first and stops with one line that says what works.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..cluster._ray import connect, require
from ..errors import UsageError
from ..formats import TextRecord
from .capture import CaptureSpec, ShardResult
from .run import ProgressFn, ShardSource, local_shards

__all__ = ["check_ray_executor", "ray_executor_shards"]


def check_ray_executor() -> None:
    """Refuse vLLM's Ray executor where vLLM itself cannot run it (CPU builds)."""
    from ..vllm_ext import probes

    if not probes.ray_device_key():
        raise UsageError(
            f"vLLM {probes.vllm_version()} cannot run its Ray executor here (vLLM: 'current platform cpu does not "
            "support ray'; it needs GPUs); on CPU leave --distributed-executor-backend at mp for tensor parallel "
            "inside one machine, and use --ray for one engine per Ray actor"
        )


def ray_executor_shards(address: str | None = None, temp_dir: Path | None = None, llm: Any = None) -> ShardSource:
    """A one-engine shard source whose engine runs on vLLM's Ray executor."""
    require(address)  # no Ray, or nobody at the address: one line, before any work

    @contextlib.contextmanager
    def source(spec: CaptureSpec, work: list[tuple[int, list[TextRecord]]],
               on_batch: ProgressFn | None) -> Iterator[Iterator[ShardResult]]:
        check_ray_executor()
        with connect(address, temp_dir=temp_dir), local_shards(llm)(spec, work, on_batch) as results:
            yield results

    return source
