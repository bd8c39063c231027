"""The MCP client: the official ``mcp`` SDK behind a small synchronous interface.

The SDK speaks the protocol and tracks the spec: the initialize handshake, Streamable HTTP
(sessions, JSON or SSE answers), legacy SSE, and stdio (the server as a child process, stopped
on exit by closing its stdin, then SIGTERM/SIGKILL to its process group). This is the only
async module in ``pairs``: it runs the SDK's anyio loop on a helper thread (a blocking portal),
so callers see plain methods, and it turns every failure into one
:class:`~amygdala_vllm.errors.MCPTransportError` (could not talk: unreachable, refused, HTTP
4xx/5xx, timed out, the child would not start or died) or
:class:`~amygdala_vllm.errors.MCPProtocolError` (talked, but got no usable answer: JSON-RPC
errors, non-JSON-RPC output, a missing tool) naming the server, never its headers.

A Streamable HTTP server that forgets the session (restarted, or it expired the session: HTTP 404
to a request carrying the session id) gets a new session, as the spec asks of clients, and the
request is sent once more; concurrent calls share that one new session.

Tool results are handed out as plain dicts in the wire shape (``content``,
``structuredContent``, ``isError``), read with :mod:`.results`; failures are worded by
:mod:`.errors`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, BinaryIO

import anyio
import anyio.abc
import httpx2
import mcp_types
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client

from amygdala_vllm import __version__
from amygdala_vllm.errors import MCPError, MCPProtocolError

from .errors import leaves, session_lost, translate
from .results import result_text
from .target import ServerTarget
from .transport import quiet_sdk_logs, sdk_transport

__all__ = ["MCPClient", "DEFAULT_CONCURRENCY"]

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8
"""Tool calls in flight at once in :meth:`MCPClient.call_many`: enough to hide a round trip
(a render takes ~1 ms on a local server, the round trip over stdio or HTTP about as long again),
few enough not to swamp a single-threaded server."""

_MAX_TOOL_PAGES = 1000


class MCPClient:
    """One session with one MCP server; use as a context manager.

    Entering connects (spawning the child for stdio) and shakes hands; leaving ends the session
    and stops the child, also when leaving by an exception or Ctrl-C.
    """

    def __init__(self, target: ServerTarget) -> None:
        self.target = target
        self.where = target.where
        self.protocol_version: str | None = None
        self.server_name: str | None = None
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._client: Client | None = None
        self._fault: Exception | None = None
        self._scopes: set[anyio.CancelScope] = set()
        self._stderr: BinaryIO | None = None
        self._http_status: str | None = None
        self._owners: anyio.abc.TaskGroup | None = None  # holds the task that owns the current session
        self._retire: anyio.Event | None = None  # set: the current session's owner closes it
        self._ready: anyio.Event | None = None  # set once a session is usable (again)
        self._generation = 0  # sessions opened so far; a call that lost one knows whether it was replaced
        self._renewing: anyio.Lock | None = None
        self._lost = 0  # the generation a renewal is replacing (0: none)
        self._abandoned: set[anyio.Event] = set()  # retire events of sessions a renewal gave up on

    # -- lifecycle (called from the caller's thread) ------------------------------------------

    def __enter__(self) -> MCPClient:
        with contextlib.ExitStack() as stack:
            if self.target.transport == "stdio":
                self._stderr = stack.enter_context(tempfile.TemporaryFile("w+b"))
            self._portal = stack.enter_context(start_blocking_portal(name="mcp-client"))
            session = self._portal.wrap_async_context_manager(self._session())
            session.__enter__()
            self._stack = stack.pop_all()
            self._stack.push(lambda *exc: self._close(session, exc[0] is not None))
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close the session, then the loop; on an error (Ctrl-C included) calls still in flight are cancelled."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.__exit__(*exc)
        log.debug("%s: session closed", self.where)

    def _close(self, session: contextlib.AbstractContextManager[None], failing: bool) -> None:
        """End the session cleanly whatever ended the with-block: the caller's error is not the SDK's."""
        try:
            session.__exit__(None, None, None)
        except Exception as exc:  # a failure while closing must not hide the caller's own error
            if not failing:
                raise self._error(exc, "closing the session") from exc
            log.debug("%s: closing the session failed too: %r", self.where, exc)

    def list_tools(self) -> list[dict[str, Any]]:
        """Every tool the server offers (``name``, ``description``...), following cursors."""
        return self._run(self._list_tools)

    def require_tools(self, names: Iterable[str]) -> None:
        """Fail early, listing what the server has, if a tool the mapping needs is missing."""
        available = sorted(str(t.get("name")) for t in self.list_tools())
        missing = [n for n in names if n not in available]
        if missing:
            raise MCPProtocolError(
                f"{self.where} has no tool {', '.join(map(repr, missing))}; "
                f"available: {', '.join(available) or '(none)'} "
                "(choose others with --mcp-list-tool / --mcp-fetch-tool or --mcp-preset)"
            )

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call a tool; an ``isError`` result becomes MCPProtocolError with the server's text."""
        result = self._run(self._call, name, arguments)
        if result.get("isError"):
            msg = result_text(result).strip() or "(no message)"
            raise MCPProtocolError(f"MCP tool {name!r} on {self.where} failed: {msg}")
        return result

    def call_many(
        self,
        name: str,
        arguments: Sequence[dict[str, Any]],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        on_result: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Call ``name`` once per argument dict, ``concurrency`` calls in flight; results in input order.

        ``isError`` results are returned like any other (the caller decides whether one failed
        node is fatal); a failure to talk at all stops every call and raises. ``on_result(i, r)``
        runs as each call finishes, on the client's own thread; an exception it raises stops
        every call and is raised here.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        return self._run(self._call_many, name, list(arguments), concurrency, on_result)

    def _run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        if self._portal is None:
            raise RuntimeError("MCPClient used outside its with-block")
        return self._portal.call(fn, *args)

    # -- the async side (runs on the portal's event loop) --------------------------------------

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        """Connect and hand shake; on leaving, end the session (and stop the child).

        Each session lives in a task of its own (:meth:`_own_session`) because the SDK's task
        groups must be left by the task that entered them; a renewal (:meth:`_renew`) retires
        that task and starts another.
        """
        with quiet_sdk_logs():
            self._renewing = anyio.Lock()
            try:
                async with anyio.create_task_group() as owners:
                    self._owners = owners
                    await owners.start(self._own_session)
                    try:
                        yield
                    finally:
                        self._client = None
                        if self._retire is not None:
                            self._retire.set()
            except BaseExceptionGroup as group:  # the task group wraps even a lone failure: hand out the failure
                inside = leaves(group)
                if len(inside) == 1:
                    raise inside[0] from inside[0].__cause__
                raise

    async def _own_session(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open one session, report it ready, hold it until retired, then close it.

        A failure before the session is ready is raised from ``owners.start``; one while a
        renewal closes an abandoned session is only logged (the server has forgotten it anyway).
        """
        retire = anyio.Event()

        async def on_message(message: Any) -> None:
            if retire not in self._abandoned:  # a session given up on may fail as it closes: not our fault
                await self._on_message(message)

        client = Client(
            sdk_transport(self.target, self._stderr, self._note_status),
            mode="legacy",  # the initialize handshake: what deployed servers (2025-06-18/-11-25) speak
            read_timeout_seconds=self.target.timeout,
            message_handler=on_message,
            client_info=mcp_types.Implementation(name="amygdala-vllm", version=__version__),
            cache=None,
        )
        # The SDK's task groups live inside the client, so a fault during the handshake cancels
        # this scope around the whole session (cancel scopes must nest); later faults cancel the
        # scope of each call (_guard).
        handshake = anyio.CancelScope()
        try:
            with handshake:
                self._scopes.add(handshake)
                async with contextlib.AsyncExitStack() as stack:
                    try:
                        await stack.enter_async_context(client)
                    except Exception as exc:  # the SDK and its transports raise many types
                        raise self._error(self._fault or exc, "initialize") from exc
                    self._scopes.discard(handshake)
                    self._client, self._retire = client, retire
                    self._generation += 1
                    self.protocol_version = client.protocol_version
                    self.server_name = client.server_info.name if client.server_info else None
                    log.debug("%s: protocol %s, server %s, session %d", self.where, self.protocol_version,
                              self.server_name, self._generation)
                    self._ready = anyio.Event()
                    self._ready.set()
                    task_status.started()
                    await retire.wait()
        except Exception as exc:
            if retire not in self._abandoned:
                raise
            log.debug("%s: closing a forgotten session failed: %r", self.where, exc)
            return
        finally:
            self._scopes.discard(handshake)
        if handshake.cancelled_caught:
            assert self._fault is not None
            raise self._error(self._fault, "initialize") from self._fault

    async def _renew(self, lost_generation: int) -> None:
        """Replace the session the server forgot with a new one, once for every call that saw it go."""
        assert self._renewing is not None and self._owners is not None
        async with self._renewing:
            if self._generation != lost_generation:
                return  # another call already renewed it
            log.info("%s forgot the session; starting a new one", self.where)
            self._ready, self._lost = anyio.Event(), lost_generation
            old, self._client = self._retire, None
            if old is not None:
                self._abandoned.add(old)
                old.set()
            self._fault, self._http_status = None, None
            try:
                await self._owners.start(self._own_session)
            finally:
                self._ready.set()  # waiting calls wake to the new session, or to its absence

    async def _request(self, what: str, send: Callable[[Client], Awaitable[Any]]) -> Any:
        """``send(client)`` on the current session; sent once more on a new session if the server forgot it."""
        for attempt in (1, 2):
            if self._ready is not None:
                await self._ready.wait()
            client, generation = self._client, self._generation
            if client is None:
                raise MCPProtocolError(f"{self.where}: no session for {what} (the server forgot it and a new one "
                                       "could not be opened)")
            try:
                return await self._guard(what, lambda: send(client), generation)
            except _SessionLost as lost:
                if attempt == 2 or self.target.transport != "http":
                    raise self._error(lost.cause, what) from lost.cause
                await self._renew(generation)
        raise AssertionError("unreachable")

    async def _note_status(self, response: httpx2.Response) -> None:
        # POSTs only: a 405 to the optional GET stream or the closing DELETE is no answer to a request.
        if response.status_code >= 400 and response.request.method == "POST":
            self._http_status = f"{response.status_code} {response.reason_phrase}".strip()

    async def _on_message(self, message: Any) -> None:
        """Transport faults (a non-JSON-RPC line, a broken event) come here, not to the waiting call."""
        if isinstance(message, Exception) and self._fault is None:
            self._fault = message
            for scope in list(self._scopes):
                scope.cancel()

    async def _guard(self, what: str, fn: Callable[[], Awaitable[Any]], generation: int | None = None) -> Any:
        """Await ``fn()``; a transport fault cancels it; any failure becomes one of our errors.

        With ``generation`` (the session ``fn`` talks on), a session the server forgot raises
        :class:`_SessionLost` instead, for :meth:`_request` to renew and retry.
        """
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                if self._fault is not None:
                    scope.cancel()
                return await fn()
        except MCPError:
            raise
        except Exception as exc:  # the SDK and its transports raise many types; all become ours
            if generation is not None and self._fault is None and session_lost(
                    exc, self._http_status, renewed=generation == self._lost or generation != self._generation):
                raise _SessionLost(exc) from exc
            raise self._error(self._fault or exc, what) from exc
        finally:
            self._scopes.discard(scope)
        assert self._fault is not None
        raise self._error(self._fault, what) from self._fault

    async def _list_tools(self) -> list[dict[str, Any]]:
        tools, cursor = [], None
        for _ in range(_MAX_TOOL_PAGES):
            page = await self._request("tools/list", lambda client: client.list_tools(cursor=cursor))
            tools += [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in page.tools]
            cursor = page.next_cursor
            if not cursor:
                return tools
        raise MCPProtocolError(f"{self.where}: tools/list kept paging past {_MAX_TOOL_PAGES} pages")

    async def _call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await self._request(f"tools/call {name}", lambda client: client.call_tool(name, arguments))
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def _call_many(
        self,
        name: str,
        arguments: list[dict[str, Any]],
        concurrency: int,
        on_result: Callable[[int, dict[str, Any]], None] | None,
    ) -> list[dict[str, Any]]:
        results: list[dict[str, Any] | None] = [None] * len(arguments)
        todo: Iterator[tuple[int, dict[str, Any]]] = iter(enumerate(arguments))
        failure: list[BaseException] = []

        async def worker(cancel: anyio.CancelScope) -> None:
            for i, args in todo:  # one shared iterator: each call is taken by exactly one worker
                try:
                    results[i] = result = await self._call(name, args)
                    if on_result is not None:
                        on_result(i, result)  # may raise to stop every call (strict mode)
                except Exception as exc:
                    failure.append(exc)
                    cancel.cancel()
                    return

        async with anyio.create_task_group() as tg:
            for _ in range(min(concurrency, len(arguments))):
                tg.start_soon(worker, tg.cancel_scope)
        if failure:
            raise failure[0]
        return results  # type: ignore[return-value]

    # -- errors ---------------------------------------------------------------------------------

    def _error(self, exc: BaseException, what: str) -> MCPError:
        return translate(exc, what, self.target, http_status=self._http_status, stderr_tail=self._stderr_tail())

    def _stderr_tail(self) -> str | None:
        """For stdio: the end of what the child wrote to stderr (None for HTTP)."""
        if self._stderr is None:
            return None
        try:
            size = self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, size - 4000))
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""


class _SessionLost(Exception):
    """The server forgot the session (HTTP 404 to a request carrying its id); ``cause`` is the SDK's error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
