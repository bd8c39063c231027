"""Read memory nodes from a live MCP server, as :class:`Node`, following an :class:`MCPMapping`.

The mapping says which tool lists the nodes and how it pages; this module walks
the pages, finds the items in each result (structured content or JSON text),
and optionally fetches each node's full text with a per-node tool, cutting off
the links section a renderer appends. Items that lack a key or content are an
error, not a skip: a mapping that misses a field would otherwise yield an empty
dataset that looks like a successful run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx

from amygdala_vllm.errors import MCPProtocolError
from amygdala_vllm.pairs.mcp_client import MCPClient, result_json, result_text
from amygdala_vllm.pairs.mcp_mapping import MCPMapping, resolve_path
from amygdala_vllm.pairs.nodes import Node

__all__ = ["iter_mcp_nodes"]

log = logging.getLogger(__name__)


def iter_mcp_nodes(
    url: str,
    mapping: MCPMapping,
    *,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> Iterator[Node]:
    """Yield every node the server lists, in server order; the session closes when done.

    ``transport`` is for tests (``httpx.MockTransport``); production code leaves it None.
    """
    strip = re.compile(mapping.fetch_strip_after) if mapping.fetch_strip_after else None
    with MCPClient(url, timeout=timeout, transport=transport) as client:
        needed = [mapping.list_tool] + ([mapping.fetch_tool] if mapping.fetch_tool else [])
        client.require_tools(needed)
        index = 0
        for items in _pages(client, mapping):
            for item in items:
                yield _to_node(client, mapping, item, index, strip)
                index += 1
        log.info("read %d nodes from MCP server %s (tool %s)", index, url, mapping.list_tool)


def _pages(client: MCPClient, m: MCPMapping) -> Iterator[list[Any]]:
    """Call the listing tool as its paging mode says, yielding each page's items."""
    if m.paging == "none":
        yield _items(client, m, client.call_tool(m.list_tool, dict(m.list_args)))[0]
        return
    if m.paging == "cursor":
        args = dict(m.list_args)
        seen: set[str] = set()
        for _ in range(m.max_pages):
            items, payload = _items(client, m, client.call_tool(m.list_tool, args))
            yield items
            cursor = resolve_path(payload, m.next_cursor_path, None)
            if cursor is None or cursor == "":
                return
            cursor = str(cursor) if not isinstance(cursor, str) else cursor
            if cursor in seen:
                raise MCPProtocolError(
                    f"MCP tool {m.list_tool!r} on {client.url} returned cursor {cursor!r} twice; "
                    "its paging loops (check next_cursor_path / cursor_arg)"
                )
            seen.add(cursor)
            args = {**m.list_args, m.cursor_arg: cursor}
        raise MCPProtocolError(f"MCP tool {m.list_tool!r} on {client.url} kept paging past max_pages={m.max_pages}")
    # page numbers
    previous: list[Any] | None = None
    for page in range(m.first_page, m.first_page + m.max_pages):
        args = {**m.list_args, m.page_arg: page, m.page_size_arg: m.page_size}
        items, _ = _items(client, m, client.call_tool(m.list_tool, args))
        if items and items == previous:
            raise MCPProtocolError(
                f"MCP tool {m.list_tool!r} on {client.url} returned the same page for page {page - 1} and {page}; "
                f"it seems to ignore {m.page_arg!r}/{m.page_size_arg!r} (try --mcp-paging none)"
            )
        yield items
        if len(items) < m.page_size:
            return
        previous = items
    raise MCPProtocolError(f"MCP tool {m.list_tool!r} on {client.url} kept paging past max_pages={m.max_pages}")


def _items(client: MCPClient, m: MCPMapping, result: dict[str, Any]) -> tuple[list[Any], Any]:
    """Find the item list at ``items_path`` in the first payload candidate that has one."""
    candidates = result_json(result)
    for payload in candidates:
        items = resolve_path(payload, m.items_path, None)
        if isinstance(items, list):
            return items, payload
    if not candidates:
        seen = f"text {result_text(result)[:120]!r}"
    else:
        first = candidates[0]
        seen = f"top-level keys {sorted(first)}" if isinstance(first, dict) else f"a {type(first).__name__}"
    raise MCPProtocolError(
        f"MCP tool {m.list_tool!r} on {client.url}: no list at items_path {m.items_path!r} "
        f"(the result has {seen}); set --mcp-items-path"
    )


def _to_node(
    client: MCPClient, m: MCPMapping, item: Any, index: int, strip: re.Pattern[str] | None
) -> Node:
    where = f"item {index} of MCP tool {m.list_tool!r} on {client.url}"
    if not isinstance(item, dict):
        raise MCPProtocolError(f"{where} is a {type(item).__name__}, not an object: {item!r:.120}")
    key = resolve_path(item, m.key_field, None)
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str) or not key:
        raise MCPProtocolError(
            f"{where} has no key field {m.key_field!r} (fields: {', '.join(sorted(item))}); set --mcp-key-field"
        )
    if m.fetch_tool:
        content: Any = _fetch(client, m, key, strip)
    else:
        content = resolve_path(item, m.content_field, None)
        if content is None:
            raise MCPProtocolError(
                f"{where} (key {key!r}) has no content field {m.content_field!r} "
                f"(fields: {', '.join(sorted(item))}); set --mcp-content-field"
            )
    if isinstance(content, list) and all(isinstance(c, str) for c in content):
        content = "\n".join(content)
    if not isinstance(content, str):
        raise MCPProtocolError(
            f"{where} (key {key!r}): content field {m.content_field!r} is a {type(content).__name__}, "
            "expected a string or a list of strings"
        )
    return Node(key=key, content=content, type=_opt_str(item, m.type_field), category=_opt_str(item, m.category_field))


def _fetch(client: MCPClient, m: MCPMapping, key: str, strip: re.Pattern[str] | None) -> str:
    """The node's full text from the fetch tool, links section cut off."""
    assert m.fetch_tool is not None
    result = client.call_tool(m.fetch_tool, {**m.fetch_args, m.fetch_key_arg: key})
    text = result_text(result)
    if not text:
        sc = result.get("structuredContent")
        if isinstance(sc, dict):
            value = sc.get("result", resolve_path(sc, m.content_field, None))
            text = value if isinstance(value, str) else ""
    if not text:
        raise MCPProtocolError(f"MCP tool {m.fetch_tool!r} on {client.url} returned no text for key {key!r}")
    if strip is not None:
        match = strip.search(text)
        if match:
            text = text[: match.start()].rstrip()
    return text


def _opt_str(item: dict[str, Any], field: str | None) -> str | None:
    if not field:
        return None
    value = resolve_path(item, field, None)
    return None if value is None else str(value)
