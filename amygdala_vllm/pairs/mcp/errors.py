"""What the MCP SDK raises, turned into one line of the project's error tree.

The SDK reports a failure in many shapes: its own ``MCPError`` with a JSON-RPC code (a closed
connection, a timeout, a parse error, an HTTP status it has replaced by a stand-in message),
pydantic errors for output that is not JSON-RPC, ``OSError`` from spawning a stdio child,
``httpx2`` errors, all of it often nested in anyio exception groups. :func:`translate` picks
the telling leaf and words it for a user: what failed, on which server (never its headers),
and for a stdio child that died, the last line it wrote to stderr.
"""

from __future__ import annotations

import re

import httpx2
import mcp_types
import pydantic
from mcp.shared.exceptions import MCPError as SDKError

from amygdala_vllm.errors import MCPError, MCPProtocolError, MCPTransportError

from .target import ServerTarget

__all__ = ["translate", "session_lost", "leaves"]

# The SDK answers an HTTP error status with these stand-ins; the status itself is ours to add.
_HTTP_STAND_INS = ("Server returned an error response", "Not Found", "Session terminated")


def session_lost(exc: BaseException, http_status: str | None, renewed: bool = False) -> bool:
    """True when a Streamable HTTP server no longer knows our session (HTTP 404 to a request carrying
    its id; the spec then asks the client to start a new session), so the request may be retried.

    ``renewed``: the session this request went out on is being or has been replaced (another call
    saw the 404 first), so its invalid-request answer, or the connection closing under it as the
    forgotten session is closed, is the same loss.
    """
    leaf = _leaf(exc)
    if not isinstance(leaf, SDKError):
        return False
    if renewed:
        return leaf.code in (mcp_types.INVALID_REQUEST, mcp_types.CONNECTION_CLOSED)
    return leaf.code == mcp_types.INVALID_REQUEST and (http_status or "").startswith("404")


def translate(
    exc: BaseException,
    what: str,
    target: ServerTarget,
    *,
    http_status: str | None = None,
    stderr_tail: str | None = None,
) -> MCPError:
    """One error for one failure during ``what`` (``initialize``, ``tools/call NAME`` ...).

    ``http_status`` is the last HTTP error status seen (``"401 Unauthorized"``);
    ``stderr_tail`` the end of a stdio child's stderr (None for HTTP servers).
    """
    exc = _leaf(exc)
    where, t = target.where, target
    if isinstance(exc, MCPError):
        return exc
    if isinstance(exc, SDKError):
        message = " ".join(exc.error.message.split())[:300]  # pydantic's messages span lines
        if exc.code == mcp_types.CONNECTION_CLOSED:
            return MCPTransportError(f"{where} closed the connection during {what}{_child_note(stderr_tail)}")
        if exc.code == mcp_types.REQUEST_TIMEOUT:
            return MCPTransportError(f"{where} timed out after {t.timeout:g}s during {what}{_child_note(stderr_tail)}")
        if http_status and message in _HTTP_STAND_INS:
            return MCPTransportError(f"{where} answered HTTP {http_status} to {what}")
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


def _child_note(stderr_tail: str | None) -> str:
    """For stdio: the last line the child wrote to stderr, which usually says why it ended."""
    if stderr_tail is None:
        return ""
    lines = [ln.strip() for ln in stderr_tail.splitlines() if ln.strip()]
    if not lines:
        return " (the server process ended or stopped answering; it wrote nothing to stderr)"
    return f" (the server process ended or stopped answering; its stderr: {lines[-1][:200]!r})"


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (itself if it is not a group), nested groups flattened."""
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for sub in exc.exceptions for leaf in leaves(sub)]


def _leaf(exc: BaseException) -> BaseException:
    """The most telling non-group exception inside (nested) exception groups."""
    found = leaves(exc)
    for kind in (MCPError, SDKError, pydantic.ValidationError, OSError):
        for leaf in found:
            if isinstance(leaf, kind):
                return leaf
    return found[0] if found else exc


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
