"""pairs gives the same dataset bytes as before its speed-up (word index, lazy ranks), on two graphs.

The pinned digests were produced once by main's code before the change
(2026-12-04, commit a69464a), from the bundled sample and from a 2,000-node,
200-emotion graph of scripts/bench/scale_graph.py. Two things can move them:
the generator (the graph digest fails first: regenerate the pins with the
old pairs code, never with the new) or pairs itself (a real change in which
examples are chosen).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from amygdala_vllm.pairs.build import PairsOptions, build_dataset
from amygdala_vllm.pairs.select import Rules
from amygdala_vllm.pairs.sources import SourceSpec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from bench.scale_graph import write_graph  # noqa: E402

SAMPLE = {
    "dataset.json": "d9f0533d69b81711bfce9164d1cedbf04fae5941f865eade681e285a90367447",
    "texts.jsonl": "fba24aed4295d2dfc6c20e2cea9a73ac0a1ba3ed3ec8e8860d41b36af6bf44c4",
    "examples.jsonl": "fe3dd29f9c235a58463d623d659591577b16e80ec2521e1db0974272c29bf16b",
}
GRAPH_2000 = "c6d3793ade81cd004f0d817e0a5e9108516bd29e2c622283d23c90e7895546a3"
GENERATED_2000 = {  # dataset.json names the graph's path, so only the texts and examples are pinned
    "texts.jsonl": "ac3183f6186f948a6a2371cf394691fc21a137cd1e4cade56256767da11fde9a",
    "examples.jsonl": "49373184eb8f25d63de2536f08ed6ed3fd5a16be64b53d631fd45ccb7ae88e7f",
}


def _digests(d: Path, names: dict[str, str]) -> dict[str, str]:
    return {n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in names}


def test_bundled_sample_dataset_is_byte_identical(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from amygdala_vllm.cli import app

    result = CliRunner().invoke(app, ["pairs", "--output-dir", str(tmp_path / "ds")])  # the defaults, as a user runs it
    assert result.exit_code == 0, result.output
    assert _digests(tmp_path / "ds", SAMPLE) == SAMPLE


def test_generated_2000_node_graph_dataset_is_byte_identical(tmp_path: Path) -> None:
    graph = write_graph(tmp_path / "g.jsonl", 2000)
    assert hashlib.sha256(graph.read_bytes()).hexdigest() == GRAPH_2000, "scale_graph.py changed: see the docstring"
    build_dataset(SourceSpec(memory_file=graph), tmp_path / "ds",
                  PairsOptions(rules=Rules(max_examples_per_emotion=500), top_emotions=200))
    assert _digests(tmp_path / "ds", GENERATED_2000) == GENERATED_2000
