"""How to read memory nodes out of one particular MCP server.

MCP fixes the envelope (``tools/list``, ``tools/call``) but not the tools: every
memory server names its listing tool, its arguments, its paging and its fields
differently. :class:`MCPMapping` is that difference written down as data, so a
new server needs a preset or a few flags rather than code. Layering is
preset -> TOML file -> flag overrides; every layer is checked, and a typo fails
with the list of valid names instead of being silently ignored.
"""

from __future__ import annotations

import difflib
import logging
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from amygdala_vllm.errors import UsageError

__all__ = [
    "MCPMapping",
    "PRESETS",
    "DEFAULT_PRESET",
    "DEFAULT_LINKS_PATTERN",
    "load_mapping",
    "parse_json_args",
    "resolve_path",
]

log = logging.getLogger(__name__)

Paging = Literal["none", "cursor", "page", "offset"]
ListFormat = Literal["json", "text"]

# One line of the links block a memory server appends to a rendered node, after a blank line:
# a heading that is only "Links:", "## Links", "Linked nodes", "Related:", "Backlinks",
# "Neighbours" ..., or a link line "→ key (0.80)", "-> key", "- -> key", "=> key".
DEFAULT_LINKS_PATTERN = (
    r"(?i)^[ \t]*(?:(?:#+[ \t]*)?(?:links|linked(?: nodes)?|related(?: nodes)?|backlinks|neighbou?rs)[ \t]*:?"
    r"|(?:[-*\u2022][ \t]*)?(?:\u2192|->|=>|\u21d2)[ \t]*\S.*)[ \t]*$"
)
DEFAULT_QUERY_PAGE = " | offset:{offset} | limit:{limit}"


class MCPMapping(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which tool lists nodes, how it pages, and where key/content/type/category live.

    Dotted paths (``items_path``, ``next_cursor_path`` and the ``*_field`` names) walk
    into the tool result's JSON; a numeric segment indexes a list; ``""`` is the
    result itself. A ``content`` that is a list of strings (server-memory's
    observations) is joined with newlines.
    """

    list_tool: str
    """Tool whose result holds the nodes (or at least their keys, with ``fetch_tool``)."""
    list_args: dict[str, Any] = {}
    """Fixed arguments for every listing call (filters, a query matching everything...)."""
    list_format: ListFormat = "json"
    """'json': items in the result's JSON; 'text': plain text, one key per line (blank lines
    and a "No results" answer mean none); each key's text then comes from ``fetch_tool``."""
    paging: Paging = "none"
    """'none': one call; 'cursor': pass the result's next cursor back; 'page': page numbers;
    'offset': the query-language string ``list_args[query_arg]`` gets ``query_page`` appended."""
    cursor_arg: str = "cursor"
    """Argument name that carries the cursor on the second and later calls."""
    next_cursor_path: str = "nextCursor"
    """Where the next cursor sits in the result; missing, null or "" ends the listing."""
    query_arg: str = "query"
    """'offset' paging: the listing argument holding the query string."""
    query_page: str = DEFAULT_QUERY_PAGE
    """'offset' paging: appended to the query, with ``{offset}`` and ``{limit}`` (= page_size)."""
    page_arg: str = "page"
    page_size_arg: str = "page_size"
    page_size: int = 100
    first_page: int = 1
    """Page numbering base; a page shorter than ``page_size`` ends the listing."""
    max_pages: int = 100_000
    """A guard against a server whose paging never ends."""
    items_path: str = ""
    """Dotted path to the list of items in the listing result."""
    key_field: str = "key"
    content_field: str = "content"
    type_field: str | None = "type"
    """None: the server has no node types (absent fields are fine either way)."""
    category_field: str | None = "category"
    fetch_tool: str | None = None
    """Optional per-node tool whose (plain-text) result replaces the listed content; called for
    every node, several calls in flight."""
    fetch_key_arg: str = "key"
    fetch_args: dict[str, Any] = {}
    """Extra fixed arguments for every fetch call."""
    links_pattern: str | None = DEFAULT_LINKS_PATTERN
    """Regex for one line of the links block after the fetched text: a trailing run of such
    lines (and blank ones) after a blank line is cut before the tag lines are read. None keeps all."""


DEFAULT_PRESET = "upstream"

PRESETS: dict[str, MCPMapping] = {
    # The personal agent's memory graph (docs/mcp.md, "The upstream memory server"): a Rust
    # server whose tools answer in plain text. memory_query runs its pipeline query language;
    # "all" lists every node, one key per line. memory_render {"key"} returns the node's stored
    # markdown (trailing tag lines included) followed by its neighbour links, which are cut off.
    # Node types and categories are never returned as fields, so there are none.
    "upstream": MCPMapping(
        list_tool="memory_query",
        list_args={"query": "all"},
        list_format="text",
        paging="none",
        type_field=None,
        category_field=None,
        fetch_tool="memory_render",
        fetch_key_arg="key",
    ),
    # The official @modelcontextprotocol/server-memory: read_graph returns the whole graph
    # {entities: [{name, entityType, observations: [...]}], relations: [...]} in one call.
    "server-memory": MCPMapping(
        list_tool="read_graph",
        paging="none",
        items_path="entities",
        key_field="name",
        content_field="observations",
        type_field="entityType",
        category_field=None,
        fetch_tool=None,
    ),
}

_FIELDS: tuple[str, ...] = MCPMapping.__struct_fields__
_OPTIONAL_STR = {"type_field", "category_field", "fetch_tool", "links_pattern"}


def _check_keys(data: dict[str, Any], where: str) -> None:
    """Fail on a key that is not a mapping field, suggesting the closest one."""
    for key in data:
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, _FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(
                f"unknown MCP mapping key {key!r} in {where}{hint}; valid keys: {', '.join(_FIELDS)}"
            )


def _read_toml(config: Path) -> dict[str, Any]:
    try:
        with open(config, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise UsageError(f"MCP mapping file {config} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"MCP mapping file {config} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"cannot read MCP mapping file {config}: {exc}") from exc
    # Allow the keys either at top level or under an [mcp] table.
    if set(data) == {"mcp"} and isinstance(data["mcp"], dict):
        data = data["mcp"]
    return data


def _preset(name: str) -> MCPMapping:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(
            f"unknown MCP preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None


def load_mapping(
    preset: str | None, config: Path | None, overrides: dict[str, Any]
) -> MCPMapping:
    """Build the mapping: ``preset`` (default 'upstream'), then ``config``, then ``overrides``.

    The TOML file may name its own base with ``preset = "..."`` (used when ``preset`` is
    None). Override keys are field names; None values mean "flag not given" and are
    skipped; an empty string clears an optional field (``--mcp-fetch-tool ''``).
    """
    file_data: dict[str, Any] = {}
    if config is not None:
        file_data = _read_toml(Path(config))
        file_preset = file_data.pop("preset", None)
        if file_preset is not None and not isinstance(file_preset, str):
            raise UsageError(f"'preset' in {config} must be a string, got {file_preset!r}")
        _check_keys(file_data, str(config))
        if preset is None:
            preset = file_preset
    given = {k: v for k, v in overrides.items() if v is not None}
    _check_keys(given, "the command-line overrides")
    base = _preset(preset or DEFAULT_PRESET)

    merged: dict[str, Any] = msgspec.to_builtins(base)  # a deep copy: presets stay untouched
    merged.update(file_data)
    merged.update(given)
    for key in _OPTIONAL_STR:
        if merged.get(key) == "":
            merged[key] = None
    try:
        mapping = msgspec.convert(merged, MCPMapping)
    except msgspec.ValidationError as exc:
        raise UsageError(f"bad MCP mapping: {exc}") from exc
    _validate(mapping)
    log.debug("MCP mapping (preset %s): %r", preset or DEFAULT_PRESET, mapping)
    return mapping


def _validate(m: MCPMapping) -> None:
    """Checks msgspec's types cannot express."""
    for name in ("list_tool", "key_field", "content_field"):
        if not getattr(m, name):
            raise UsageError(f"MCP mapping field {name!r} must not be empty")
    if m.page_size < 1 or m.max_pages < 1:
        raise UsageError("MCP mapping: page_size and max_pages must be >= 1")
    if m.links_pattern is not None:
        try:
            re.compile(m.links_pattern)
        except re.error as exc:
            raise UsageError(f"MCP mapping: links_pattern {m.links_pattern!r} is not a valid regex: {exc}") from exc
    if m.list_format == "text":
        if not m.fetch_tool:
            raise UsageError(
                "MCP mapping: a text listing gives only keys, so it needs fetch_tool (--mcp-fetch-tool)"
            )
        if m.paging in ("cursor", "page"):
            raise UsageError(f"MCP mapping: a text listing cannot page by {m.paging!r}; use 'offset' or 'none'")
    if m.paging == "offset":
        if not isinstance(m.list_args.get(m.query_arg), str):
            raise UsageError(
                f"MCP mapping: 'offset' paging appends to the query string list_args[{m.query_arg!r}], "
                "which is not set (e.g. --mcp-list-args '{\"query\": \"all\"}')"
            )
        try:
            m.query_page.format(offset=0, limit=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(
                f"MCP mapping: query_page {m.query_page!r} may only use {{offset}} and {{limit}}: {exc!r}"
            ) from exc


def parse_json_args(text: str | None, flag: str) -> dict[str, Any] | None:
    """A flag's JSON object (``--mcp-list-args '{"query": "all"}'``); None when not given."""
    if text is None:
        return None
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise UsageError(f"{flag} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a JSON object, got {type(value).__name__}")
    return value


_MISSING = object()


def resolve_path(data: Any, path: str, default: Any = _MISSING) -> Any:
    """Walk a dotted path (``a.b.0.c``) into decoded JSON.

    Raises KeyError naming the first segment that is absent, unless ``default`` is given.
    """
    if path == "":
        return data
    cur = data
    for seg in path.split("."):
        if isinstance(cur, dict) and seg in cur:
            cur = cur[seg]
        elif isinstance(cur, list) and seg.lstrip("-").isdigit() and -len(cur) <= int(seg) < len(cur):
            cur = cur[int(seg)]
        else:
            if default is not _MISSING:
                return default
            raise KeyError(seg)
    return cur
