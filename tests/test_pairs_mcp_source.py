"""read_mcp_nodes end to end against the SDK's real servers: the upstream replica (plain-text
listing, render with a links block), JSON listings in every paging mode, refused fetches, and
the mapping mistakes a user makes, which must fail with the flag to fix them."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from amygdala_vllm.errors import MCPProtocolError
from amygdala_vllm.pairs.mcp.mapping import DEFAULT_LINKS_PATTERN, PRESETS, MCPMapping
from amygdala_vllm.pairs.mcp.source import cut_links, parse_key_lines, read_mcp_nodes
from amygdala_vllm.pairs.mcp.target import ServerTarget, make_target
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
UNTYPED = [msgspec.structs.replace(n, type=None, category=None) for n in EXPECTED]

# A JSON-listing server's mapping: cursor-paged memory_query, full text from memory_render.
JSON_CURSOR = MCPMapping(list_tool="memory_query", paging="cursor", next_cursor_path="next_cursor",
                         items_path="nodes", fetch_tool="memory_render")

modes = pytest.mark.parametrize("json_response", [False, True], ids=["sse", "json"])


def _with(base: MCPMapping, **changes: Any) -> MCPMapping:
    return msgspec.structs.replace(base, **changes)


def target(url: str) -> ServerTarget:
    return make_target(url=url, command=None, environ={}, timeout=5)


def read(url: str, mapping: MCPMapping, **kw: Any) -> list[Node]:
    nodes, skipped = read_mcp_nodes(target(url), mapping, **kw)
    assert not skipped
    return nodes


# -- the upstream replica: plain text -----------------------------------------------------------


@modes
def test_upstream_preset_reads_text_listing_and_renders(json_response: bool) -> None:
    calls: list[tuple[str, dict]] = []
    seen: list[tuple[int, int]] = []
    with serve_memory_graph(NODES, json_response=json_response, calls=calls) as url:
        nodes, skipped = read_mcp_nodes(target(url), PRESETS["upstream"], concurrency=3,
                                        progress=lambda d, t: seen.append((d, t)))
    assert nodes == UNTYPED and not skipped  # links block cut; the server gives no types
    assert [a for t, a in calls if t == "memory_query"] == [{"query": "all", "format": "compact"}]
    assert sorted(a["key"] for t, a in calls if t == "memory_render") == sorted(n["key"] for n in NODES)
    assert seen[0] == (0, 5) and seen[-1] == (5, 5) and len(seen) == 6


def test_offset_paging_by_the_query_language() -> None:
    graph = [dict(NODES[i % 5], key=f"n{i}") for i in range(7)]
    calls: list[tuple[str, dict]] = []
    mapping = _with(PRESETS["upstream"], paging="offset", page_size=3)
    with serve_memory_graph(graph, calls=calls) as url:
        nodes = read(url, mapping)
    assert [n.key for n in nodes] == [g["key"] for g in graph]
    assert [a["query"] for t, a in calls if t == "memory_query"] == [
        "all | offset:0 | limit:3", "all | offset:3 | limit:3", "all | offset:6 | limit:3"]


def test_missing_query_is_the_servers_tool_error() -> None:
    with serve_memory_graph(NODES) as url:
        with pytest.raises(MCPProtocolError, match=r"MCP tool 'memory_query' on .* failed: .*query is required"):
            read(url, _with(PRESETS["upstream"], list_args={}))


@pytest.mark.parametrize("list_args", [{"query": "all | type:nothing"}, {"query": "all | limit:0"}])
def test_empty_listing_is_an_error(list_args: dict) -> None:
    """"No results" means none; none at all means the listing is wrong, not an empty graph."""
    with serve_memory_graph(NODES) as url:
        with pytest.raises(MCPProtocolError, match=r"the server listed no nodes \(tool 'memory_query' with "
                                                   r"arguments .*\); check --mcp-list-args"):
            read(url, _with(PRESETS["upstream"], list_args=list_args))


def test_refused_fetch_is_skipped_and_counted_or_fatal_with_strict() -> None:
    refuse = frozenset({NODES[1]["key"], NODES[3]["key"]})
    with serve_memory_graph(NODES, refuse=refuse) as url:
        nodes, skipped = read_mcp_nodes(target(url), PRESETS["upstream"])
        assert [n.key for n in nodes] == [NODES[i]["key"] for i in (0, 2, 4)]
        assert skipped == {"mcp_fetch_error": 2}
        with pytest.raises(MCPProtocolError, match=r"'memory_render' on .* failed for key '(journal/2026-03-14"
                                                   r"#evening|patterns/frustration)': .*node not found"):
            read_mcp_nodes(target(url), PRESETS["upstream"], strict=True)


def test_links_pattern_none_keeps_the_links() -> None:
    with serve_memory_graph(NODES[:2]) as url:
        nodes = read(url, _with(PRESETS["upstream"], links_pattern=None))
    assert nodes[0].content == NODES[0]["content"] + "\n\n→ journal/2026-03-14#evening (0.90)\n"


# -- JSON listings ---------------------------------------------------------------------------------


@modes
def test_json_cursor_paging_and_fetch(json_response: bool) -> None:
    calls: list[tuple[str, dict]] = []
    with serve_memory_graph(NODES, "json", json_response=json_response, page_size=2, calls=calls) as url:
        nodes = read(url, JSON_CURSOR)
    assert nodes == EXPECTED  # full text from memory_render, links section cut off
    assert [a["cursor"] for t, a in calls if t == "memory_query"] == [None, "2", "4"]
    assert sorted(a["key"] for t, a in calls if t == "memory_render") == sorted(n["key"] for n in NODES)


@modes
def test_server_memory_preset_structured_content(json_response: bool) -> None:
    with serve_memory_graph(NODES, "server-memory", json_response=json_response) as url:
        nodes = read(url, PRESETS["server-memory"])
    # observations are the content's lines, joined back; server-memory has no categories
    assert nodes == [msgspec.structs.replace(n, category=None) for n in EXPECTED]


@pytest.mark.parametrize("count", [5, 6, 1])
def test_page_number_paging(count: int) -> None:
    graph = [dict(NODES[i % 5], key=f"n{i}") for i in range(count)]
    calls: list[tuple[str, dict]] = []
    mapping = _with(JSON_CURSOR, list_tool="memory_pages", paging="page", page_size=3, items_path="items",
                    fetch_tool=None)
    with serve_memory_graph(graph, "json", calls=calls) as url:
        nodes = read(url, mapping)
    assert [n.key for n in nodes] == [g["key"] for g in graph]
    assert [n.content for n in nodes] == [g["content"] for g in graph]
    assert [a["page"] for _, a in calls] == list(range(1, count // 3 + 2))


def test_listing_content_without_fetch_is_the_preview() -> None:
    """Proves the fetch tool is what supplies the full text in the JSON mapping."""
    with serve_memory_graph(NODES, "json") as url:
        nodes = read(url, _with(JSON_CURSOR, fetch_tool=None))
    assert nodes[0].content.endswith("...") and nodes[0].content != NODES[0]["content"]


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
    ],
)
def test_mapping_mistakes_name_the_flag(changes: dict[str, Any], message: str) -> None:
    with serve_memory_graph(NODES, "server-memory") as url:
        with pytest.raises(MCPProtocolError, match=message):
            read(url, _with(PRESETS["server-memory"], **changes))


def test_json_mapping_on_a_text_server_suggests_text_format() -> None:
    with serve_memory_graph(NODES) as url:
        with pytest.raises(MCPProtocolError, match=r"no list at items_path 'nodes' \(the result has text "
                                                   r"'identity.md#boundaries\\njournal.*--mcp-list-format text"):
            read(url, _with(JSON_CURSOR, list_args={"query": "all"}, paging="none"))


def test_repeated_cursor_is_caught() -> None:
    """The JSON server pages by offset cursors; a mapping that never passes the cursor back loops."""
    with serve_memory_graph(NODES, "json", page_size=2) as url:
        with pytest.raises(MCPProtocolError, match="returned cursor '2' twice"):
            read(url, _with(JSON_CURSOR, cursor_arg="cursr", fetch_tool=None))


def test_server_ignoring_page_args_is_caught() -> None:
    """memory_query ignores page/page_size, so page paging sees the same first page again."""
    with serve_memory_graph(NODES, "json", page_size=2) as url:
        with pytest.raises(MCPProtocolError, match="returned the same page twice in a row"):
            read(url, _with(JSON_CURSOR, paging="page", page_size=2, fetch_tool=None))


# -- text helpers -------------------------------------------------------------------------------------

LINKS = re.compile(DEFAULT_LINKS_PATTERN)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Body.\nwarmth:9\n\n→ a/b (0.80)\n→ c#d (0.55)\n", "Body.\nwarmth:9"),
        ("Body.\nwarmth:9\n\nLinks:\n→ a (0.80)", "Body.\nwarmth:9"),
        ("Body.\nwarmth:9\n\n## Links\n\n- -> a\n- -> b\n\n", "Body.\nwarmth:9"),
        ("Body.\nwarmth:9\n", "Body.\nwarmth:9\n"),                      # no block: untouched
        ("Body.\nsee below\n→ a (0.80)", "Body.\nsee below\n→ a (0.80)"),  # no blank line before: content
        ("Body.\n\nLinks: a, b", "Body.\n\nLinks: a, b"),                  # prose, not a heading
        ("Body.\n\n- buy milk\n- call R.", "Body.\n\n- buy milk\n- call R."),  # a list without arrows
    ],
)
def test_cut_links(text: str, expected: str) -> None:
    assert cut_links(text, LINKS) == expected


def test_cut_links_none_keeps_text() -> None:
    assert cut_links("a\n\n→ b (0.1)", None) == "a\n\n→ b (0.1)"


@pytest.mark.parametrize(
    ("text", "keys"),
    [("a\n\n b#c \n", ["a", "b#c"]), ("No results", []), ("no results found.\n", []), ("", []), ("\n\n", [])],
)
def test_parse_key_lines(text: str, keys: list[str]) -> None:
    assert parse_key_lines(text) == keys
