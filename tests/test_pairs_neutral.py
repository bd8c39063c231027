"""``pairs --neutral-texts FILE``: neutral texts enter the dataset as train texts in no example.

They must reach texts.jsonl (so ``extract`` captures them), be listed in
dataset.json's ``neutral`` and count in the dataset identity, while datasets
without the field (written before it existed) still load with their old identity.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amygdala_vllm.dataset import dataset_sha256, load_dataset
from amygdala_vllm.errors import FormatError
from amygdala_vllm.formats import DATASET_FILE, EXAMPLES_FILE, TEXTS_FILE
from pairs_runs import SMALL, jsonl, pairs, write_graph

FLAGS = ("--min-content-chars", 10, "--heldout-fraction", 0)


def _run(tmp_path: Path, neutral: Path, *extra: str | Path):
    graph = write_graph(tmp_path / "g.jsonl", SMALL)
    out = tmp_path / "ds"
    return pairs("--memory-file", graph, "--output-dir", out, *FLAGS, "--neutral-texts", neutral, *extra), out


def test_plain_text_file_adds_neutral_train_texts(tmp_path: Path) -> None:
    neutral = tmp_path / "neutral.txt"
    # line 3 repeats node c's text (already a joy negative): kept once, as the labelled text
    neutral.write_text("The bus leaves at nine.\n\n  Water boils at 100 degrees.  \n" + "C" * 28 + "\n"
                       "The bus   leaves at nine.\n")
    result, out = _run(tmp_path, neutral)
    assert result.exit_code == 0, result.output
    texts = jsonl(out / TEXTS_FILE)
    assert [t["key"] for t in texts] == ["a", "b", "c", "e", "neutral-texts:1", "neutral-texts:3"]
    info = json.loads((out / DATASET_FILE).read_text())
    assert info["neutral"] == [4, 5]
    assert texts[5]["text"] == "Water boils at 100 degrees."
    assert info["options"]["neutral_texts"]["texts"] == 2 and info["options"]["neutral_texts"]["duplicates"] == 2
    assert {e["text_id"] for e in jsonl(out / EXAMPLES_FILE)} == {0, 1, 2, 3}  # no example uses them
    ds = load_dataset(out)
    assert ds.info.neutral == [4, 5]
    assert ds.text_ids("train") == [0, 1, 2, 3, 4, 5] and ds.text_ids("all") == [0, 1, 2, 3, 4, 5]
    assert ds.text_ids("heldout") == []
    assert ds.sha256 != dataset_sha256(out)  # the neutral list is part of the identity
    assert "neutral texts 2" in result.output


def test_jsonl_file_reads_the_text_field(tmp_path: Path) -> None:
    neutral = tmp_path / "neutral.jsonl"
    neutral.write_text(json.dumps({"text": "A plain statement.", "source": "x"}) + "\n"
                       + json.dumps({"text": "Another one."}) + "\n")
    result, out = _run(tmp_path, neutral)
    assert result.exit_code == 0, result.output
    assert [t["text"] for t in jsonl(out / TEXTS_FILE)][4:] == ["A plain statement.", "Another one."]


@pytest.mark.parametrize("name, content, message", [
    ("n.jsonl", b'{"txt": "x"}\n', "n.jsonl:1: expected an object"),
    ("n.jsonl", b'{"text": "x"}\nnot json\n', "n.jsonl:2: not valid JSON"),
    ("n.txt", b"ok\n\xff\n", "n.txt is not UTF-8"),
    ("n.txt", b"\n  \n", "holds no text"),
])
def test_bad_neutral_file_is_one_line_and_writes_nothing(tmp_path: Path, name: str, content: bytes,
                                                         message: str) -> None:
    neutral = tmp_path / name
    neutral.write_bytes(content)
    result, out = _run(tmp_path, neutral)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_missing_neutral_file(tmp_path: Path) -> None:
    result, out = _run(tmp_path, tmp_path / "absent.txt")
    assert result.exit_code == 1 and "--neutral-texts file" in result.output and not out.exists()


def test_old_dataset_without_neutral_field_loads_with_its_old_identity(tmp_path: Path) -> None:
    result = pairs("--memory-file", write_graph(tmp_path / "g.jsonl", SMALL), "--output-dir", tmp_path / "ds", *FLAGS)
    assert result.exit_code == 0, result.output
    path = tmp_path / "ds" / DATASET_FILE
    info = json.loads(path.read_text())
    assert info.pop("neutral") == []
    path.write_text(json.dumps(info))  # as written before the field existed
    ds = load_dataset(tmp_path / "ds")
    assert ds.info.neutral == [] and ds.sha256 == dataset_sha256(tmp_path / "ds")
    assert ds.text_ids("train") == [0, 1, 2, 3]


@pytest.mark.parametrize("neutral, message", [([1], "also in examples.jsonl"), ([9], "within 0..3"),
                                              ([3, 3], "sorted and unique")])
def test_inconsistent_neutral_ids_are_refused(tmp_path: Path, neutral: list[int], message: str) -> None:
    result = pairs("--memory-file", write_graph(tmp_path / "g.jsonl", SMALL), "--output-dir", tmp_path / "ds", *FLAGS)
    assert result.exit_code == 0, result.output
    path = tmp_path / "ds" / DATASET_FILE
    info = json.loads(path.read_text())
    info["neutral"] = neutral
    path.write_text(json.dumps(info))
    with pytest.raises(FormatError, match=message):
        load_dataset(tmp_path / "ds")
