"""The one shape every memory-graph source is read into.

Sources differ (an MCP server, a JSONL export, a folder of stories); selection
only ever sees :class:`Node`, whose ``content`` still carries its trailing tag
lines exactly as the graph stores them.
"""

from __future__ import annotations

import msgspec

__all__ = ["Node"]


class Node(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One memory node: its key, raw content (tag lines included), optional type/category."""

    key: str
    content: str
    type: str | None = None
    category: str | None = None
