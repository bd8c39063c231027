"""dataset: a dataset dir loaded and cross-checked, its identity, its split ids and its emotion table.

The dataset comes from ``amygdala-vllm pairs`` on the hand-computed graph of ``pairs_runs.SMALL``
(texts a, b, c, e; joy: a, b positive, c, e negative; calm: b positive, e negative).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from amygdala_vllm.dataset import dataset_sha256, emotion_counts, is_dataset_dir, load_dataset, write_dataset_files
from amygdala_vllm.errors import FormatError
from amygdala_vllm.formats import EXAMPLES_FILE, EmotionCounts, ExampleRecord
from pairs_runs import SMALL, pairs, write_graph


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    out = tmp_path / "ds"
    result = pairs("--memory-file", write_graph(tmp_path / "g.jsonl", SMALL), "--output-dir", out,
                   "--min-content-chars", 10, "--heldout-fraction", 0)
    assert result.exit_code == 0, result.output
    return out


def test_load_gives_texts_examples_split_ids_and_identity(ds: Path) -> None:
    d = load_dataset(ds)
    assert is_dataset_dir(ds) and not is_dataset_dir(ds.parent)
    assert [t.key for t in d.texts] == ["a", "b", "c", "e"]
    assert d.text_ids("train") == d.text_ids("all") == [0, 1, 2, 3] and d.text_ids("heldout") == []
    assert d.sha256 == dataset_sha256(ds) != dataset_sha256(ds, neutral=[3])  # neutral ids are identity
    with pytest.raises(FormatError, match="unknown split 'test'"):
        d.text_ids("test")


def test_emotion_counts_lists_named_emotions_first():
    ex = [ExampleRecord(emotion="joy", polarity="positive", text_id=0, score=9, split="train"),
          ExampleRecord(emotion="joy", polarity="negative", text_id=1, score=None, split="heldout")]
    counts = emotion_counts(ex, ["calm"])
    assert list(counts) == ["calm", "joy"]
    assert counts["calm"] == EmotionCounts(positive=0, negative=0, heldout_positive=0, heldout_negative=0)
    assert counts["joy"] == EmotionCounts(positive=1, negative=0, heldout_positive=0, heldout_negative=1)


def test_inconsistent_dirs_are_one_format_error_each(ds: Path, tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"does not exist \(run `amygdala-vllm pairs` first\)"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(FormatError, match="dataset.json is missing"):
        load_dataset(tmp_path)
    d = load_dataset(ds)
    write_dataset_files(ds, d.info, d.texts, [*d.examples, msgspec.structs.replace(d.examples[0], text_id=9)])
    with pytest.raises(FormatError, match=r"text_id 9 out of range 0..3"):
        load_dataset(ds)
    write_dataset_files(ds, d.info, [d.texts[1], d.texts[0], *d.texts[2:]], d.examples)
    with pytest.raises(FormatError, match=r"ids must be dense 0..N-1; line 1 has id 1"):
        load_dataset(ds)
    (ds / EXAMPLES_FILE).unlink()
    with pytest.raises(FormatError, match="examples.jsonl is missing"):
        dataset_sha256(ds)
