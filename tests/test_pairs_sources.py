"""Sources: JSONL export, stories folder, the bundled sample, and dispatch to MCP."""

from __future__ import annotations

import subprocess
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from amygdala_vllm.errors import FormatError, SourceError, UsageError
from amygdala_vllm.pairs.nodes import Node
from amygdala_vllm.pairs.select import Rules, prepare_texts, select_examples
from amygdala_vllm.pairs.sources import (
    SourceSpec,
    parse_jsonl_nodes,
    read_source,
    read_stories,
    sample_graph_bytes,
)

REPO = Path(__file__).resolve().parents[1]

GOOD = b'{"key": "a", "content": "hello\\nwarmth:9", "type": "semantic", "category": "core", "links": ["b"]}\n'


def test_jsonl_reads_nodes_and_ignores_unknown_fields() -> None:
    nodes, skipped = parse_jsonl_nodes(GOOD + b'\n{"key": "b", "content": "x", "type": 3}\n', "g.jsonl")
    assert nodes == [Node("a", "hello\nwarmth:9", "semantic", "core"), Node("b", "x", None, None)]
    assert skipped == {}


BAD_LINES = [
    (b"not json at all\n", "invalid_json", "not valid JSON"),
    (b"[1, 2]\n", "not_an_object", "not a JSON object"),
    (b'{"content": "no key"}\n', "missing_key", "no string 'key'"),
    (b'{"key": "k"}\n', "missing_content", "no string 'content'"),
    (b'{"key": "k", "content": ["a", "b"]}\n', "missing_content", "no string 'content'"),
]


@pytest.mark.parametrize(("line", "reason", "_"), BAD_LINES)
def test_bad_lines_are_skipped_and_counted(line: bytes, reason: str, _: str) -> None:
    nodes, skipped = parse_jsonl_nodes(GOOD + line + GOOD.replace(b'"a"', b'"c"'), "g.jsonl")
    assert [n.key for n in nodes] == ["a", "c"]
    assert skipped == {reason: 1}


@pytest.mark.parametrize(("line", "_", "message"), BAD_LINES)
def test_strict_names_file_and_line(line: bytes, _: str, message: str) -> None:
    with pytest.raises(FormatError, match=rf"^g\.jsonl:3: {message}"):
        parse_jsonl_nodes(GOOD + b"\n" + line, "g.jsonl", strict=True)


def test_non_utf8_is_an_error_naming_the_line() -> None:
    with pytest.raises(FormatError, match=r"^g\.jsonl:2: not UTF-8 \(byte 0xff\)"):
        parse_jsonl_nodes(GOOD + b'{"key": "b", "content": "\xff"}\n', "g.jsonl")


def test_stories_dir(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("A story.\njoy:9\n")
    (tmp_path / "sub" / "a.md").write_text("Another story.\n")
    (tmp_path / "notes.json").write_text("{}")  # not a story suffix
    (tmp_path / ".hidden.txt").write_text("x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.txt").write_text("x")
    nodes = read_stories(tmp_path)
    assert nodes == [Node("b.txt", "A story.\njoy:9\n", "story"), Node("sub/a.md", "Another story.\n", "story")]


def test_stories_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        read_stories(tmp_path / "missing")
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xfe")
    with pytest.raises(FormatError, match=r"bad\.txt:2: not UTF-8"):
        read_stories(tmp_path)


def test_more_than_one_source_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--memory-file and --stories-dir"):
        read_source(SourceSpec(memory_file=tmp_path / "g.jsonl", stories_dir=tmp_path))


def test_empty_sources_are_errors(tmp_path: Path) -> None:
    (tmp_path / "g.jsonl").write_text("\n\n")
    with pytest.raises(SourceError, match="yielded no nodes"):
        read_source(SourceSpec(memory_file=tmp_path / "g.jsonl"))
    with pytest.raises(SourceError, match="yielded no nodes"):
        read_source(SourceSpec(stories_dir=tmp_path))  # g.jsonl is not a story
    with pytest.raises(SourceError, match="does not exist"):
        read_source(SourceSpec(memory_file=tmp_path / "nope.jsonl"))


def test_file_source_description_records_path_and_hash(tmp_path: Path) -> None:
    (tmp_path / "g.jsonl").write_bytes(GOOD)
    result = read_source(SourceSpec(memory_file=tmp_path / "g.jsonl"))
    assert result.description["kind"] == "jsonl"
    assert len(result.description["sha256"]) == 64


def test_mcp_dispatch_is_lazy_and_passes_the_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_read(target: Any, mapping: Any, *, strict: bool, concurrency: int, progress: Any) -> tuple:
        seen.update(target=target, mapping=mapping, strict=strict, concurrency=concurrency)
        return [Node("k", "text")], Counter({"mcp_fetch_error": 2})

    fake = types.ModuleType("amygdala_vllm.pairs.mcp.source")
    fake.read_mcp_nodes = fake_read  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "amygdala_vllm.pairs.mcp.source", fake)
    spec = SourceSpec(memory_mcp_url="http://127.0.0.1:1/mcp", mcp_preset="server-memory",
                      mcp_overrides={"list_tool": "dump_all"}, mcp_timeout=2.5, mcp_concurrency=3,
                      mcp_headers=("Authorization: Bearer s3cret",))
    result = read_source(spec, strict=True)
    assert result.nodes == [Node("k", "text")] and result.skipped == {"mcp_fetch_error": 2}
    assert seen["target"].url == "http://127.0.0.1:1/mcp" and seen["target"].timeout == 2.5
    assert dict(seen["target"].headers) == {"Authorization": "Bearer s3cret"}
    assert seen["strict"] is True and seen["concurrency"] == 3
    assert seen["mapping"].list_tool == "dump_all"
    assert seen["mapping"].items_path == "entities"  # the rest comes from the preset
    assert result.description["kind"] == "mcp" and result.description["mapping"]["list_tool"] == "dump_all"
    assert result.description["transport"] == "http" and "s3cret" not in str(result.description)


# ------------------------------------------------------------- the sample graph


def _sample() -> list[Node]:
    nodes, skipped = parse_jsonl_nodes(sample_graph_bytes(), "sample")
    assert skipped == {}
    return nodes


def test_sample_graph_shape() -> None:
    nodes = _sample()
    assert len(nodes) >= 400
    assert len(sample_graph_bytes()) < 1_000_000
    keys = [n.key for n in nodes]
    assert len(set(keys)) == len(keys)
    assert any(k.startswith("journal/2026-") and "#" in k for k in keys)
    assert any(k.startswith("digest/daily/") for k in keys)
    assert any(k.startswith("digest/weekly/") for k in keys)
    assert any(k.startswith("pattern/") for k in keys)
    assert any(n.key.startswith("identity.md#") and n.category == "core" for n in nodes)
    assert {n.type for n in nodes} >= {"episodic_session", "episodic_daily", "episodic_weekly", "episodic_monthly", "semantic"}
    lengths = sorted(len(n.content) for n in nodes)
    assert lengths[0] < 40 and lengths[-1] > 1000  # one-liners to several paragraphs


def test_sample_graph_has_nodes_that_must_be_skipped_and_enough_positives() -> None:
    units, skipped = prepare_texts(_sample(), min_content_chars=40, seed=0, heldout_fraction=0.2)
    assert skipped["malformed_tags"] >= 5
    assert skipped["too_short"] >= 5
    assert skipped["duplicate_text"] >= 1
    emotions = {name for u in units for name, s in u.tags.items() if s >= 8}
    assert len(emotions) >= 12
    rich = [e for e in emotions if sum(not u.heldout for u in units if u.tags.get(e, 0) >= 8) >= 20]
    assert len(rich) >= 12
    for name in ("love", "tiredness"):  # realistic co-occurrence
        partner = {"love": "warmth", "tiredness": "frustration"}[name]
        both = sum(1 for u in units if u.tags.get(name, 0) >= 6 and u.tags.get(partner, 0) >= 6)
        assert both >= 10, name
    for e in rich:  # every rich emotion also has held-out positives and negatives
        ex = select_examples(units, e, Rules())
        assert any(x.unit.heldout and x.polarity == "positive" for x in ex), e
        assert any(x.unit.heldout and x.polarity == "negative" for x in ex), e


def test_sample_text_expresses_rather_than_names_the_emotion() -> None:
    from amygdala_vllm.pairs.tags import mention_pattern

    units, _ = prepare_texts(_sample(), min_content_chars=40, seed=0, heldout_fraction=0.2)
    for e in ("warmth", "joy", "calm", "anxiety", "frustration", "self_doubt"):
        positives = [u for u in units if u.tags.get(e, 0) >= 8]
        naming = sum(1 for u in positives if mention_pattern(e).search(u.text))
        assert naming <= len(positives) // 10, e


def test_sample_graph_is_what_the_generator_writes() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_sample_graph.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
