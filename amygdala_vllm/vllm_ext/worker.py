"""The worker extension vLLM mixes into its worker (``worker_extension_cls``).

Called from the driver by name through ``LLM.collective_rpc("amygdala_...")``.
Every method is prefixed ``amygdala_`` (vLLM refuses names that clash with the
worker's own). Results cross the process boundary as plain types or as
safetensors bytes, never pickle: in multiprocess mode vLLM would only decode
tensors with ``VLLM_ALLOW_INSECURE_SERIALIZATION``, which we do not use.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from safetensors.torch import save as save_tensors

from . import probes
from .hooks import LayerHooks
from .layers import resolve_decoder_layers
from .pooling import PooledAccumulator

__all__ = ["AmygdalaWorkerExtension"]


class AmygdalaWorkerExtension:
    """Capture mode of the readout machinery, installed per worker on request."""

    _amygdala_hooks: LayerHooks | None = None
    _amygdala_acc: PooledAccumulator | None = None
    _amygdala_layers: list[int] = []

    def amygdala_ping(self) -> str:
        """Prove the extension is loaded in this worker; returns the vLLM version."""
        return probes.vllm_version()

    def amygdala_model_info(self) -> dict[str, Any]:
        """Decoder shape as this worker sees it (layer count, slice, hidden size)."""
        runner = probes.model_runner(self)
        decoder = resolve_decoder_layers(probes.runner_model(runner))
        return {
            "num_layers": decoder.total,
            "start_layer": decoder.start,
            "end_layer": decoder.end,
            "layers_path": decoder.path,
            "hidden_size": int(runner.model_config.get_hidden_size()),
            "architecture": type(probes.runner_model(runner)).__name__,
            "tp_rank": probes.tensor_parallel_rank(),
        }

    def amygdala_capture_start(self, layers: list[int], skip_first_tokens: int) -> None:
        """Hook ``layers`` and start pooling every prompt this worker runs."""
        self.amygdala_capture_stop()
        runner = probes.model_runner(self)
        decoder = resolve_decoder_layers(probes.runner_model(runner))
        bad = [i for i in layers if not 0 <= i < decoder.total]
        if bad:
            raise ValueError(f"layers {bad} out of range for a {decoder.total}-layer decoder")
        hidden = int(runner.model_config.get_hidden_size())
        owned = [i for i in layers if decoder.owns(i)]
        self._amygdala_layers = owned
        self._amygdala_acc = PooledAccumulator(len(owned), hidden, skip_first_tokens)
        # Hook positions index into the owned list, so pass only owned layers.
        self._amygdala_hooks = LayerHooks(runner, decoder, owned, self._amygdala_acc)

    def amygdala_capture_drain(self) -> bytes:
        """Pooled activations of every request seen since the last drain, as safetensors bytes.

        Keys: ``num_tokens`` int32 [n], ``rows_seen`` int32 [n], ``mean``/``last``
        float32 [n, L_rank, H]; metadata ``req_ids`` and ``layers`` (JSON). Only
        tensor-parallel rank 0 reports (the residual stream is replicated across
        TP ranks after the all-reduce); other ranks return empty bytes.
        """
        acc = self._amygdala_acc
        if acc is None:
            raise RuntimeError("capture is not active on this worker; call amygdala_capture_start first")
        req_ids = acc.pending()
        pooled = [acc.pop(r) for r in req_ids]
        if probes.tensor_parallel_rank() != 0:
            return b""
        L, H = acc.num_layers, acc.hidden_size
        tensors = {
            "num_tokens": torch.tensor([p.num_tokens for p in pooled], dtype=torch.int32),
            "rows_seen": torch.tensor([p.rows_seen for p in pooled], dtype=torch.int32),
            "mean": torch.stack([p.mean for p in pooled]) if pooled else torch.zeros(0, L, H),
            "last": torch.stack([p.last for p in pooled]) if pooled else torch.zeros(0, L, H),
        }
        meta = {"req_ids": json.dumps(req_ids), "layers": json.dumps(self._amygdala_layers)}
        return save_tensors(tensors, metadata=meta)

    def amygdala_capture_stop(self) -> None:
        """Remove capture hooks and drop any undrained data."""
        if self._amygdala_hooks is not None:
            self._amygdala_hooks.remove()
        self._amygdala_hooks = None
        self._amygdala_acc = None
