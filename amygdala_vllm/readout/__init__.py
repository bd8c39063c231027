"""The readout stage: per-token scores of any text, from vectors loaded into vLLM's workers.

- :mod:`.scorer`: :class:`~.scorer.Readout`, a vLLM engine in readout mode
  (the vectors reach the workers through ``VLLM_READOUT_*``, as in serving);
- :mod:`.render`: calibrated z, the terminal table and strip, the JSON
  document and the HTML heat map (pure numpy, no engine);
- :mod:`.ray_readout`: the same scores from Ray actors (``validate --ray``).
"""

from __future__ import annotations

from .scorer import Readout, TextScores

__all__ = ["Readout", "TextScores"]
