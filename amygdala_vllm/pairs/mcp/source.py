"""Read memory nodes from a live MCP server, as :class:`Node`, following an :class:`MCPMapping`.

The mapping says which tool lists the nodes, in what form (JSON items or plain-text keys) and
how it pages; this module walks the pages, then fetches each node's text with the fetch tool
(several calls in flight: a 200k-node graph must not wait one round trip at a time), cutting
off the links block a renderer appends. Listed items that lack a key or content are an error,
not a skip: a mapping that misses a field would otherwise yield an empty dataset that looks
like a successful run. A fetch the server refuses for one key is skipped and counted by
reason (or fatal with ``strict``); a server that stops answering is always fatal.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from ...errors import MCPProtocolError
from ..nodes import Node
from .client import DEFAULT_CONCURRENCY, MCPClient
from .mapping import MCPMapping, resolve_path
from .results import result_json, result_text
from .target import ServerTarget

__all__ = ["read_mcp_nodes", "parse_key_lines", "cut_links", "Progress"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (nodes fetched, nodes listed) as fetches finish."""

_NO_RESULTS = re.compile(r"(?i)^\s*no (?:results|matches|nodes)(?: found)?\.?\s*$")


def read_mcp_nodes(
    target: ServerTarget,
    mapping: MCPMapping,
    *,
    strict: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
) -> tuple[list[Node], Counter[str]]:
    """Every node the server lists, in listing order, and the fetches skipped by reason.

    The session (and a stdio child) is closed when this returns or raises.
    """
    links = re.compile(mapping.links_pattern) if mapping.links_pattern else None
    with MCPClient(target) as client:
        client.require_tools([mapping.list_tool] + ([mapping.fetch_tool] if mapping.fetch_tool else []))
        items = [item for page in _pages(client, mapping) for item in page]
        if not items:
            raise MCPProtocolError(
                f"{client.where}: the server listed no nodes (tool {mapping.list_tool!r} with arguments "
                f"{mapping.list_args}); check --mcp-list-args"
            )
        listed = [_listed(client, mapping, item, i) for i, item in enumerate(items)]
        if mapping.fetch_tool:
            nodes, skipped = _fetch_all(client, mapping, listed, links, strict, concurrency, progress)
        else:
            nodes, skipped = [_node(mapping, key, item, _listed_content(client, mapping, key, item, i))
                              for i, (key, item) in enumerate(listed)], Counter()
        log.info("read %d nodes from %s (tool %s)", len(nodes), client.where, mapping.list_tool)
    return nodes, skipped


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
                    f"MCP tool {m.list_tool!r} on {client.where} returned cursor {cursor!r} twice; "
                    "its paging loops (check next_cursor_path / cursor_arg)"
                )
            seen.add(cursor)
            args = {**m.list_args, m.cursor_arg: cursor}
        raise MCPProtocolError(f"MCP tool {m.list_tool!r} on {client.where} kept paging past max_pages={m.max_pages}")
    # page numbers, or the query language's offset/limit: a short page ends the listing
    previous: list[Any] | None = None
    for n in range(m.max_pages):
        if m.paging == "page":
            args = {**m.list_args, m.page_arg: m.first_page + n, m.page_size_arg: m.page_size}
        else:
            page_query = m.query_page.format(offset=n * m.page_size, limit=m.page_size)
            args = {**m.list_args, m.query_arg: m.list_args[m.query_arg] + page_query}
        items, _ = _items(client, m, client.call_tool(m.list_tool, args))
        if items and items == previous:
            raise MCPProtocolError(
                f"MCP tool {m.list_tool!r} on {client.where} returned the same page twice in a row; it seems "
                f"to ignore the {m.paging} arguments {args} (try --mcp-paging none)"
            )
        yield items
        if len(items) < m.page_size:
            return
        previous = items
    raise MCPProtocolError(f"MCP tool {m.list_tool!r} on {client.where} kept paging past max_pages={m.max_pages}")


def parse_key_lines(text: str) -> list[str]:
    """A plain-text listing: one key per line; blank lines and a "No results" answer mean none."""
    if _NO_RESULTS.match(text):
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def _items(client: MCPClient, m: MCPMapping, result: dict[str, Any]) -> tuple[list[Any], Any]:
    """The page's items: keys of a text listing, or the list at ``items_path`` of a JSON one."""
    if m.list_format == "text":
        return parse_key_lines(result_text(result)), None
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
    hint = "; set --mcp-items-path" + (", or --mcp-list-format text for a list of keys" if not candidates else "")
    raise MCPProtocolError(
        f"MCP tool {m.list_tool!r} on {client.where}: no list at items_path {m.items_path!r} "
        f"(the result has {seen}){hint}"
    )


def _listed(client: MCPClient, m: MCPMapping, item: Any, index: int) -> tuple[str, dict[str, Any]]:
    """(key, item) of one listed entry; a text listing's entries are bare keys."""
    if isinstance(item, str) and m.list_format == "text":
        return item, {}
    where = f"item {index} of MCP tool {m.list_tool!r} on {client.where}"
    if not isinstance(item, dict):
        raise MCPProtocolError(f"{where} is a {type(item).__name__}, not an object: {item!r:.120}")
    key = resolve_path(item, m.key_field, None)
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str) or not key:
        raise MCPProtocolError(
            f"{where} has no key field {m.key_field!r} (fields: {', '.join(sorted(item))}); set --mcp-key-field"
        )
    return key, item


def _listed_content(client: MCPClient, m: MCPMapping, key: str, item: dict[str, Any], index: int) -> str:
    """The content a JSON listing carries for one node (no fetch tool)."""
    where = f"item {index} of MCP tool {m.list_tool!r} on {client.where} (key {key!r})"
    content = resolve_path(item, m.content_field, None)
    if content is None:
        raise MCPProtocolError(
            f"{where} has no content field {m.content_field!r} "
            f"(fields: {', '.join(sorted(item))}); set --mcp-content-field"
        )
    if isinstance(content, list) and all(isinstance(c, str) for c in content):
        content = "\n".join(content)
    if not isinstance(content, str):
        raise MCPProtocolError(
            f"{where}: content field {m.content_field!r} is a {type(content).__name__}, "
            "expected a string or a list of strings"
        )
    return content


def _fetch_all(
    client: MCPClient,
    m: MCPMapping,
    listed: list[tuple[str, dict[str, Any]]],
    links: re.Pattern[str] | None,
    strict: bool,
    concurrency: int,
    progress: Progress | None,
) -> tuple[list[Node], Counter[str]]:
    """Fetch every listed key's text; a refused or empty fetch is skipped by reason (fatal if strict)."""
    assert m.fetch_tool is not None
    total, done = len(listed), 0
    if progress is not None:
        progress(0, total)

    def on_result(i: int, result: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if strict and _fetch_failure(result):
            # Stop at the first refusal instead of fetching the rest of a large graph first.
            raise _refused(client, m, listed[i][0], result)
        if progress is not None:
            progress(done, total)

    results = client.call_many(
        m.fetch_tool, [{**m.fetch_args, m.fetch_key_arg: key} for key, _ in listed],
        concurrency=concurrency, on_result=on_result,
    )
    nodes: list[Node] = []
    skipped: Counter[str] = Counter()
    first: str | None = None
    for (key, item), result in zip(listed, results):
        reason = _fetch_failure(result)
        if reason is not None:
            skipped[reason] += 1
            log.info("skipped node %r: %s", key, _refused(client, m, key, result))
            first = first or str(_refused(client, m, key, result))
            continue
        nodes.append(_node(m, key, item, cut_links(_fetched_text(result), links)))
    if skipped:
        log.warning("%d of %d fetches failed and were skipped (use --strict to stop instead); first: %s",
                    sum(skipped.values()), total, first)
    return nodes, skipped


def _fetch_failure(result: dict[str, Any]) -> str | None:
    """Why a fetch result gives no node ('mcp_fetch_error' / 'mcp_fetch_empty'), None if it does."""
    if result.get("isError"):
        return "mcp_fetch_error"
    return None if _fetched_text(result).strip() else "mcp_fetch_empty"


def _refused(client: MCPClient, m: MCPMapping, key: str, result: dict[str, Any]) -> MCPProtocolError:
    if result.get("isError"):
        msg = result_text(result).strip() or "(no message)"
        return MCPProtocolError(f"MCP tool {m.fetch_tool!r} on {client.where} failed for key {key!r}: {msg}")
    return MCPProtocolError(f"MCP tool {m.fetch_tool!r} on {client.where} returned no text for key {key!r}")


def _fetched_text(result: dict[str, Any]) -> str:
    """A fetch result's text: its text blocks, else a string in its structured content."""
    text = result_text(result)
    if not text:
        sc = result.get("structuredContent")
        if isinstance(sc, dict):
            value = sc.get("result")
            text = value if isinstance(value, str) else ""
    return text


def cut_links(text: str, line: re.Pattern[str] | None) -> str:
    """``text`` without its trailing links block, so that its tag lines are trailing again.

    The block is the trailing run of lines that are blank or match ``line``, if it holds at
    least one matching line and a blank line separates it from the text (a heading or link
    line glued to the last paragraph is content, not a block).
    """
    if line is None:
        return text
    lines = text.rstrip().split("\n")
    start = len(lines)
    while start > 0 and (not lines[start - 1].strip() or line.match(lines[start - 1])):
        start -= 1
    block = lines[start:]
    if not any(ln.strip() for ln in block) or (start > 0 and block[0].strip()):
        return text
    return "\n".join(lines[:start]).rstrip()


def _node(m: MCPMapping, key: str, item: dict[str, Any], content: str) -> Node:
    return Node(key=key, content=content, type=_opt_str(item, m.type_field), category=_opt_str(item, m.category_field))


def _opt_str(item: dict[str, Any], field: str | None) -> str | None:
    if not field:
        return None
    value = resolve_path(item, field, None)
    return None if value is None else str(value)
