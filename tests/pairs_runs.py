"""A graph small enough to compute ``pairs`` by hand, and the helpers that run ``amygdala-vllm pairs`` on it.

Shared by the ``pairs`` command's tests and the neutral-texts tests (a test file never imports another one).
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from amygdala_vllm.cli import app

runner = CliRunner()


def pairs(*args: str | Path) -> "CliRunner.invoke":  # type: ignore[valid-type]
    return runner.invoke(app, ["pairs", *map(str, args)])


def jsonl(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_graph(path: Path, nodes: list[dict]) -> Path:  # type: ignore[type-arg]
    path.write_text("".join(json.dumps(n) + "\n" for n in nodes))
    return path


# A graph small enough to compute by hand. min-content-chars 10, heldout 0.
# joy positives: a (9), b (10); joy negatives: c, d, e (untagged, no mention), not f (mentions joy),
# not g (tagged 5). Lengths: a 30, b 60 -> negatives matched by length: c (28) for a, e (58) for b.
# h duplicates a's text with extra whitespace; it is stored once.
SMALL = [
    {"key": "a", "content": "A" * 30 + "\njoy:9"},
    {"key": "b", "content": "B" * 60 + "\njoy:10 calm:9"},
    {"key": "c", "content": "C" * 28},
    {"key": "d", "content": "D" * 45},
    {"key": "e", "content": "E" * 58},
    {"key": "f", "content": "F" * 20 + " joy " + "F" * 20},
    {"key": "g", "content": "G" * 30 + "\njoy:5"},
    {"key": "h", "content": "  " + "A" * 30 + "  \n\njoy:8"},
    {"key": "i", "content": "short\njoy:9"},
]
