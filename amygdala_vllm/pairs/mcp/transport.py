"""How the MCP client reaches a server: the SDK transport for a target, and the SDK's logs kept quiet.

A stdio target becomes a child process with the user's environment (minus our header variable)
and its stderr in a file the client quotes from when the child dies; an HTTP target becomes the
SDK's Streamable HTTP or legacy SSE transport over our own ``httpx2`` client, which carries the
user's headers and timeouts and reports every HTTP error status (the SDK keeps only a stand-in
message).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, BinaryIO

import httpx2
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from .target import HEADERS_ENV, ServerTarget

__all__ = ["sdk_transport", "quiet_sdk_logs"]


def sdk_transport(target: ServerTarget, stderr: BinaryIO | None,
                  on_response: Callable[[httpx2.Response], Awaitable[None]]) -> Any:
    """The SDK transport for ``target``; ``on_response`` sees every HTTP response (for its status)."""
    t = target
    if t.transport == "stdio":
        # The child gets the user's environment, as if run from their shell (the SDK would pass
        # only HOME/PATH/...), minus our header variable; its stderr goes to a file we quote
        # from when it dies, so a traceback there never reaches the terminal.
        env = {k: v for k, v in os.environ.items() if k != HEADERS_ENV}
        params = StdioServerParameters(command=t.command[0], args=list(t.command[1:]), env=env)
        return stdio_client(params, errlog=stderr or sys.stderr)  # type: ignore[arg-type]

    def http_client(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: Any = None
    ) -> httpx2.AsyncClient:
        # A long read timeout: the SDK keeps an SSE stream open between answers; each request's
        # own deadline is read_timeout_seconds. The hook keeps the HTTP status the SDK drops.
        return httpx2.AsyncClient(
            headers={**(headers or {}), **t.headers},
            timeout=timeout or httpx2.Timeout(t.timeout, read=max(300.0, t.timeout)),
            auth=auth,
            event_hooks={"response": [on_response]},
        )

    assert t.url is not None
    if t.transport == "sse":
        return sse_client(t.url, timeout=t.timeout, sse_read_timeout=max(300.0, t.timeout),
                          httpx_client_factory=http_client)
    return _owned_http_transport(t.url, http_client)


@contextlib.asynccontextmanager
async def _owned_http_transport(url: str, factory: Callable[..., httpx2.AsyncClient]) -> AsyncIterator[Any]:
    """Streamable HTTP over our own httpx2 client (headers, timeouts, status hook), closed after."""
    async with factory() as http, streamable_http_client(url, http_client=http) as streams:
        yield streams


@contextlib.contextmanager
def quiet_sdk_logs() -> Iterator[None]:
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
