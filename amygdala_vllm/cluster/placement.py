"""How many engine actors a cluster holds, and what each one reserves.

One actor owns one engine. On a cluster with GPUs an actor reserves the
engine's GPUs: ``tensor_parallel_size`` of them on one node (vLLM's default
multiprocessing executor inside the actor), or, with vLLM's Ray executor
(``--distributed-executor-backend ray``), a placement group of that many
one-GPU bundles that may span nodes, in which vLLM starts its own workers. On a
CPU-only cluster an actor reserves ``cpus_per_actor`` cores and runs torch on
that many threads (``OMP_NUM_THREADS``, set in the actor before torch loads,
whatever the node's environment says): engines that oversubscribe cores stall
each other's OpenMP barriers (docs/benchmarks.md, "Threading").

The GPU paths follow Ray's and vLLM's documented contracts but were not run
here (no GPU); the CPU path is what the tests run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ClusterError, UsageError

__all__ = ["ClusterOptions", "ActorPlan", "plan_actors"]

@dataclass
class ClusterOptions:
    """Where and how wide a ``--ray`` run goes; the CLI fills it from flags."""

    address: str | None = None  # host:port, "auto", "local"; None: $RAY_ADDRESS or "local"
    actors: int | None = None  # None: as many as the cluster holds
    cpus_per_actor: float = 1.0
    max_restarts: int | None = None  # replacement actors allowed; None: one per actor
    max_attempts: int = 3  # times one piece of work may be lost with its actor
    temp_dir: Path | None = None  # Ray's session dir for a "local" cluster
    #: Test and progress hook: ``(shard index, actor name)`` after each shard is written.
    on_piece: Callable[[int, str], None] | None = None


@dataclass
class ActorPlan:
    """``count`` actors, each made by ``spawn(name)``; ``release(name)`` frees what it reserved."""

    count: int
    spawn: Callable[[str], Any]
    release: Callable[[str], None]
    describe: str


def plan_actors(ray: Any, opts: ClusterOptions, actor_cls: type, *, gpus_per_engine: int,
                ray_executor: bool) -> ActorPlan:
    """Size the run to the cluster and build the actor factory; refuse a run the cluster cannot hold."""
    if opts.cpus_per_actor <= 0:
        raise UsageError(f"--ray-cpus-per-actor must be > 0, got {opts.cpus_per_actor}")
    if opts.actors is not None and opts.actors < 1:
        raise UsageError(f"--ray-actors must be >= 1, got {opts.actors}")
    total = ray.cluster_resources()
    gpus, cpus = float(total.get("GPU", 0)), float(total.get("CPU", 0))
    remote = ray.remote(actor_cls)
    if gpus > 0:
        fits = int(gpus // gpus_per_engine)
        what = f"{gpus_per_engine} GPU(s) + {opts.cpus_per_actor:g} CPU each"
    else:
        if ray_executor:
            # vLLM's own check, made here before any engine is built (FACTS: "current platform cpu
            # does not support ray"); the message says what works instead.
            raise UsageError("vLLM's Ray executor needs GPUs and this Ray cluster has none; on CPUs use "
                             "--distributed-executor-backend mp (tensor parallel inside one machine) "
                             "and --ray for one engine per actor")
        fits = int(cpus // opts.cpus_per_actor)
        what = f"{opts.cpus_per_actor:g} CPU(s) each"
    count = opts.actors if opts.actors is not None else fits
    if count < 1 or count > fits:
        raise ClusterError(f"the Ray cluster ({gpus:g} GPU, {cpus:g} CPU) holds {fits} engine actor(s) of {what}; "
                           f"{count} asked for (--ray-actors, --ray-cpus-per-actor, --tensor-parallel-size)")
    groups: dict[str, Any] = {}

    def spawn(name: str) -> Any:
        common = dict(name=name, num_cpus=opts.cpus_per_actor, max_restarts=0, max_task_retries=0)
        if gpus > 0 and ray_executor:
            pg = ray.util.placement_group([{"GPU": 1, "CPU": 1}] * gpus_per_engine, strategy="PACK")
            groups[name] = pg
            strategy = ray.util.scheduling_strategies.PlacementGroupSchedulingStrategy(
                pg, placement_group_capture_child_tasks=True)
            return remote.options(scheduling_strategy=strategy, **common).remote()
        if gpus > 0:
            return remote.options(num_gpus=gpus_per_engine, **common).remote()
        return remote.options(**common).remote(max(1, math.floor(opts.cpus_per_actor)))

    def release(name: str) -> None:
        pg = groups.pop(name, None)
        if pg is not None:
            ray.util.remove_placement_group(pg)

    return ActorPlan(count=count, spawn=spawn, release=release, describe=f"{count} actor(s), {what}")

