"""A small synchronous MCP client for the Streamable HTTP transport, on httpx.

Why not the official SDK's client: it is async, pulls the whole SDK into the
``pairs`` install, and hides the transport failures that we must turn into one
clear line each. We only need ``initialize``, ``tools/list`` and ``tools/call``.

Every failure leaves this module as :class:`MCPTransportError` (could not talk
HTTP: unreachable, refused, timed out, 4xx/5xx) or :class:`MCPProtocolError`
(talked, but the answer is not a usable JSON-RPC/MCP result), naming the URL.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from amygdala_vllm import __version__
from amygdala_vllm.errors import MCPProtocolError, MCPTransportError, UsageError

__all__ = ["MCPClient", "PROTOCOL_VERSION", "result_text", "result_json"]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "2025-06-18"
# Versions whose tools/list + tools/call we know; a server may negotiate any of them.
KNOWN_VERSIONS = frozenset({"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"})
_ACCEPT = "application/json, text/event-stream"
_MAX_TOOL_PAGES = 1000


class _SessionExpired(Exception):
    """HTTP 404 on a request that carried a session id: the server forgot us."""


class MCPClient:
    """One MCP session with one server; use as a context manager.

    ``transport`` lets unit tests drive failure shapes through ``httpx.MockTransport``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise UsageError(f"invalid MCP server URL {url!r}: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise UsageError(f"MCP server URL must be http(s)://host[:port]/path, got {url!r}")
        self.url = url
        self.timeout = timeout
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), transport=transport)
        self._ids = itertools.count(1)
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self.server_info: dict[str, Any] = {}
        self.reinitialisations = 0

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> MCPClient:
        try:
            self.initialize()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def initialize(self) -> dict[str, Any]:
        """Handshake: ``initialize``, remember the session id, send ``notifications/initialized``."""
        self.session_id = None
        self.protocol_version = None
        params = {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "amygdala-vllm", "version": __version__},
        }
        result, headers = self._exchange("initialize", params)
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        if not isinstance(version, str):
            raise MCPProtocolError(f"MCP server {self.url} sent an initialize result without protocolVersion")
        if version not in KNOWN_VERSIONS:
            log.warning("MCP server %s negotiated unknown protocol version %s; trying anyway", self.url, version)
        self.protocol_version = version
        self.session_id = headers.get("mcp-session-id")
        self.server_info = result.get("serverInfo") or {}
        log.debug("MCP %s: protocol %s, session %s, server %s", self.url, version, self.session_id, self.server_info)
        self._notify("notifications/initialized")
        return result

    def close(self) -> None:
        """End the session politely (DELETE); a server that does not care is fine."""
        try:
            if self.session_id is not None:
                self._http.delete(self.url, headers=self._headers())
        except httpx.HTTPError as exc:
            log.debug("MCP %s: DELETE of session failed, ignored: %s", self.url, exc)
        finally:
            self.session_id = None
            self._http.close()

    # -- MCP methods ----------------------------------------------------------------------

    def list_tools(self) -> list[dict[str, Any]]:
        """Every tool the server offers, following ``nextCursor``."""
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_TOOL_PAGES):
            result = self.request("tools/list", {"cursor": cursor} if cursor else {})
            page = result.get("tools")
            if not isinstance(page, list):
                raise MCPProtocolError(f"MCP server {self.url}: tools/list result has no 'tools' list")
            tools.extend(t for t in page if isinstance(t, dict))
            cursor = result.get("nextCursor")
            if not cursor:
                return tools
        raise MCPProtocolError(f"MCP server {self.url}: tools/list kept paging past {_MAX_TOOL_PAGES} pages")

    def require_tools(self, names: Iterable[str]) -> None:
        """Fail early, listing what the server has, if a tool the mapping needs is missing."""
        available = sorted(str(t.get("name")) for t in self.list_tools())
        missing = [n for n in names if n not in available]
        if missing:
            raise MCPProtocolError(
                f"MCP server {self.url} has no tool {', '.join(map(repr, missing))}; "
                f"available: {', '.join(available) or '(none)'} "
                "(choose others with --mcp-list-tool / --mcp-fetch-tool or --mcp-preset)"
            )

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call a tool; an ``isError`` result becomes MCPProtocolError with the server's text."""
        result = self.request("tools/call", {"name": name, "arguments": arguments})
        if result.get("isError"):
            msg = result_text(result).strip() or "(no message)"
            raise MCPProtocolError(f"MCP tool {name!r} on {self.url} failed: {msg}")
        return result

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One JSON-RPC request; an expired session is re-initialised once and retried."""
        try:
            result, _ = self._exchange(method, params)
        except _SessionExpired:
            log.info("MCP %s: session expired during %s; re-initialising once", self.url, method)
            self.reinitialisations += 1
            self.initialize()
            try:
                result, _ = self._exchange(method, params)
            except _SessionExpired:
                raise MCPTransportError(
                    f"MCP server {self.url} answered HTTP 404 to {method}: session expired again "
                    "right after re-initialising"
                ) from None
        if not isinstance(result, dict):
            raise MCPProtocolError(f"MCP server {self.url}: {method} result is not an object: {result!r:.200}")
        return result

    # -- transport ------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        h = {"Accept": _ACCEPT, "Content-Type": "application/json"}
        if self.session_id is not None:
            h["Mcp-Session-Id"] = self.session_id
        if self.protocol_version is not None:
            h["MCP-Protocol-Version"] = self.protocol_version
        return h

    def _notify(self, method: str) -> None:
        """Send a notification; the server answers 202 with no body."""
        with self._send({"jsonrpc": "2.0", "method": method}) as resp:
            self._check_status(resp, method)

    def _exchange(self, method: str, params: dict[str, Any]) -> tuple[Any, httpx.Headers]:
        """POST one request and return (result, response headers)."""
        rid = next(self._ids)
        with self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}) as resp:
            self._check_status(resp, method)
            ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
            try:
                if ctype == "text/event-stream":
                    message = self._from_sse(resp, rid, method)
                elif ctype == "application/json":
                    message = self._from_json(resp.read(), rid, method)
                else:
                    raise MCPProtocolError(
                        f"MCP server {self.url} answered {method} with Content-Type {ctype or '(none)'!r}, "
                        "expected application/json or text/event-stream"
                    )
            except httpx.TimeoutException as exc:
                raise self._timed_out(method) from exc
            except httpx.HTTPError as exc:
                raise MCPTransportError(f"MCP server {self.url} broke off the {method} response: {exc}") from exc
            if "error" in message:
                err = message["error"] if isinstance(message["error"], dict) else {}
                raise MCPProtocolError(
                    f"MCP server {self.url} returned JSON-RPC error {err.get('code')} for {method}: "
                    f"{err.get('message', message['error'])}"
                )
            if "result" not in message:
                raise MCPProtocolError(
                    f"MCP server {self.url}: response to {method} has neither result nor error"
                )
            return message["result"], resp.headers

    def _send(self, body: dict[str, Any]) -> Any:
        """Open a streamed POST; transport failures become MCPTransportError."""
        method = body["method"]
        try:
            req = self._http.build_request("POST", self.url, headers=self._headers(), json=body)
            resp = self._http.send(req, stream=True)
        except httpx.TimeoutException as exc:
            raise self._timed_out(method) from exc
        except httpx.ConnectError as exc:
            raise MCPTransportError(f"cannot connect to MCP server {self.url}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise MCPTransportError(
                f"MCP server {self.url} failed during {method}: {type(exc).__name__}: {exc}"
            ) from exc
        return _Closing(resp)

    def _timed_out(self, method: str) -> MCPTransportError:
        return MCPTransportError(f"MCP server {self.url} timed out after {self.timeout:g}s during {method}")

    def _check_status(self, resp: httpx.Response, method: str) -> None:
        if resp.status_code == 404 and "Mcp-Session-Id" in resp.request.headers:
            raise _SessionExpired
        if resp.status_code >= 400:
            try:
                detail = resp.read().decode("utf-8", "replace").strip()[:300]
            except httpx.HTTPError:
                detail = ""
            raise MCPTransportError(
                f"MCP server {self.url} answered HTTP {resp.status_code} {resp.reason_phrase} to {method}"
                + (f": {detail}" if detail else "")
            )

    def _from_json(self, raw: bytes, rid: int, method: str) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise MCPProtocolError(
                f"MCP server {self.url} answered {method} with invalid JSON: {raw[:200]!r}"
            ) from exc
        for msg in data if isinstance(data, list) else [data]:
            if isinstance(msg, dict) and msg.get("id") == rid:
                return msg
        raise MCPProtocolError(f"MCP server {self.url}: no response with id {rid} to {method} in {raw[:200]!r}")

    def _from_sse(self, resp: httpx.Response, rid: int, method: str) -> dict[str, Any]:
        """Read SSE events until the one answering ``rid``; others (notifications) are skipped."""
        for event, data in _sse_events(resp.iter_lines()):
            if event not in ("message", "") or not data:
                continue
            try:
                msg = json.loads(data)
            except ValueError as exc:
                raise MCPProtocolError(
                    f"MCP server {self.url} sent a malformed SSE event for {method}: {data[:200]!r}"
                ) from exc
            if isinstance(msg, dict) and msg.get("id") == rid and ("result" in msg or "error" in msg):
                return msg
            log.debug("MCP %s: skipping SSE message %.200s", self.url, data)
        raise MCPProtocolError(
            f"MCP server {self.url}: SSE stream ended without a response to {method} (id {rid})"
        )


class _Closing:
    """Context manager closing a streamed response."""

    def __init__(self, resp: httpx.Response) -> None:
        self.resp = resp

    def __enter__(self) -> httpx.Response:
        return self.resp

    def __exit__(self, *exc: object) -> None:
        self.resp.close()


def _sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Parse ``text/event-stream`` lines into (event, data) pairs per the WHATWG rules we need."""
    event, data = "", []
    for line in lines:
        if line == "":
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield event or "message", "\n".join(data)


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
