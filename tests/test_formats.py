"""formats: strict structs, deterministic JSON, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from amygdala_vllm.errors import FormatError, SourceError, UsageError
from amygdala_vllm.formats import (
    PAIRS_FORMAT, DatasetInfo, DatasetStats, EmotionCounts, ExampleRecord, ShardInfo, encode_json, encode_jsonl,
    manifest_path_for, read_input, read_json, read_jsonl, write_json,
)


def _info() -> DatasetInfo:
    return DatasetInfo(format=PAIRS_FORMAT, source={"kind": "jsonl"}, options={"b": 1, "a": 2},
                       emotions={"joy": EmotionCounts(3, 4, 1, 1), "anger": EmotionCounts(2, 2, 0, 1)},
                       stats=DatasetStats(nodes_read=9, nodes_skipped={"no tags": 2}, texts=7))


def test_manifest_path_sits_beside_the_vectors_and_names_the_flag() -> None:
    assert manifest_path_for(Path("runs/x.safetensors")) == Path("runs/x.manifest.json")
    with pytest.raises(UsageError, match=r"--output must name a .safetensors file"):
        manifest_path_for(Path("runs/x.bin"), "--output")


def test_json_is_deterministic_indented_and_round_trips(tmp_path: Path) -> None:
    data = encode_json(_info())
    assert data.endswith(b"\n") and b'\n  "emotions"' in data
    assert data.index(b'"a": 2') < data.index(b'"b": 1')  # dict keys sorted
    path = tmp_path / "dataset.json"
    write_json(path, _info())
    assert path.read_bytes() == data
    assert read_json(path, DatasetInfo, expect_format=PAIRS_FORMAT) == _info()


def test_read_json_names_the_file_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    with pytest.raises(FormatError, match=r"d.json does not exist"):
        read_json(path, DatasetInfo)
    path.write_text("{not json")
    with pytest.raises(FormatError, match=r"d.json is not valid JSON"):
        read_json(path, DatasetInfo, expect_format=PAIRS_FORMAT)
    write_json(path, _info())
    with pytest.raises(FormatError, match=r"has format 'amygdala-pairs/1', expected 'amygdala-capture/1'"):
        read_json(path, DatasetInfo, expect_format="amygdala-capture/1")
    raw = msgspec.json.decode(path.read_bytes())
    raw["typo_field"] = 1
    path.write_bytes(msgspec.json.encode(raw))
    with pytest.raises(FormatError, match=r"does not match the DatasetInfo schema: .*typo_field"):
        read_json(path, DatasetInfo)


def test_jsonl_round_trip_and_line_numbers(tmp_path: Path) -> None:
    recs = [ExampleRecord("joy", "positive", 0, 9.0, "train"), ExampleRecord("joy", "negative", 1, None, "heldout")]
    path = tmp_path / "e.jsonl"
    path.write_bytes(encode_jsonl(recs) + b"\n")  # a blank line is skipped
    assert list(read_jsonl(path, ExampleRecord)) == recs
    path.write_bytes(encode_jsonl(recs) + b'{"emotion": "joy", "polarity": "sideways"}\n')
    with pytest.raises(FormatError, match=r"e.jsonl:3: "):
        list(read_jsonl(path, ExampleRecord))
    with pytest.raises(FormatError, match="does not exist"):
        list(read_jsonl(tmp_path / "none.jsonl", ExampleRecord))


def test_read_input_raises_the_callers_error_type(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"memory file .*m.jsonl does not exist"):
        read_input(tmp_path / "m.jsonl", what="memory file", error=SourceError)
    with pytest.raises(FormatError, match="cannot read"):
        read_input(tmp_path)  # a directory


def test_structs_forbid_unknown_fields() -> None:
    with pytest.raises(msgspec.ValidationError, match="extra"):
        msgspec.json.decode(b'{"file": "a", "num_texts": 1, "sha256": "x", "extra": 1}', type=ShardInfo)


def test_every_format_version_is_written_in_formats_only() -> None:
    """A file format's version string (``amygdala-NAME/N``) is a literal in ``formats.py`` and nowhere else.

    Issue 23: versions and their upgrades in one place. The check reads the
    source with ``ast``; the planted module below proves it can fail.
    """
    import ast
    import re

    import amygdala_vllm

    version = re.compile(r"amygdala-[a-z-]+/\d+")
    package = Path(amygdala_vllm.__file__).parent

    def literals(source: str) -> list[str]:
        return [n.value for n in ast.walk(ast.parse(source))
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and version.fullmatch(n.value)]

    outside = {str(p.relative_to(package)): found for p in sorted(package.rglob("*.py"))
               if p.name != "formats.py" or p.parent != package
               if (found := literals(p.read_text()))}
    assert outside == {}
    assert "amygdala-validate/2" in literals((package / "formats.py").read_text())
    assert literals('X = "amygdala-thing/3"\n"""amygdala-thing/3 in prose is fine."""\n') == ["amygdala-thing/3"]
