"""Batch the API server's score drains: one worker round trip for every request waiting, never one per token.

``engine_client.collective_rpc`` is served by the engine core between steps and
waits for every worker, so each call pauses the engine loop once. The broker
therefore runs at most one drain at a time, for all registered requests
together:

- a request that has finished awaits :meth:`ScoreBroker.final`; every final
  asked while a drain is in flight is served by the next one (they batch
  naturally under load);
- streaming requests are polled in the background at most once per
  ``interval`` seconds while any is registered; a chunk takes whatever has
  arrived (:meth:`take`) and never waits;
- a request that ends without its final drain (client gone, error) is
  :meth:`discard`-ed: the next drain tells the worker to drop its scores and
  to keep none that still arrive for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..vllm_ext.rpc import RequestScores

__all__ = ["ScoreBroker", "DrainFn"]

log = logging.getLogger(__name__)


DrainFn = Callable[[list[str], list[str]], Awaitable[list[RequestScores]]]
"""``drain(tags, discard)``: scores of the requests filed under ``tags``; drops ``discard``."""


class ScoreBroker:
    """One drain loop per API server; requests are keyed by the tag the server put in their ``vllm_xargs``."""

    def __init__(self, drain: DrainFn, interval: float = 0.05):
        self._drain = drain
        self.interval = interval
        self._buffers: dict[str, list[RequestScores]] = {}
        self._polled: set[str] = set()
        self._discard: set[str] = set()
        self._waiters: list[tuple[str, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.drains = 0

    def register(self, tag: str, streaming: bool) -> None:
        """Start holding scores for ``tag`` (polled in the background if ``streaming``)."""
        self._buffers[tag] = []
        if streaming:
            self._polled.add(tag)
            self._kick()

    def take(self, tag: str) -> list[RequestScores]:
        """Scores that arrived for ``tag`` since the last take (never waits)."""
        got = self._buffers.get(tag, [])
        if got:
            self._buffers[tag] = []
        return got

    async def final(self, tag: str) -> list[RequestScores]:
        """Everything left for ``tag``, from a drain that started after this call (its request has finished)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((tag, fut))
        self._kick()
        await fut
        return self.take(tag)

    def release(self, tag: str) -> None:
        """Forget ``tag`` after its final drain."""
        self._buffers.pop(tag, None)
        self._polled.discard(tag)

    def discard(self, tag: str) -> None:
        """Forget ``tag`` and have the worker drop its scores (safe from a ``finally``; never waits)."""
        self.release(tag)
        self._discard.add(tag)
        self._kick()

    def _kick(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._waiters or self._polled or self._discard:
            if not self._waiters and not self._discard:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
                except asyncio.TimeoutError:
                    pass
            waiters, self._waiters = self._waiters, []
            discard, self._discard = sorted(self._discard), set()
            tags = sorted({t for t, _ in waiters} | self._polled)
            try:
                got = await self._drain(tags, discard) if tags or discard else []
                self.drains += 1
            except Exception as exc:  # the drain failed for everyone waiting: hand it to each of them
                log.error("amygdala score drain failed: %s", exc)
                for _, fut in waiters:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for item in got:
                if item.tag in self._buffers:
                    self._buffers[item.tag].append(item)
            for _, fut in waiters:
                if not fut.done():
                    fut.set_result(None)
