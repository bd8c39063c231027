"""MCPMapping: presets, the preset -> TOML -> overrides layering, and strictness on typos."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from amygdala_vllm.errors import UsageError
from amygdala_vllm.pairs.mcp.mapping import (
    DEFAULT_PRESET,
    PRESETS,
    MCPMapping,
    load_mapping,
    parse_json_args,
    resolve_path,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "mcp.md"


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


def test_presets() -> None:
    assert {"upstream", "server-memory"} <= set(PRESETS)
    up, sm = PRESETS["upstream"], PRESETS["server-memory"]
    assert (up.list_tool, up.list_args, up.list_format, up.paging, up.fetch_tool, up.fetch_key_arg) == (
        "memory_query", {"query": "all"}, "text", "none", "memory_render", "key")
    assert up.type_field is None and up.category_field is None and up.links_pattern
    assert (sm.list_tool, sm.paging, sm.items_path, sm.key_field, sm.content_field, sm.type_field) == (
        "read_graph", "none", "entities", "name", "observations", "entityType")
    assert sm.fetch_tool is None and sm.category_field is None


def test_default_is_upstream_and_presets_are_not_shared() -> None:
    m = load_mapping(None, None, {})
    assert m == PRESETS[DEFAULT_PRESET] and m is not PRESETS[DEFAULT_PRESET]
    m.list_args["x"] = 1
    assert PRESETS[DEFAULT_PRESET].list_args == {"query": "all"}


def test_layers_apply_in_order(tmp_path: Path) -> None:
    cfg = _toml(tmp_path, 'list_tool = "from_file"\nitems_path = "file.items"\nlist_args = { query = "*" }\n')
    m = load_mapping("server-memory", cfg, {"items_path": "flag.items", "paging": None, "key_field": None})
    assert m.list_tool == "from_file"          # file over preset
    assert m.items_path == "flag.items"        # flag over file
    assert m.paging == "none" and m.key_field == "name"  # None flags leave the preset alone
    assert m.list_args == {"query": "*"}


def test_file_may_name_its_preset_and_use_a_table(tmp_path: Path) -> None:
    cfg = _toml(tmp_path, '[mcp]\npreset = "server-memory"\npage_size = 7\n')
    assert load_mapping(None, cfg, {}) == msgspec.structs.replace(PRESETS["server-memory"], page_size=7)
    assert load_mapping("upstream", cfg, {}).list_tool == "memory_query"  # the flag's preset wins


def test_empty_string_clears_optional_fields() -> None:
    m = load_mapping("server-memory", None, {"links_pattern": "", "type_field": ""})
    assert (m.links_pattern, m.type_field) == (None, None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"list_tol": "x"}, r"unknown MCP mapping key 'list_tol' in the command-line overrides \(did you mean 'list_tool'\?\)"),
        ({"paging": "sideways"}, r"bad MCP mapping: Invalid enum value .sideways. - at `\$.paging`"),
        ({"page_size": "ten"}, r"Expected `int`, got `str` - at `\$.page_size`"),
        ({"page_size": 0}, "page_size and max_pages must be >= 1"),
        ({"list_tool": ""}, "'list_tool' must not be empty"),
        ({"links_pattern": "(unclosed"}, "links_pattern '\\(unclosed' is not a valid regex"),
        ({"fetch_tool": ""}, r"a text listing gives only keys, so it needs fetch_tool \(--mcp-fetch-tool\)"),
        ({"paging": "cursor"}, "a text listing cannot page by 'cursor'; use 'offset' or 'none'"),
        ({"paging": "offset", "list_args": {}}, r"appends to the query string list_args\['query'\], which is not set"),
        ({"paging": "offset", "query_page": " | skip:{skip}"}, r"query_page .* may only use \{offset\} and \{limit\}"),
        ({"list_format": "xml"}, r"Invalid enum value 'xml' - at `\$.list_format`"),
        ({"list_args": ["a"]}, r"Expected `object`, got `array` - at `\$.list_args`"),
    ],
)
def test_bad_overrides(overrides: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_mapping(None, None, overrides)


def test_unknown_preset_lists_known() -> None:
    with pytest.raises(UsageError, match="unknown MCP preset 'graphiti'; known presets: server-memory, upstream"):
        load_mapping("graphiti", None, {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('itemz_path = "x"\n', r"unknown MCP mapping key 'itemz_path' in .*m.toml \(did you mean 'items_path'\?\)"),
        ('list_tool = \n', "is not valid TOML"),
        ("preset = 3\n", "'preset' in .* must be a string"),
        ('preset = "nope"\n', "unknown MCP preset 'nope'"),
        ("max_pages = 1.5\n", r"Expected `int`, got `float`"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_mapping(None, _toml(tmp_path, text), {})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_mapping(None, tmp_path / "absent.toml", {})


def test_docs_example_loads(tmp_path: Path) -> None:
    """The TOML example in docs/mcp.md must stay a valid mapping."""
    block = re.search(r"```toml\n(.*?)```", DOCS.read_text(), re.S)
    assert block, "docs/mcp.md lost its TOML example"
    m = load_mapping(None, _toml(tmp_path, block.group(1)), {})
    assert (m.list_tool, m.paging, m.items_path, m.fetch_tool, m.category_field) == (
        "search_notes", "page", "results", None, None)


def test_docs_list_every_key_and_flag() -> None:
    text = DOCS.read_text()
    for field in MCPMapping.__struct_fields__:
        assert f"`{field}`" in text or field in ("page_size_arg", "first_page"), field
    for flag in ("preset", "config", "list-tool", "list-args", "list-format", "fetch-tool", "items-path",
                 "key-field", "content-field", "paging", "links-pattern", "timeout", "transport", "header",
                 "concurrency"):
        assert f"`--mcp-{flag}" in text, flag
    assert "`--memory-mcp-command" in text and "AMYGDALA_MCP_HEADERS" in text


def test_links_pattern_matches_link_lines_and_headings_not_prose() -> None:
    pattern = re.compile(PRESETS["upstream"].links_pattern or "")
    for line in ("Links:", "## Links", "  links", "Related nodes:", "Backlinks", "### Linked nodes",
                 "→ identity.md#boundaries (0.80)", "- -> journal#j-1", "* => a/b", "→ k"):
        assert pattern.match(line), line
    for prose in ("Links: a, b", "The links between us", "related: yes", "warmth:9 clarity:8", "- buy milk", "->"):
        assert not pattern.match(prose), prose


def test_json_args_flag() -> None:
    assert parse_json_args(None, "--mcp-list-args") is None
    assert parse_json_args('{"query": "all | limit:5"}', "--mcp-list-args") == {"query": "all | limit:5"}
    with pytest.raises(UsageError, match="--mcp-list-args is not valid JSON"):
        parse_json_args("{query: all}", "--mcp-list-args")
    with pytest.raises(UsageError, match="--mcp-list-args must be a JSON object, got list"):
        parse_json_args('["all"]', "--mcp-list-args")


def test_resolve_path() -> None:
    data = {"a": {"b": [{"c": 1}, {"c": 2}]}, "x.y": 0}
    assert resolve_path(data, "") is data
    assert resolve_path(data, "a.b.1.c") == 2
    assert resolve_path(data, "a.b.-1.c") == 2
    assert resolve_path(data, "a.z", None) is None
    assert resolve_path(data, "a.b.5", "d") == "d"
    with pytest.raises(KeyError, match="z"):
        resolve_path(data, "a.z")
