"""iter_mcp_nodes end to end against the SDK's real server, both response modes, every paging
mode; plus the mapping mistakes a user makes, which must fail with the flag to fix them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgspec
import pytest

from amygdala_vllm.errors import MCPProtocolError
from amygdala_vllm.pairs.mcp_mapping import PRESETS, MCPMapping
from amygdala_vllm.pairs.mcp_source import iter_mcp_nodes
from amygdala_vllm.pairs.nodes import Node
from mcp_fixture_server import serve_memory_graph

NODES = [
    {"key": "identity.md#boundaries", "content": "I keep my boundaries even when it costs warmth.\nwarmth:3 clarity:9",
     "type": "semantic", "category": "core"},
    {"key": "journal/2026-03-14#evening", "content": "Long day.\n\nStill, the talk with R. was kind.\ntiredness:8\nwarmth:9",
     "type": "daily", "category": None},
    {"key": "journal/2026-03-15#morning", "content": "Woke up early; the Links: word inside a line stays.\nclarity:7",
     "type": "daily"},
    {"key": "patterns/frustration", "content": "When plans slip I get short with people.\nfrustration:9",
     "type": "weekly", "category": "pattern"},
    {"key": "journal/2026-03-16", "content": "One line.", "type": "session"},
]
EXPECTED = [Node(key=n["key"], content=n["content"], type=n["type"], category=n.get("category")) for n in NODES]

modes = pytest.mark.parametrize("json_response", [False, True], ids=["sse", "json"])


def _with(base: MCPMapping, **changes: Any) -> MCPMapping:
    return msgspec.structs.replace(base, **changes)


@modes
def test_upstream_preset_cursor_paging_and_fetch(json_response: bool) -> None:
    calls: list[tuple[str, dict]] = []
    with serve_memory_graph(NODES, json_response=json_response, page_size=2, calls=calls) as url:
        nodes = list(iter_mcp_nodes(url, PRESETS["upstream"], timeout=5))
    assert nodes == EXPECTED  # full text from memory_render, links section cut off
    assert [a["cursor"] for t, a in calls if t == "memory_query"] == [None, "2", "4"]
    assert [a["key"] for t, a in calls if t == "memory_render"] == [n["key"] for n in NODES]


@modes
def test_server_memory_preset_structured_content(json_response: bool) -> None:
    with serve_memory_graph(NODES, "server-memory", json_response=json_response) as url:
        nodes = list(iter_mcp_nodes(url, PRESETS["server-memory"], timeout=5))
    # observations are the content's lines, joined back; server-memory has no categories
    assert nodes == [msgspec.structs.replace(n, category=None) for n in EXPECTED]


@pytest.mark.parametrize("count", [5, 6, 0])
def test_page_number_paging(count: int) -> None:
    graph = [dict(NODES[i % 5], key=f"n{i}") for i in range(count)]
    calls: list[tuple[str, dict]] = []
    mapping = _with(PRESETS["upstream"], list_tool="memory_pages", paging="page", page_size=3,
                    items_path="items", fetch_tool=None)
    with serve_memory_graph(graph, calls=calls) as url:
        nodes = list(iter_mcp_nodes(url, mapping, timeout=5))
    assert [n.key for n in nodes] == [g["key"] for g in graph]
    assert [n.content for n in nodes] == [g["content"] for g in graph]
    assert [a["page"] for _, a in calls] == list(range(1, count // 3 + 2))


def test_listing_content_without_fetch_is_the_preview() -> None:
    """Proves the fetch tool is what supplies the full text in the upstream preset."""
    mapping = _with(PRESETS["upstream"], fetch_tool=None)
    with serve_memory_graph(NODES) as url:
        nodes = list(iter_mcp_nodes(url, mapping, timeout=5))
    assert nodes[0].content.endswith("...") and nodes[0].content != NODES[0]["content"]


def test_strip_after_none_keeps_links() -> None:
    with serve_memory_graph(NODES[:2]) as url:
        nodes = list(iter_mcp_nodes(url, _with(PRESETS["upstream"], fetch_strip_after=None), timeout=5))
    assert nodes[0].content.startswith(NODES[0]["content"] + "\n\nLinks:\n- -> journal/2026-03-14#evening")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"key_field": "id"}, r"item 0 of MCP tool 'read_graph' .* no key field 'id' \(fields: entityType, name, "
                              r"observations\); set --mcp-key-field"),
        ({"content_field": "text"}, r"item 0 .*key 'identity.md#boundaries'.* no content field 'text'.*"
                                    r"set --mcp-content-field"),
        ({"content_field": "entityType.x"}, "no content field"),
        ({"items_path": "nodes"}, r"no list at items_path 'nodes' \(the result has top-level keys \['entities', "
                                  r"'relations'\]\); set --mcp-items-path"),
        ({"list_tool": "memory_query"}, r"no tool 'memory_query'; available: read_graph"),
        ({"content_field": "name.0"}, r"content field 'name.0' is a NoneType|no content field"),
    ],
)
def test_mapping_mistakes_name_the_flag(changes: dict[str, Any], message: str) -> None:
    with serve_memory_graph(NODES, "server-memory") as url:
        with pytest.raises(MCPProtocolError, match=message):
            list(iter_mcp_nodes(url, _with(PRESETS["server-memory"], **changes), timeout=5))


def test_fetch_of_unknown_key_is_an_error() -> None:
    mapping = _with(PRESETS["upstream"], key_field="type")  # keys the renderer does not know
    with serve_memory_graph(NODES) as url:
        with pytest.raises(MCPProtocolError, match=r"'memory_render' .* failed: .*no node with key 'semantic'"):
            list(iter_mcp_nodes(url, mapping, timeout=5))


# -- paging that would never end, through MockTransport -----------------------------------


def _tool_server(payload: Any, log: list[dict]) -> httpx.MockTransport:
    """A JSON-mode server with one tool 'ls' that always answers ``payload`` (as JSON text)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            log.append({"method": "DELETE"})
            return httpx.Response(200)
        body = json.loads(request.content)
        log.append(body)
        if "id" not in body:
            return httpx.Response(202)
        result: dict[str, Any] = {
            "initialize": {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {}},
            "tools/list": {"tools": [{"name": "ls"}]},
        }.get(body["method"], {"content": [{"type": "text", "text": json.dumps(payload)}]})
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": result},
                              headers={"Mcp-Session-Id": "s1"} if body["method"] == "initialize" else {})

    return httpx.MockTransport(handler)


def test_repeated_cursor_is_caught() -> None:
    payload = {"items": [{"key": "a", "content": "x"}], "nextCursor": "same"}
    mapping = MCPMapping(list_tool="ls", paging="cursor")
    with pytest.raises(MCPProtocolError, match="returned cursor 'same' twice"):
        list(iter_mcp_nodes("http://127.0.0.1:9/mcp", _with(mapping, items_path="items"),
                            transport=_tool_server(payload, [])))


def test_server_ignoring_page_args_is_caught() -> None:
    payload = [{"key": "a", "content": "x"}, {"key": "b", "content": "y"}]
    mapping = MCPMapping(list_tool="ls", paging="page", page_size=2)
    with pytest.raises(MCPProtocolError, match="same page for page 1 and 2"):
        list(iter_mcp_nodes("http://127.0.0.1:9/mcp", mapping, transport=_tool_server(payload, [])))


def test_stopping_early_closes_the_session() -> None:
    log: list[dict] = []
    payload = [{"key": str(i), "content": "x", "type": 3} for i in range(5)]
    gen = iter_mcp_nodes("http://127.0.0.1:9/mcp", MCPMapping(list_tool="ls"), transport=_tool_server(payload, log))
    assert next(gen) == Node(key="0", content="x", type="3")
    gen.close()
    assert log[-1] == {"method": "DELETE"}
