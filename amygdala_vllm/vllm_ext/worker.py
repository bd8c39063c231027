"""The worker extension vLLM mixes into its worker (``worker_extension_cls``).

Called from the driver by name through ``LLM.collective_rpc("amygdala_...")``.
Every method is prefixed ``amygdala_`` (vLLM refuses names that clash with the
worker's own). Results cross the process boundary as plain types or as
safetensors bytes spelled by :mod:`.rpc`'s codec, never pickle: in multiprocess
mode vLLM would only decode tensors with ``VLLM_ALLOW_INSECURE_SERIALIZATION``,
which we do not use.

One set of hooks serves both modes: capture (pooled activations, for
``extract``) and readout (per-token projections, for ``readout``/``validate``).
Both may run in the same pass on the same layers, which is how ``validate``
checks that runtime projections equal offline dot products.

Under torch.compile the per-layer hooks cannot fire; an engine started with tap
layers (``plugin.py``) carries compile-safe taps in its graph, and the same
consumers are fed from them by :class:`~.hooks.TapHooks`. Importing this module
registers the tap op and the ``amygdala`` load format: vLLM imports the worker
extension in every worker process before it loads the model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..pooling_modes import DEFAULT_MODES
from . import plugin, probes, rpc
from .hooks import LayerHooks, TapHooks
from .layers import DecoderLayers, resolve_decoder_layers
from .ops import tapped_layers
from .pooling import PooledAccumulator
from .runners import RunnerView, runner_view
from .score_store import ScoreStore
from .step import StepLayout

__all__ = ["AmygdalaWorkerExtension"]

plugin.register()


class _Fanout:
    """Feeds one hook stream to every active consumer."""

    def __init__(self) -> None:
        self.capture: PooledAccumulator | None = None
        self.readout: ScoreStore | None = None

    def _active(self) -> list[Any]:
        return [c for c in (self.capture, self.readout) if c is not None]

    def begin_step(self, layout: StepLayout) -> None:
        for c in self._active():
            c.begin_step(layout)

    def add(self, layer_pos: int, stream: torch.Tensor) -> None:
        for c in self._active():
            c.add(layer_pos, stream)

    def end_step(self) -> None:
        for c in self._active():
            c.end_step()


class AmygdalaWorkerExtension:
    """Capture and readout modes of the readout machinery, installed per worker on request."""

    _amygdala_hooks: LayerHooks | TapHooks | None = None
    _amygdala_fanout: _Fanout | None = None
    _amygdala_layers: list[int] = []

    # ------------------------------------------------------------------ info

    def amygdala_ping(self) -> str:
        """Prove the extension is loaded in this worker; returns the vLLM version."""
        return probes.vllm_version()

    def amygdala_runner_info(self) -> dict[str, str]:
        """The model runner this worker uses: ``{"kind": "v1" | "v2", "class": "module.Class"}`` (a kind without a view is refused)."""
        runner = runner_view(self)
        return {"kind": runner.kind, "class": runner.runner_class()}

    def amygdala_prepare_pipeline(self) -> bool:
        """Allocate this pipeline stage's receive buffers if vLLM skipped it (see RunnerView.ensure_pipeline_buffers)."""
        return runner_view(self).ensure_pipeline_buffers()

    def _amygdala_decoder(self) -> tuple[RunnerView, DecoderLayers]:
        runner = runner_view(self)
        return runner, resolve_decoder_layers(runner.model())

    def amygdala_model_info(self) -> dict[str, Any]:
        """Decoder shape as this worker sees it (layer count, slice, hidden size)."""
        runner, decoder = self._amygdala_decoder()
        return {
            "num_layers": decoder.total,
            "start_layer": decoder.start,
            "end_layer": decoder.end,
            "layers_path": decoder.path,
            "hidden_size": int(runner.model_config().get_hidden_size()),
            "max_model_len": int(runner.model_config().max_model_len),
            "architecture": type(runner.model()).__name__,
            "tp_rank": probes.tensor_parallel_rank(),
            "tapped_layers": sorted(tapped_layers(decoder.layers)),
            "compiled": runner.compiles(),
        }

    # ------------------------------------------------------------ lifecycle

    def _amygdala_install(self, layers: list[int]) -> tuple[RunnerView, DecoderLayers, list[int]]:
        """(Re)hook ``layers``; keeps consumers only if the layers are unchanged."""
        runner, decoder = self._amygdala_decoder()
        bad = [i for i in layers if not 0 <= i < decoder.total]
        if bad:
            raise ValueError(f"layers {bad} out of range for a {decoder.total}-layer decoder")
        owned = [i for i in layers if decoder.owns(i)]
        if self._amygdala_hooks is not None and owned == self._amygdala_layers:
            return runner, decoder, owned
        if self._amygdala_hooks is not None:
            raise ValueError(
                f"capture and readout must hook the same layers in one pass ({self._amygdala_layers} active, {owned} asked)"
            )
        fanout = _Fanout()
        if tapped_layers(decoder.layers):
            hooks: LayerHooks | TapHooks = TapHooks(runner, decoder, owned, fanout)
        elif runner.compiles():
            raise ValueError(
                "this engine compiles the model, where per-layer hooks never fire; start it with tap layers "
                "(open_engine(settings, layers) with settings.compile) or in eager mode"
            )
        else:
            hooks = LayerHooks(runner, decoder, owned, fanout)
        self._amygdala_fanout = fanout
        self._amygdala_layers = owned
        self._amygdala_hooks = hooks
        return runner, decoder, owned

    def _amygdala_release_if_idle(self) -> None:
        fan = self._amygdala_fanout
        if fan is not None and fan.capture is None and fan.readout is None and self._amygdala_hooks is not None:
            self._amygdala_hooks.remove()
            self._amygdala_hooks = None
            self._amygdala_fanout = None
            self._amygdala_layers = []

    # --------------------------------------------------------------- capture

    def amygdala_capture_start(self, layers: list[int], skip_first_tokens: int,
                               modes: list[str] | None = None) -> None:
        """Hook ``layers`` and start pooling every prompt this worker runs (by ``modes``; default mean, last)."""
        self.amygdala_capture_stop()
        runner, _, owned = self._amygdala_install(list(layers))
        hidden = int(runner.model_config().get_hidden_size())
        assert self._amygdala_fanout is not None
        device = runner.device()
        self._amygdala_fanout.capture = PooledAccumulator(
            len(owned), hidden, skip_first_tokens, device=device, modes=tuple(modes or DEFAULT_MODES))

    def amygdala_capture_drain(self) -> bytes:
        """Pooled activations of every request seen since the last drain (:func:`.rpc.encode_capture`).

        Only tensor-parallel rank 0 reports (the residual stream is replicated
        across TP ranks after the all-reduce); other ranks return empty bytes.
        """
        fan = self._amygdala_fanout
        acc = fan.capture if fan is not None else None
        if acc is None:
            raise RuntimeError("capture is not active on this worker; call amygdala_capture_start first")
        req_ids = acc.pending()
        pooled = [acc.pop(r) for r in req_ids]
        if probes.tensor_parallel_rank() != 0:
            return b""
        L, H = acc.num_layers, acc.hidden_size
        modes = {name: (torch.stack([p.pooled[name] for p in pooled]) if pooled else torch.zeros(0, L, H)).cpu().numpy()
                 for name in acc.modes}
        return rpc.encode_capture(rpc.CaptureReply(
            layers=list(self._amygdala_layers), req_ids=req_ids, num_tokens=np.array([p.num_tokens for p in pooled]),
            rows_seen=np.array([p.rows_seen for p in pooled]), pooled=modes))

    def amygdala_capture_stop(self) -> None:
        """Stop pooling and drop any undrained data."""
        if self._amygdala_fanout is not None:
            self._amygdala_fanout.capture = None
        self._amygdala_release_if_idle()

    # --------------------------------------------------------------- readout

    def amygdala_readout_start(self, vectors_path: str | None = None, manifest_path: str | None = None) -> dict[str, Any]:
        """Load readout vectors (default: ``VLLM_READOUT_VECTORS``/``_MANIFEST``) and score every token.

        Returns the manifest's concepts and layers so the driver can label scores.
        """
        from ..models import model_fingerprint
        from ..vectors_file import load_torch, paths_from_env

        self.amygdala_readout_stop()
        if vectors_path is None or manifest_path is None:
            vec, man = paths_from_env()
        else:
            vec, man = Path(vectors_path), Path(manifest_path)
        runner, decoder = self._amygdala_decoder()
        model_config = runner.model_config()
        model_path = str(model_config.model)
        fingerprint = model_fingerprint(model_path) if Path(model_path).is_dir() else None
        manifest, vectors = load_torch(
            vec, man, num_layers=decoder.total, hidden_size=int(model_config.get_hidden_size()),
            model_fingerprint=fingerprint,
        )
        _, _, owned = self._amygdala_install(list(manifest.layers))
        mine = [vectors[manifest.layers.index(i)] for i in owned]
        assert self._amygdala_fanout is not None
        max_tokens = int(model_config.max_model_len)
        self._amygdala_fanout.readout = ScoreStore(runner_view(self), mine, max_tokens_per_request=max_tokens)
        return {"concepts": list(manifest.concepts), "layers": list(manifest.layers)}

    def amygdala_readout_drain(self, req_ids: list[str] | None = None) -> bytes:
        """Per-token scores of the given internal request ids (default: all), released once drained.

        :func:`.rpc.encode_scores` bytes with this rank's layers; TP ranks other
        than 0 return empty bytes.
        """
        return self._amygdala_drain(lambda store: store.take(req_ids))

    def _amygdala_drain(self, take: Callable[[ScoreStore], list[rpc.RequestScores]]) -> bytes:
        """``take`` from the score store, encoded for the driver (empty bytes on TP ranks other than 0)."""
        fan = self._amygdala_fanout
        store = fan.readout if fan is not None else None
        if store is None:
            raise RuntimeError("readout is not active on this worker; call amygdala_readout_start first")
        drained = take(store)
        if probes.tensor_parallel_rank() != 0:
            return b""
        return rpc.encode_scores(rpc.ScoresReply(layers=list(self._amygdala_layers), requests=drained))

    def amygdala_readout_stop(self) -> None:
        """Stop scoring and drop undrained scores."""
        if self._amygdala_fanout is not None:
            self._amygdala_fanout.readout = None
        self._amygdala_release_if_idle()
