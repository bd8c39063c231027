"""Hand keyed pieces of work to a set of Ray actors, one piece per actor at a time, and survive lost actors.

The driver keeps the queue; an actor pulls its next piece the moment it
returns one (so a fast actor does more), and nothing is ever in flight on two
actors. When an actor dies (its process or node is lost, or it is
``ray.kill``-ed) the piece it held goes back to the front of the queue and a
replacement actor is started, both bounded: a piece lost ``max_attempts`` times,
or more deaths than ``max_restarts``, stop the run with a :class:`ClusterError`.
A deliberate error inside an actor (bad model, overlong text with ``--overlong
error``, ...) is not retried: the run stops with that actor's own one-line
reason, as the same error type a one-process run raises.
"""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec

from .. import errors
from ..errors import AmygdalaError, ClusterError
from .actors import Reply

__all__ = ["ActorPool"]

log = logging.getLogger(__name__)

_REPLY = msgspec.json.Decoder(Reply)


def _raise_reply(reply: Reply, actor: str, doing: str) -> None:
    if not reply.error_type:
        return
    cls = getattr(errors, reply.error_type, None)
    if not (isinstance(cls, type) and issubclass(cls, AmygdalaError)):
        cls = ClusterError
    raise cls(f"{reply.message} (actor {actor} on {reply.node}, {doing})")


class ActorPool:
    """Actors made by ``spawn(name)``, each started with ``start_args``; use as a context manager.

    ``spawn`` returns an actor handle whose ``start(*start_args)`` and work
    methods answer ``(Reply JSON, payload bytes)``. Leaving the block kills every
    actor (and whatever ``spawn`` reserved for it, through ``release``).
    """

    def __init__(self, ray: Any, spawn: Callable[[str], Any], size: int, start_args: Sequence[Any], *,
                 prefix: str, what: str, max_restarts: int | None = None, max_attempts: int = 3,
                 release: Callable[[str], None] | None = None):
        if size < 1:
            raise ClusterError("a Ray run needs at least one actor")
        self.ray = ray
        self._spawn_fn = spawn
        self._release = release
        self.size = size
        self.start_args = tuple(start_args)
        self.prefix = prefix
        self.what = what
        self.max_restarts = size if max_restarts is None else max_restarts
        self.max_attempts = max_attempts
        self.restarts = 0
        self.retried = 0
        self.started: list[Reply] = []  # start replies, in the order actors became ready
        self._names = (f"{prefix}-{i}" for i in itertools.count())
        self._handles: dict[str, Any] = {}
        self._starting: dict[Any, str] = {}
        self._idle: list[str] = []

    def __enter__(self) -> ActorPool:
        for _ in range(self.size):
            self._spawn()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill every actor now (their engines go with them)."""
        for name, handle in list(self._handles.items()):
            self._drop(name, handle)
        self._starting.clear()
        self._idle.clear()

    def _spawn(self) -> None:
        name = next(self._names)
        handle = self._spawn_fn(name)
        self._handles[name] = handle
        self._starting[handle.start.remote(*self.start_args)] = name

    def _drop(self, name: str, handle: Any = None) -> None:
        handle = handle or self._handles.get(name)
        self._handles.pop(name, None)
        if handle is not None:
            try:
                self.ray.kill(handle, no_restart=True)
            except Exception as exc:  # already gone: nothing to free
                log.debug("kill %s: %s", name, exc)
        if self._release is not None:
            self._release(name)

    @property
    def actors(self) -> list[str]:
        """Names of the actors alive now (started or starting)."""
        return list(self._handles)

    def map(self, method: str, items: Sequence[tuple[Any, tuple[Any, ...]]]) -> Iterator[tuple[Any, Reply, bytes, str]]:
        """Run ``method(*args)`` for every ``(key, args)``; yield ``(key, reply, payload, actor)`` as each completes.

        Each piece is yielded exactly once. The actor that returned it has
        already been handed its next piece when the piece is yielded.
        """
        args = dict(items)
        queue = collections.deque(key for key, _ in items)
        attempts: collections.Counter[Any] = collections.Counter()
        busy: dict[Any, tuple[str, Any]] = {}

        def dispatch(name: str) -> None:
            if queue:
                key = queue.popleft()
                busy[getattr(self._handles[name], method).remote(*args[key])] = (name, key)
            else:
                self._idle.append(name)

        def lost(name: str, key: Any, exc: BaseException) -> None:
            self._drop(name)
            log.warning("actor %s died%s: %s", name, f" holding {self.what} {key}" if key is not None else "", exc)
            if key is not None:
                attempts[key] += 1
                if attempts[key] >= self.max_attempts:
                    raise ClusterError(f"{self.what} {key} was lost with its actor {attempts[key]} times "
                                       f"(last: {name}: {_first_line(exc)})") from None
                queue.appendleft(key)
                self.retried += 1
            if self.restarts >= self.max_restarts:
                if not self._handles:
                    raise ClusterError(f"every actor died and the {self.max_restarts} replacement(s) allowed are "
                                       f"used up (last: {name}: {_first_line(exc)})") from None
                return
            self.restarts += 1
            self._spawn()

        while self._idle and queue:
            dispatch(self._idle.pop(0))
        while queue or busy:
            if not busy and not self._starting:
                raise ClusterError(f"no actor is left to run the remaining {len(queue)} {self.what}(s)")
            ready, _ = self.ray.wait([*self._starting, *busy], num_returns=1)
            ref = ready[0]
            if ref in self._starting:
                name = self._starting.pop(ref)
                try:
                    reply, _ = self._get(ref, name, "starting its engine")
                except _Lost as lost_exc:
                    lost(name, None, lost_exc.cause)
                    continue
                _raise_reply(reply, name, "starting its engine")
                log.info("actor %s ready on %s (pid %d, %d torch threads)", name, reply.node, reply.pid, reply.threads)
                self.started.append(reply)
                dispatch(name)
                continue
            name, key = busy.pop(ref)
            try:
                reply, payload = self._get(ref, name, f"{self.what} {key}")
            except _Lost as lost_exc:
                lost(name, key, lost_exc.cause)
                continue
            _raise_reply(reply, name, f"{self.what} {key}")
            dispatch(name)
            yield key, reply, payload, name

    def _get(self, ref: Any, name: str, doing: str) -> tuple[Reply, bytes]:
        exc_mod = self.ray.exceptions
        try:
            status, payload = self.ray.get(ref)
        except exc_mod.RayActorError as exc:  # the actor's process or node is gone: retry elsewhere
            raise _Lost(exc) from None
        except exc_mod.RayTaskError as exc:  # an unexpected exception inside the actor: a bug, not retried
            raise ClusterError(f"actor {name} failed {doing}: {_first_line(exc.cause or exc)}") from exc
        return _REPLY.decode(status), payload


class _Lost(Exception):
    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
