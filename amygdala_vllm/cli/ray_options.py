"""The ``--ray`` flags, declared once for every command that can run on a Ray cluster."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

__all__ = ["RayFlag", "RayAddress", "RayActors", "RayCpus", "cluster_options"]

RayFlag = Annotated[bool, typer.Option(
    "--ray", help="Run on a Ray cluster: one engine per Ray actor, work pulled shard by shard, lost actors replaced "
                  "(needs the `ray` extra; docs/scale.md).")]
RayAddress = Annotated[Optional[str], typer.Option(
    "--ray-address", help="Ray head node host:port, 'auto' (the cluster `ray start` runs here) or 'local' (a private "
                          "one on this machine). Default: $RAY_ADDRESS, else 'local'.")]
RayActors = Annotated[Optional[int], typer.Option(
    "--ray-actors", help="Engine actors to start (default: as many as the cluster's GPUs, or CPUs, hold).")]
RayCpus = Annotated[float, typer.Option(
    "--ray-cpus-per-actor", help="CPU cores each actor reserves; on a CPU-only cluster also its torch threads.")]


def cluster_options(address: Optional[str], actors: Optional[int], cpus_per_actor: float):  # -> ClusterOptions
    """Build ``amygdala_vllm.cluster.ClusterOptions`` (imported here: Ray itself is imported only on use)."""
    from ..cluster import ClusterOptions

    return ClusterOptions(address=address, actors=actors, cpus_per_actor=cpus_per_actor)
