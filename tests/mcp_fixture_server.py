"""Real MCP memory servers for tests, built with the official SDK.

Why real: the client's contract is with MCP servers as deployed, and the SDK's server is the
reference implementation of every transport (stdio, Streamable HTTP with sessions and SSE or
JSON answers, legacy SSE). Serving it with uvicorn on 127.0.0.1, or running
``mcp_stdio_server.py`` as a child process, keeps the tests hermetic while exercising real
pipes, sockets and framing.

``build_server(nodes, style=...)`` styles:

- ``"upstream"``: a replica of the upstream memory server's tools as far as they are known
  (docs/mcp.md): plain text only. ``memory_query {"query"}`` runs a small pipeline query
  language (``all | type:X | offset:N | limit:N``) and lists one key per line, or
  ``No results``; a missing ``query`` is a tool error ("query is required"), as the upstream
  handler reads it. ``memory_render {"key"}`` returns the node's content, a blank line, then
  its links as ``→ other/key (0.80)`` lines. ``memory_links`` / ``memory_search`` exist too.
- ``"json"``: a JSON-listing server. ``memory_query(cursor, limit)`` lists
  ``{"nodes": [{key, content (a preview), type, category}], "next_cursor"}`` as JSON;
  ``memory_render(key)`` returns the full text followed by a ``Links:`` section;
  ``memory_pages(page, page_size)`` lists ``{"items": [...]}`` by page number with the full content.
- ``"server-memory"``: the official server-memory's ``read_graph`` with structured
  output ``{entities: [{name, entityType, observations}], relations}``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

__all__ = ["serve_memory_graph", "serve_asgi", "stdio_argv", "build_server", "require_header", "PREVIEW_CHARS", "Style"]

PREVIEW_CHARS = 24
Style = Literal["upstream", "json", "server-memory"]


class Entity(BaseModel):
    name: str
    entityType: str
    observations: list[str]


class Graph(BaseModel):
    entities: list[Entity]
    relations: list[dict[str, str]]


def _links(nodes: Sequence[Mapping[str, Any]], i: int) -> list[str]:
    """Every node links to its neighbours, so the links section is never empty."""
    return [str(nodes[j]["key"]) for j in (i - 1, i + 1) if 0 <= j < len(nodes)]


def run_query(nodes: Sequence[Mapping[str, Any]], query: str) -> list[str]:
    """The replica's query language: ``all`` then ``type:X`` / ``offset:N`` / ``limit:N`` stages."""
    source, *stages = [s.strip() for s in query.split("|")]
    if source != "all":
        raise ToolError(f"unknown query source {source!r}")
    chosen = list(nodes)
    for stage in stages:
        name, _, arg = stage.partition(":")
        if name == "type":
            chosen = [n for n in chosen if n.get("type") == arg]
        elif name in ("limit", "offset") and arg.isdigit():
            chosen = chosen[: int(arg)] if name == "limit" else chosen[int(arg):]
        else:
            raise ToolError(f"bad query stage {stage!r}")
    return [str(n["key"]) for n in chosen]


def build_server(
    nodes: Sequence[Mapping[str, Any]],
    style: Style = "upstream",
    *,
    page_size: int = 3,
    calls: list[tuple[str, dict[str, Any]]] | None = None,
    list_delay: float = 0.0,
    refuse: frozenset[str] = frozenset(),
) -> MCPServer:
    """An MCPServer serving ``nodes`` (dicts with key, content, optional type/category).

    ``calls``, if given, records every tool call as (tool, arguments) for assertions;
    ``list_delay`` makes the listing tool take that long; ``refuse`` lists keys whose render fails.
    """
    nodes = [dict(n) for n in nodes]
    by_key = {str(n["key"]): i for i, n in enumerate(nodes)}
    server = MCPServer("fixture-memory", log_level="WARNING")

    def record(name: str, **args: Any) -> None:
        if calls is not None:
            calls.append((name, args))

    def listed(n: Mapping[str, Any], preview: bool) -> dict[str, Any]:
        content = str(n["content"])
        return {
            "key": n["key"],
            "content": content[:PREVIEW_CHARS] + "..." if preview else content,
            "type": n.get("type"),
            "category": n.get("category"),
        }

    if style == "upstream":

        @server.tool(structured_output=False)
        async def memory_query(query: str | None = None, format: str = "compact") -> str:
            """Run a query pipeline, e.g. "all | type:episodic | limit:10"; compact output lists keys."""
            record("memory_query", query=query, format=format)
            if query is None:
                raise ToolError("query is required")
            await anyio.sleep(list_delay)
            keys = run_query(nodes, query)
            return "\n".join(keys) if keys else "No results"

        @server.tool(structured_output=False)
        def memory_render(key: str | None = None) -> str:
            """Read a memory node's content and links."""
            record("memory_render", key=key)
            if key is None:
                raise ToolError("key is required")
            if key not in by_key or key in refuse:
                raise ToolError(f"node not found: {key}")
            i = by_key[key]
            links = "\n".join(f"→ {k} ({0.9 - 0.1 * j:.2f})" for j, k in enumerate(_links(nodes, i)))
            return f"{nodes[i]['content']}\n\n{links}\n"

        @server.tool(structured_output=False)
        def memory_links(key: str | None = None) -> str:
            """A node's links."""
            if key is None or key not in by_key:
                raise ToolError("key is required")
            return "\n".join(_links(nodes, by_key[key]))

        @server.tool(structured_output=False)
        def memory_search(keys: list[str] | None = None) -> str:
            """Spreading activation from seed keys (here: their neighbours)."""
            if not keys:
                raise ToolError("keys is required")
            return "\n".join(k for key in keys if key in by_key for k in _links(nodes, by_key[key]))

    elif style == "json":

        @server.tool()
        async def memory_query(cursor: str | None = None, limit: int = page_size, query: str = "") -> dict:
            """List nodes (all when query is empty), cursor-paged."""
            record("memory_query", cursor=cursor, limit=limit, query=query)
            await anyio.sleep(list_delay)
            start = int(cursor) if cursor else 0
            chosen = [n for n in nodes if query.lower() in str(n["content"]).lower()]
            page = chosen[start : start + limit]
            nxt = str(start + limit) if start + limit < len(chosen) else None
            return {"nodes": [listed(n, True) for n in page], "next_cursor": nxt}

        @server.tool()
        def memory_pages(page: int = 1, page_size: int = page_size) -> dict:
            """List nodes by page number (1-based), full content."""
            record("memory_pages", page=page, page_size=page_size)
            chunk = nodes[(page - 1) * page_size : page * page_size]
            return {"items": [listed(n, False) for n in chunk], "page": page}

        @server.tool()
        def memory_render(key: str) -> str:
            """A node's text followed by its links, as the agent reads it."""
            record("memory_render", key=key)
            if key not in by_key or key in refuse:
                raise ToolError(f"no node with key {key!r}")
            i = by_key[key]
            links = "\n".join(f"- -> {k}" for k in _links(nodes, i))
            return f"{nodes[i]['content']}\n\nLinks:\n{links}\n"

        @server.tool()
        def memory_search(query: str, limit: int = 10) -> dict:
            """Substring search (present so the tool list looks like a real server's)."""
            hits = [n for n in nodes if query.lower() in str(n["content"]).lower()][:limit]
            return {"nodes": [listed(n, True) for n in hits]}

        @server.tool()
        def journal_tail(n: int = 5) -> dict:
            """The last n journal nodes."""
            return {"nodes": [listed(x, True) for x in nodes if str(x["key"]).startswith("journal")][-n:]}

    elif style == "server-memory":

        @server.tool()
        def read_graph() -> Graph:
            """The whole knowledge graph."""
            record("read_graph")
            ents = [
                Entity(name=str(n["key"]), entityType=str(n.get("type") or "node"),
                       observations=str(n["content"]).split("\n"))
                for n in nodes
            ]
            rels = [{"from": str(nodes[i]["key"]), "to": k, "relationType": "links"}
                    for i in range(len(nodes)) for k in _links(nodes, i)[1:]]
            return Graph(entities=ents, relations=rels)

    else:
        raise ValueError(f"unknown fixture style {style!r}")
    return server


def require_header(app: Any, name: str, value: str, seen: list[str]) -> Callable[..., Any]:
    """ASGI middleware: every HTTP request must carry ``name: value`` (else 401); logs each request."""
    wanted = (name.lower().encode(), value.encode())

    async def guarded(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            seen.append(f"{scope['method']} {scope['path']}")
            if wanted not in [(k.lower(), v) for k, v in scope["headers"]]:
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"missing or wrong " + wanted[0]})
                return
        await app(scope, receive, send)

    return guarded


@contextmanager
def serve_asgi(app: Any, path: str = "/mcp") -> Iterator[str]:
    """Run any ASGI app with uvicorn on 127.0.0.1 (ephemeral port) in a thread; yield its URL."""
    import uvicorn  # here: the stdio server script needs no web server

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="auto",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mcp-fixture", daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("fixture server did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        server.should_exit = True
        thread.join(5)


@contextmanager
def serve_memory_graph(
    nodes: Sequence[Mapping[str, Any]],
    style: Style = "upstream",
    *,
    transport: Literal["http", "sse"] = "http",
    json_response: bool = False,
    header: tuple[str, str] | None = None,
    seen: list[str] | None = None,
    **server_options: Any,
) -> Iterator[str]:
    """Serve ``nodes`` over HTTP from a real SDK server; yield the endpoint URL.

    Streamable HTTP answers in SSE unless ``json_response``; ``transport="sse"`` serves the
    legacy SSE transport at ``/sse``. ``header=(name, value)`` makes every request need it
    (``seen`` collects the requests). Other options go to :func:`build_server`.
    """
    server = build_server(nodes, style, **server_options)
    if transport == "sse":
        app, path = server.sse_app(), "/sse"
    else:
        app, path = server.streamable_http_app(json_response=json_response), "/mcp"
    if header is not None:
        app = require_header(app, *header, seen if seen is not None else [])
    with serve_asgi(app, path=path) as url:
        yield url


STDIO_SERVER = Path(__file__).resolve().parent / "mcp_stdio_server.py"


def stdio_argv(graph: Path, *extra: str) -> list[str]:
    """The command that serves the JSONL export ``graph`` over stdio (``mcp_stdio_server.py``; ``--style`` etc. in ``extra``)."""
    return [sys.executable, str(STDIO_SERVER), str(graph), *extra]
