"""The worker extension ``amygdala-vllm serve`` hands vLLM (``--worker-extension-cls``).

It is the readout extension plus three RPCs the API server's endpoint plugin
calls through ``engine_client.collective_rpc``: start scoring opted-in
requests, drain their scores (batched: one call for every waiting request),
and report what is held. Scores cross the process boundary as safetensors
bytes (no pickle), like every other RPC of this package.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from safetensors.torch import save as save_tensors

from . import probes
from .runners import runner_view
from .serve_scores import ServeScores
from .worker import AmygdalaWorkerExtension

__all__ = ["AmygdalaServeExtension"]


class AmygdalaServeExtension(AmygdalaWorkerExtension):
    """Readout for served requests that opt in through ``vllm_xargs``."""

    _amygdala_serve: ServeScores | None = None
    _amygdala_serve_info: tuple[tuple[str, str], dict[str, Any]] | None = None

    def amygdala_serve_start(self, vectors_path: str, manifest_path: str) -> dict[str, Any]:
        """Load and check the vectors against this model (as ``readout`` does); then score opted-in requests.

        Idempotent for the same files: with ``--api-server-count`` > 1 every API
        server process starts readout, and a restart must not drop held scores.
        """
        if self._amygdala_serve_info is not None and self._amygdala_serve_info[0] == (vectors_path, manifest_path):
            return dict(self._amygdala_serve_info[1])
        info = self.amygdala_readout_start(vectors_path, manifest_path)
        fan = self._amygdala_fanout
        assert fan is not None and fan.readout is not None
        scores = ServeScores(runner_view(self), list(fan.readout.vectors))
        fan.readout = scores
        self._amygdala_serve = scores
        info.update(self.amygdala_model_info())
        self._amygdala_serve_info = ((vectors_path, manifest_path), dict(info))
        return info

    def _amygdala_scores(self) -> ServeScores:
        if self._amygdala_serve is None:
            raise RuntimeError("serving readout is not active on this worker; call amygdala_serve_start first")
        return self._amygdala_serve

    def amygdala_serve_drain(self, tags: list[str], discard: list[str]) -> bytes:
        """Scores held for requests filed under ``tags`` (released); ``discard``-ed tags are dropped for good.

        Keys ``r{k}.positions`` / ``r{k}.token_ids`` int64 [T] and ``r{k}.scores``
        float32 [T, L, E] (manifest layer and concept order) for the k-th entry of
        metadata ``entries`` (JSON ``[[req_id, tag, prompt_len], ...]``). Pieces are
        in the order they were computed; a position may repeat after preemption.
        TP ranks other than 0 return empty bytes.
        """
        drained = self._amygdala_scores().drain(set(tags), set(discard))
        if probes.tensor_parallel_rank() != 0:
            return b""
        tensors: dict[str, torch.Tensor] = {}
        entries = []
        for k, (req_id, held) in enumerate(drained):
            entries.append([req_id, held.tag, held.prompt_len])
            tensors[f"r{k}.positions"] = torch.cat([p for p, _, _ in held.pieces]).contiguous()
            tensors[f"r{k}.token_ids"] = torch.cat([t for _, t, _ in held.pieces]).contiguous()
            tensors[f"r{k}.scores"] = torch.cat([s for _, _, s in held.pieces]).contiguous()
        return save_tensors(tensors, metadata={"entries": json.dumps(entries)})

    def amygdala_serve_stats(self) -> dict[str, int]:
        """Requests and rows of scores this worker holds now (0 and 0 when everything was drained)."""
        return self._amygdala_scores().stats()
