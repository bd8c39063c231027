"""Stage 2, ``extract``: a dataset dir -> pooled residual activations, captured inside vLLM.

- :mod:`.run`: the fixed shard plan, resume, and the driver that writes every
  shard and ``capture.json`` (:func:`~.run.run_extract`);
- :mod:`.capture`: the engine side of one shard (a capture-mode ``vllm.LLM``
  over prefill-only ``generate`` calls);
- :mod:`.ray_shards` (``--ray``: one engine per Ray actor) and
  :mod:`.ray_executor` (``--distributed-executor-backend ray``: one engine whose
  workers vLLM places on Ray): other sources of the same shards.

The shard file format itself is shared with ``reduce`` and sits at the bottom
(``amygdala_vllm/shards.py``).
"""

from __future__ import annotations

from .run import ExtractOptions, ExtractSummary, parse_layers, run_extract

__all__ = ["ExtractOptions", "ExtractSummary", "parse_layers", "run_extract"]
