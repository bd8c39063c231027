"""Scale-out on a Ray cluster: the generic layer under ``extract --ray`` and ``validate --ray``.

Ray is an optional extra (``pip install 'amygdala-vllm[ray]'``), imported only
in :mod:`._ray`; this package can be imported without it and says which extra
to install the moment a ``--ray`` path needs it.

Shape: the driver (the process you start) plans the work, connects, and starts
actors that each own one engine (:mod:`.placement` sizes them to the cluster;
the actor classes live with their stage: ``extract/ray_shards.py``,
``extract/ray_executor.py``, ``readout/ray_readout.py``);
:mod:`.pool` hands them one piece at a time and replaces lost ones. Actors
return bytes (safetensors for arrays, msgspec JSON for the rest), and the
driver alone writes files.

Why the driver writes the shards, not the actors: one writer means a shard is
never written twice or half (the driver writes each once, atomically, and
rewrites ``capture.json`` after it, exactly as one process does), a lost actor
can never leave a stray temp file on shared storage, and only the driver needs
the output path (actors need the model; the texts travel with the work). The
cost is moving each shard's bytes to the driver: ``2 x L x H x 4`` bytes per
text (a 256-text shard of 4 layers of a 5120-wide 27B model is 42 MB) against
minutes of GPU prefill for the same shard, so the driver's link is not the
bottleneck until hundreds of engines; past that, write from the actors to
shared storage instead.
"""

from __future__ import annotations

from .placement import ClusterOptions

__all__ = ["ClusterOptions"]
