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

Tool results are handed out as plain dicts in the wire shape (``content``,
``structuredContent``, ``isError``), read with :func:`result_text` / :func:`result_json`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO

import anyio
import httpx2
import mcp_types
import pydantic
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError as SDKError

from amygdala_vllm import __version__
from amygdala_vllm.errors import MCPError, MCPProtocolError, MCPTransportError

from .mcp_target import HEADERS_ENV, ServerTarget

__all__ = ["MCPClient", "DEFAULT_CONCURRENCY", "result_text", "result_json"]

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8
"""Tool calls in flight at once in :meth:`MCPClient.call_many`: enough to hide a round trip
(a render takes ~1 ms on a local server, the round trip over stdio or HTTP about as long again),
few enough not to swamp a single-threaded server."""

_MAX_TOOL_PAGES = 1000
# The SDK synthesises these messages for an HTTP error status; the status itself is ours to add.
_HTTP_STAND_INS = ("Server returned an error response", "Not Found", "Session terminated")


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
        self._stderr: TextIO | None = None
        self._http_status: str | None = None

    # -- lifecycle (called from the caller's thread) ------------------------------------------

    def __enter__(self) -> MCPClient:
        with contextlib.ExitStack() as stack:
            if self.target.transport == "stdio":
                self._stderr = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace"))
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
        if self._portal is None or self._client is None:
            raise RuntimeError("MCPClient used outside its with-block")
        return self._portal.call(fn, *args)

    # -- the async side (runs on the portal's event loop) --------------------------------------

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        """Connect and hand shake; on leaving, end the session (and stop the child)."""
        with _quiet_sdk_logs():
            client = Client(
                self._transport(),
                mode="legacy",  # the initialize handshake: what deployed servers (2025-06-18/-11-25) speak
                read_timeout_seconds=self.target.timeout,
                message_handler=self._on_message,
                client_info=mcp_types.Implementation(name="amygdala-vllm", version=__version__),
                cache=None,
            )
            # The SDK's task groups live inside the client, so a fault during the handshake cancels
            # this scope around the whole session (cancel scopes must nest); later faults cancel the
            # scope of each call (_guard).
            with anyio.CancelScope() as handshake:
                self._scopes.add(handshake)
                async with contextlib.AsyncExitStack() as stack:
                    try:
                        await stack.enter_async_context(client)
                    except Exception as exc:  # the SDK and its transports raise many types
                        raise self._error(self._fault or exc, "initialize") from exc
                    self._scopes.discard(handshake)
                    self._client = client
                    self.protocol_version = client.protocol_version
                    self.server_name = client.server_info.name if client.server_info else None
                    log.debug("%s: protocol %s, server %s", self.where, self.protocol_version, self.server_name)
                    try:
                        yield
                    finally:
                        self._client = None
            if handshake.cancelled_caught:
                assert self._fault is not None
                raise self._error(self._fault, "initialize") from self._fault

    def _transport(self) -> Any:
        """The SDK transport for the target: a stdio child, or an HTTP client carrying the headers."""
        t = self.target
        if t.transport == "stdio":
            # The child gets the user's environment, as if run from their shell (the SDK would pass
            # only HOME/PATH/...), minus our header variable; its stderr goes to a file we quote
            # from when it dies, so a traceback there never reaches the terminal.
            env = {k: v for k, v in os.environ.items() if k != HEADERS_ENV}
            params = StdioServerParameters(command=t.command[0], args=list(t.command[1:]), env=env)
            return stdio_client(params, errlog=self._stderr or sys.stderr)

        def http_client(
            headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: Any = None
        ) -> httpx2.AsyncClient:
            # A long read timeout: the SDK keeps an SSE stream open between answers; each request's
            # own deadline is read_timeout_seconds. The hook keeps the HTTP status the SDK drops.
            return httpx2.AsyncClient(
                headers={**(headers or {}), **t.headers},
                timeout=timeout or httpx2.Timeout(t.timeout, read=max(300.0, t.timeout)),
                auth=auth,
                event_hooks={"response": [self._note_status]},
            )

        assert t.url is not None
        if t.transport == "sse":
            return sse_client(t.url, timeout=t.timeout, sse_read_timeout=max(300.0, t.timeout),
                              httpx_client_factory=http_client)
        return _owned_http_transport(t.url, http_client)

    async def _note_status(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self._http_status = f"{response.status_code} {response.reason_phrase}".strip()

    async def _on_message(self, message: Any) -> None:
        """Transport faults (a non-JSON-RPC line, a broken event) come here, not to the waiting call."""
        if isinstance(message, Exception) and self._fault is None:
            self._fault = message
            for scope in list(self._scopes):
                scope.cancel()

    async def _guard(self, what: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Await ``fn()``; a transport fault cancels it; any failure becomes one of our errors."""
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
            raise self._error(self._fault or exc, what) from exc
        finally:
            self._scopes.discard(scope)
        assert self._fault is not None
        raise self._error(self._fault, what) from self._fault

    async def _list_tools(self) -> list[dict[str, Any]]:
        assert self._client is not None
        client, tools, cursor = self._client, [], None
        for _ in range(_MAX_TOOL_PAGES):
            page = await self._guard("tools/list", lambda: client.list_tools(cursor=cursor))
            tools += [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in page.tools]
            cursor = page.next_cursor
            if not cursor:
                return tools
        raise MCPProtocolError(f"{self.where}: tools/list kept paging past {_MAX_TOOL_PAGES} pages")

    async def _call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        assert self._client is not None
        client = self._client
        result = await self._guard(f"tools/call {name}", lambda: client.call_tool(name, arguments))
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
        """One line for one failure, the most telling leaf of whatever the SDK raised."""
        exc = _leaf(exc)
        where, t = self.where, self.target
        if isinstance(exc, MCPError):
            return exc
        if isinstance(exc, SDKError):
            message = " ".join(exc.error.message.split())[:300]  # pydantic's messages span lines
            if exc.code == mcp_types.CONNECTION_CLOSED:
                return MCPTransportError(f"{where} closed the connection during {what}{self._child_note()}")
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                return MCPTransportError(f"{where} timed out after {t.timeout:g}s during {what}{self._child_note()}")
            if self._http_status and message in _HTTP_STAND_INS:
                return MCPTransportError(f"{where} answered HTTP {self._http_status} to {what}")
            if exc.code == mcp_types.PARSE_ERROR:
                seen = re.search(r"input_value=(.*?), input_type", message)
                return MCPProtocolError(
                    f"{where} answered {what} with something that is not JSON-RPC"
                    + (f": {seen.group(1)[:120]}" if seen else f" ({message})")
                )
            return MCPProtocolError(f"{where} returned JSON-RPC error {exc.code} for {what}: {message}")
        if isinstance(exc, pydantic.ValidationError):
            line = _bad_input(exc)
            if line is not None:
                stream = "stdout" if t.transport == "stdio" else "its response"
                return MCPProtocolError(
                    f"{where} wrote something that is not JSON-RPC to {stream} during {what}: {line[:120]!r}"
                    + (" (a stdio server must log to stderr)" if t.transport == "stdio" else "")
                )
            return MCPProtocolError(f"{where} sent a malformed answer to {what}: {_first_error(exc)}")
        if t.transport == "stdio" and isinstance(exc, OSError) and what == "initialize":
            reason = "not found" if isinstance(exc, FileNotFoundError) else (exc.strerror or str(exc))
            return MCPTransportError(f"cannot start {where}: {t.command[0]!r} {reason}")
        if isinstance(exc, (httpx2.TimeoutException, TimeoutError)):
            return MCPTransportError(f"{where} timed out after {t.timeout:g}s during {what}")
        if isinstance(exc, httpx2.ConnectError):
            return MCPTransportError(f"cannot connect to {where}: {exc}")
        if isinstance(exc, httpx2.HTTPStatusError):
            status = f"{exc.response.status_code} {exc.response.reason_phrase}".strip()
            return MCPTransportError(f"{where} answered HTTP {status} to {what}")
        return MCPTransportError(f"{where} failed during {what}: {type(exc).__name__}: {exc}")

    def _child_note(self) -> str:
        """For stdio: the last line the child wrote to stderr, which usually says why it ended."""
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            lines = [ln.strip() for ln in self._stderr.read()[-4000:].splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return f" (the server process ended or stopped answering; its stderr: {lines[-1][:200]!r})" if lines else (
            " (the server process ended or stopped answering; it wrote nothing to stderr)"
        )


@contextlib.asynccontextmanager
async def _owned_http_transport(url: str, factory: Callable[..., httpx2.AsyncClient]) -> AsyncIterator[Any]:
    """Streamable HTTP over our own httpx2 client (headers, timeouts, status hook), closed after."""
    async with factory() as http, streamable_http_client(url, http_client=http) as streams:
        yield streams


@contextlib.contextmanager
def _quiet_sdk_logs() -> Iterator[None]:
    """The SDK logs transport faults with tracebacks at ERROR; we report each as one error line.

    Its loggers are raised to CRITICAL while a session runs, unless the user asked for DEBUG.
    """
    logger = logging.getLogger("mcp")
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


def _leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside (nested) exception groups, preferring SDK errors."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(exc)
    for kind in (MCPError, SDKError, pydantic.ValidationError, OSError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0] if leaves else exc


def _bad_input(exc: pydantic.ValidationError) -> str | None:
    """The raw text of a line that failed JSON parsing, if that is what ``exc`` is."""
    for err in exc.errors():
        if err.get("type") == "json_invalid" and isinstance(err.get("input"), str):
            return str(err["input"])
    return None


def _first_error(exc: pydantic.ValidationError) -> str:
    errs = exc.errors()
    if not errs:
        return str(exc)[:200]
    loc = ".".join(str(p) for p in errs[0].get("loc", ()))
    return f"{errs[0].get('msg')} at {loc or 'the top'}"[:200]


def result_text(result: dict[str, Any]) -> str:
    """The concatenated text blocks of a tool result (how plain-text tools answer)."""
    blocks = result.get("content")
    if not isinstance(blocks, list):
        return ""
    return "\n".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text")


def result_json(result: dict[str, Any]) -> list[Any]:
    """Candidate JSON payloads of a tool result, best first.

    ``structuredContent`` first, then its ``{"result": ...}`` wrapper (the Python SDK wraps
    non-object returns that way), then the text content parsed as JSON.
    """
    out: list[Any] = []
    sc = result.get("structuredContent")
    if sc is not None:
        out.append(sc)
        if isinstance(sc, dict) and set(sc) == {"result"}:
            out.append(sc["result"])
    text = result_text(result)
    if text.strip():
        try:
            out.append(json.loads(text))
        except ValueError:
            # Some servers send one JSON text block per item.
            blocks = [b for b in result.get("content") or [] if isinstance(b, dict) and b.get("type") == "text"]
            try:
                out.append([json.loads(str(b.get("text", ""))) for b in blocks])
            except ValueError:
                log.debug("tool result text is not JSON: %.100s", text)
    return out
