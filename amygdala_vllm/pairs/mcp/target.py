"""Which MCP server ``pairs`` talks to, and how: the flags and environment turned into one value.

A memory server is reached either over HTTP (Streamable HTTP, or the legacy SSE transport of
2024-11-05 servers) or by running it as a child process and speaking over its stdin/stdout
(stdio: how the upstream memory server is run). Deployed HTTP servers may want headers
(``Authorization: Bearer ...``); those are secrets, so they are kept out of ``repr``, logs,
error messages and ``dataset.json``, and can come from :data:`HEADERS_ENV` instead of the
command line (shell history). Pure parsing, no I/O: :mod:`.client` does the talking.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from ...errors import UsageError

__all__ = ["HEADERS_ENV", "TRANSPORT_CHOICES", "DEFAULT_TRANSPORT", "Transport", "ServerTarget", "parse_headers", "make_target"]

HEADERS_ENV = "AMYGDALA_MCP_HEADERS"
"""Environment variable with extra HTTP headers, one ``Name: value`` per line."""

Transport = Literal["http", "sse", "stdio"]
TRANSPORT_CHOICES = ("auto", "http", "sse")
#: ``--mcp-transport``'s default: SSE for a URL ending in ``/sse``, else Streamable HTTP
DEFAULT_TRANSPORT = TRANSPORT_CHOICES[0]

# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True)
class ServerTarget:
    """One MCP server: an HTTP endpoint (``url``) or a command run as a child (``command``)."""

    transport: Transport
    url: str | None = None
    command: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 30.0
    """Seconds to wait for any one request's answer (and for the child to start)."""

    @property
    def where(self) -> str:
        """How error messages name the server (never with its headers or URL credentials)."""
        if self.transport == "stdio":
            line = shlex.join(self.command)
            return f"MCP server command [{line if len(line) <= 160 else line[:157] + '...'}]"
        return f"MCP server {_public_url(self.url or '')}"

    def describe(self) -> dict[str, Any]:
        """The source as recorded in ``dataset.json``: no header values, no URL credentials."""
        out: dict[str, Any] = {"transport": self.transport}
        if self.transport == "stdio":
            out["command"] = list(self.command)
        else:
            out["url"] = _public_url(self.url or "")
        if self.headers:
            out["header_names"] = sorted(self.headers)
        return out


def _public_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url


def parse_headers(lines: Sequence[str], where: str) -> dict[str, str]:
    """``Name: value`` strings -> a dict; the error for a bad one never repeats its value.

    A later header with the same name (case-insensitive) replaces an earlier one.
    """
    headers: dict[str, str] = {}
    for i, line in enumerate(lines, 1):
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon:
            raise UsageError(f"header {i} of {where} has no ':'; write it as 'Name: value' (value not shown)")
        if not _HEADER_NAME.match(name):
            raise UsageError(f"header {i} of {where}: {name!r} is not a valid header name")
        if not value:
            raise UsageError(f"header {i} of {where} ({name}) has an empty value")
        _put(headers, name, value)
    return headers


def _put(headers: dict[str, str], name: str, value: str) -> None:
    """Set a header, replacing any earlier one of the same name in another case."""
    for old in [k for k in headers if k.lower() == name.lower()]:
        del headers[old]
    headers[name] = value


def _auto_transport(url: str) -> Transport:
    """Legacy SSE servers expose ``.../sse``; everything else is taken as Streamable HTTP."""
    return "sse" if httpx.URL(url).path.rstrip("/").endswith("/sse") else "http"


def make_target(
    *,
    url: str | None,
    command: str | None,
    transport: str = DEFAULT_TRANSPORT,
    header_flags: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    timeout: float = ServerTarget.timeout,
) -> ServerTarget:
    """Check and combine the server flags: exactly one of ``url`` / ``command``.

    Headers come from :data:`HEADERS_ENV` (one per line) and then ``header_flags``
    (``--mcp-header``, repeatable; a flag wins over the variable for the same name).
    They only make sense over HTTP: a flag with a stdio command is an error, the
    variable is ignored there.
    """
    environ = os.environ if environ is None else environ
    if (url is None) == (command is None):
        raise UsageError("give exactly one of --memory-mcp-url and --memory-mcp-command")
    if transport not in TRANSPORT_CHOICES:
        raise UsageError(f"--mcp-transport must be one of {', '.join(TRANSPORT_CHOICES)}, got {transport!r}")
    if not timeout > 0:
        raise UsageError(f"--mcp-timeout must be > 0, got {timeout}")
    flag_headers = parse_headers(list(header_flags), "--mcp-header")
    if command is not None:
        if transport != "auto":
            raise UsageError("--mcp-transport applies to --memory-mcp-url; a command always speaks stdio")
        if flag_headers:
            raise UsageError("--mcp-header applies to HTTP servers, not to --memory-mcp-command")
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            raise UsageError(f"--memory-mcp-command cannot be split into words: {exc}") from exc
        if not argv:
            raise UsageError("--memory-mcp-command is empty")
        return ServerTarget(transport="stdio", command=argv, timeout=timeout)
    assert url is not None
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UsageError(f"invalid MCP server URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"MCP server URL must be http(s)://host[:port]/path, got {url!r}")
    env_lines = [ln for ln in environ.get(HEADERS_ENV, "").splitlines() if ln.strip()]
    headers = parse_headers(env_lines, HEADERS_ENV)
    for name, value in flag_headers.items():
        _put(headers, name, value)
    chosen: Transport = _auto_transport(url) if transport == "auto" else transport  # type: ignore[assignment]
    return ServerTarget(transport=chosen, url=url, headers=headers, timeout=timeout)
