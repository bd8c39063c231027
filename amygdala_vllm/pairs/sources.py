"""Where memory nodes come from: a JSONL export, a stories folder, an MCP server, or the sample.

Every source is read into a list of :class:`~amygdala_vllm.pairs.nodes.Node`
with its tag lines still in, plus a count of what could not be read and a
small JSON description of the source for ``dataset.json``. Reading is
all-or-nothing: a source that fails raises before anything is written.

The MCP client lives in the :mod:`.mcp` subpackage (``source``, ``mapping``, ``client``, ...) and is
imported only when ``--memory-mcp-url`` or ``--memory-mcp-command`` is used.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ..errors import FormatError, SourceError, UsageError
from ..formats import read_input
from .nodes import Node

__all__ = [
    "SAMPLE_NAME",
    "STORY_SUFFIXES",
    "SourceSpec",
    "SourceResult",
    "read_source",
    "parse_jsonl_nodes",
    "read_stories",
    "sample_graph_bytes",
]

log = logging.getLogger(__name__)

SAMPLE_NAME = "sample_graph.jsonl"
STORY_SUFFIXES = (".txt", ".md")

_REASONS = {
    "invalid_json": "not valid JSON",
    "not_an_object": "not a JSON object",
    "missing_key": "no string 'key'",
    "missing_content": "no string 'content'",
}


@dataclass(frozen=True)
class SourceSpec:
    """At most one of ``memory_mcp_url``, ``memory_mcp_command``, ``memory_file``, ``stories_dir``;
    none means the sample. ``mcp_headers`` are ``Name: value`` strings (secrets: never recorded)."""

    memory_mcp_url: str | None = None
    memory_file: Path | None = None
    stories_dir: Path | None = None
    mcp_preset: str | None = None
    mcp_config: Path | None = None
    mcp_overrides: dict[str, Any] = field(default_factory=dict)
    mcp_timeout: float = 30.0
    memory_mcp_command: str | None = None
    mcp_transport: str = "auto"
    mcp_headers: tuple[str, ...] = field(default=(), repr=False)
    mcp_concurrency: int = 8


@dataclass
class SourceResult:
    """The nodes read, the lines or files skipped by reason, and what the source was."""

    nodes: list[Node]
    skipped: Counter[str]
    description: dict[str, Any]


def sample_graph_bytes() -> bytes:
    """The bundled sample memory graph (package data), the default source."""
    return (importlib.resources.files("amygdala_vllm") / "data" / SAMPLE_NAME).read_bytes()


def _decode_utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FormatError(f"{name}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x})") from exc


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_jsonl_nodes(data: bytes, name: str, *, strict: bool = False) -> tuple[list[Node], Counter[str]]:
    """Nodes of an exported graph: one JSON object per line with ``key``, ``content``, optional ``type``/``category``.

    Unknown fields are ignored (exports carry links, timestamps, ...). A line
    that is not JSON or lacks a string key/content is skipped and counted by
    reason, or, with ``strict``, a :class:`FormatError` naming ``name:line``.
    Bytes that are not UTF-8 are always an error.
    """
    text = _decode_utf8(data, name)
    nodes: list[Node] = []
    skipped: Counter[str] = Counter()
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        reason = None
        try:
            obj = msgspec.json.decode(line)
        except msgspec.DecodeError:
            reason = "invalid_json"
        else:
            if not isinstance(obj, dict):
                reason = "not_an_object"
            elif not isinstance(obj.get("key"), str) or not obj["key"]:
                reason = "missing_key"
            elif not isinstance(obj.get("content"), str):
                reason = "missing_content"
        if reason is not None:
            if strict:
                raise FormatError(f"{name}:{lineno}: {_REASONS[reason]} (--strict)")
            log.warning("%s:%d: skipped, %s", name, lineno, _REASONS[reason])
            skipped[reason] += 1
            continue
        nodes.append(
            Node(
                key=obj["key"],
                content=obj["content"],
                type=_optional_str(obj.get("type")),
                category=_optional_str(obj.get("category")),
            )
        )
    return nodes, skipped


def read_stories(directory: Path) -> list[Node]:
    """One node per story file (``*.txt``, ``*.md``, recursively, hidden ones ignored).

    The key is the file's path relative to ``directory`` (``/``-separated), so
    the same folder gives the same keys on every machine; tags are the file's
    trailing tag lines, exactly as for memory nodes.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"stories dir {directory} does not exist or is not a directory")
    nodes = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in STORY_SUFFIXES:
            continue
        if not path.is_file():
            continue
        data = read_input(path, error=SourceError)
        nodes.append(Node(key=rel.as_posix(), content=_decode_utf8(data, str(path)), type="story"))
    return nodes


def _read_file(path: Path, strict: bool) -> SourceResult:
    path = Path(path)
    data = read_input(path, what="memory file", error=SourceError)
    nodes, skipped = parse_jsonl_nodes(data, str(path), strict=strict)
    desc = {"kind": "jsonl", "path": str(path), "sha256": hashlib.sha256(data).hexdigest()}
    return SourceResult(nodes, skipped, desc)


def _read_mcp(spec: SourceSpec, strict: bool, progress: Callable[[int, int], None] | None) -> SourceResult:
    from .mcp.mapping import load_mapping  # lazy: the mcp SDK only when asked for
    from .mcp.source import read_mcp_nodes
    from .mcp.target import make_target

    if spec.mcp_concurrency < 1:
        raise UsageError(f"--mcp-concurrency must be >= 1, got {spec.mcp_concurrency}")
    target = make_target(
        url=spec.memory_mcp_url,
        command=spec.memory_mcp_command,
        transport=spec.mcp_transport,
        header_flags=spec.mcp_headers,
        timeout=spec.mcp_timeout,
    )
    mapping = load_mapping(spec.mcp_preset, spec.mcp_config, spec.mcp_overrides)
    nodes, skipped = read_mcp_nodes(
        target, mapping, strict=strict, concurrency=spec.mcp_concurrency, progress=progress
    )
    desc = {
        "kind": "mcp",
        **target.describe(),
        "preset": spec.mcp_preset,
        "mapping": msgspec.to_builtins(mapping),
    }
    return SourceResult(nodes, skipped, desc)


def read_source(
    spec: SourceSpec, *, strict: bool = False, progress: Callable[[int, int], None] | None = None
) -> SourceResult:
    """Read every node of the one source ``spec`` names (the bundled sample if none).

    ``progress(done, total)`` follows an MCP server's per-node fetches (from another thread).
    """
    given = [
        flag
        for flag, value in (
            ("--memory-mcp-url", spec.memory_mcp_url),
            ("--memory-mcp-command", spec.memory_mcp_command),
            ("--memory-file", spec.memory_file),
            ("--stories-dir", spec.stories_dir),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise UsageError(f"give at most one source, got {' and '.join(given)}")
    if spec.memory_mcp_url is not None or spec.memory_mcp_command is not None:
        result = _read_mcp(spec, strict, progress)
    elif spec.memory_file is not None:
        result = _read_file(spec.memory_file, strict)
    elif spec.stories_dir is not None:
        nodes = read_stories(spec.stories_dir)
        result = SourceResult(nodes, Counter(), {"kind": "stories", "path": str(spec.stories_dir), "files": len(nodes)})
    else:
        data = sample_graph_bytes()
        nodes, skipped = parse_jsonl_nodes(data, SAMPLE_NAME, strict=strict)
        desc = {"kind": "sample", "name": SAMPLE_NAME, "sha256": hashlib.sha256(data).hexdigest()}
        result = SourceResult(nodes, skipped, desc)
    if not result.nodes:
        raise SourceError(f"the source ({given[0] if given else 'bundled sample'}) yielded no nodes")
    log.info("read %d nodes from %s", len(result.nodes), result.description["kind"])
    return result
