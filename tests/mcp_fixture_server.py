"""A real MCP memory server for tests, built with the official SDK.

Why real: the client's contract is with MCP servers as deployed, and the SDK's
server is the reference implementation of Streamable HTTP (sessions, SSE vs JSON
responses, error shapes). Serving it with uvicorn on 127.0.0.1 keeps the tests
hermetic while exercising real sockets and real framing.

``serve_memory_graph(nodes, style=...)`` yields the endpoint URL. Styles:

- ``"upstream"``: the personal agent's shape. ``memory_query(cursor, limit)`` lists
  ``{"nodes": [{key, content (a preview), type, category}], "next_cursor"}`` as JSON
  text; ``memory_render(key)`` returns the full text followed by a ``Links:`` section;
  ``memory_pages(page, page_size)`` lists ``{"items": [...]}`` by page number with the
  full content; ``memory_search`` / ``journal_tail`` exist as in the real server.
- ``"server-memory"``: the official server-memory's ``read_graph`` with structured
  output ``{entities: [{name, entityType, observations}], relations}``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

__all__ = ["serve_memory_graph", "serve_asgi", "build_server", "PREVIEW_CHARS"]

PREVIEW_CHARS = 24


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


def build_server(
    nodes: Sequence[Mapping[str, Any]],
    style: Literal["upstream", "server-memory"] = "upstream",
    *,
    page_size: int = 3,
    calls: list[tuple[str, dict[str, Any]]] | None = None,
) -> MCPServer:
    """An MCPServer serving ``nodes`` (dicts with key, content, optional type/category).

    ``calls``, if given, records every tool call as (tool, arguments) for assertions.
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

        @server.tool()
        def memory_query(cursor: str | None = None, limit: int = page_size, query: str = "") -> dict:
            """List nodes (all when query is empty), cursor-paged."""
            record("memory_query", cursor=cursor, limit=limit, query=query)
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
            if key not in by_key:
                raise ToolError(f"no node with key {key!r}")
            i = by_key[key]
            links = "\n".join(f"- -> {k}" for k in _links(nodes, i))
            return f"{nodes[i]['content']}\n\nLinks:\n{links}\n"

        @server.tool()
        def memory_search(query: str, limit: int = 10) -> dict:
            """Substring search (present so the tool list looks like the real server's)."""
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


@contextmanager
def serve_asgi(app: Any, path: str = "/mcp") -> Iterator[str]:
    """Run any ASGI app with uvicorn on 127.0.0.1 (ephemeral port) in a thread; yield its URL."""
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
    style: Literal["upstream", "server-memory"] = "upstream",
    *,
    json_response: bool = False,
    page_size: int = 3,
    calls: list[tuple[str, dict[str, Any]]] | None = None,
) -> Iterator[str]:
    """Serve ``nodes`` from a real SDK server (SSE responses unless ``json_response``)."""
    server = build_server(nodes, style, page_size=page_size, calls=calls)
    app = server.streamable_http_app(json_response=json_response)
    with serve_asgi(app) as url:
        yield url
