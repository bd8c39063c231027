"""Reading MCP tool results, which arrive as dicts in the wire shape.

A tool answers with ``content`` blocks (text for plain-text tools such as the upstream
server's), optionally ``structuredContent`` (JSON), and ``isError``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

__all__ = ["result_text", "result_json"]

log = logging.getLogger(__name__)


def result_text(result: dict[str, Any]) -> str:
    """The concatenated text blocks of a tool result (how plain-text tools answer)."""
    blocks = result.get("content")
    if not isinstance(blocks, list):
        return ""
    return "\n".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text")


def result_json(result: dict[str, Any]) -> list[Any]:
    """Candidate JSON payloads of a tool result, best first.

    ``structuredContent`` first, then its ``{"result": ...}`` wrapper (the Python SDK wraps
    non-object returns that way), then the text content parsed as JSON.
    """
    out: list[Any] = []
    sc = result.get("structuredContent")
    if sc is not None:
        out.append(sc)
        if isinstance(sc, dict) and set(sc) == {"result"}:
            out.append(sc["result"])
    text = result_text(result)
    if text.strip():
        try:
            out.append(json.loads(text))
        except ValueError:
            # Some servers send one JSON text block per item.
            blocks = [b for b in result.get("content") or [] if isinstance(b, dict) and b.get("type") == "text"]
            try:
                out.append([json.loads(str(b.get("text", ""))) for b in blocks])
            except ValueError:
                log.debug("tool result text is not JSON: %.100s", text)
    return out
