"""The worker extension ``amygdala-vllm serve`` hands vLLM (``--worker-extension-cls``).

It is the readout extension plus three RPCs the API server's endpoint plugin
calls through ``engine_client.collective_rpc``: start scoring opted-in
requests, drain their scores (batched: one call for every waiting request),
and report what is held. The score store is readout's own
(:class:`~.score_store.ScoreStore`), told to score only requests the API
server tagged; drains cross the process boundary in :mod:`.rpc`'s codec.
"""

from __future__ import annotations

from typing import Any

from . import rpc
from .runners import runner_view
from .score_store import ScoreStore
from .worker import AmygdalaWorkerExtension

__all__ = ["AmygdalaServeExtension"]


class AmygdalaServeExtension(AmygdalaWorkerExtension):
    """Readout for served requests that opt in through ``vllm_xargs``."""

    _amygdala_serve: ScoreStore | None = None
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
        store = ScoreStore(runner_view(self), list(fan.readout.vectors), tag_key=rpc.TAG_KEY)
        fan.readout = store
        self._amygdala_serve = store
        info.update(self.amygdala_model_info())
        self._amygdala_serve_info = ((vectors_path, manifest_path), dict(info))
        return info

    def _amygdala_store(self) -> ScoreStore:
        if self._amygdala_serve is None:
            raise RuntimeError("serving readout is not active on this worker; call amygdala_serve_start first")
        return self._amygdala_serve

    def amygdala_serve_drain(self, tags: list[str], discard: list[str]) -> bytes:
        """Scores held for requests filed under ``tags`` (released); ``discard``-ed tags are dropped for good.

        :func:`.rpc.encode_scores` bytes; TP ranks other than 0 return empty bytes.
        """
        self._amygdala_store()
        return self._amygdala_drain(lambda store: store.take_tagged(tags, discard))

    def amygdala_serve_stats(self) -> dict[str, int]:
        """Requests and rows of scores this worker holds now (0 and 0 when everything was drained)."""
        return self._amygdala_store().stats()
