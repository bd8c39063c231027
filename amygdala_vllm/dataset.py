"""Reading and writing a dataset dir in the ``pairs`` format (dataset.json, texts.jsonl, examples.jsonl).

``extract`` and ``reduce`` both need the texts and the examples, and both must
agree on which dataset they saw: :func:`dataset_sha256` is that identity, the
hash of the two files that define text ids and labels (``dataset.json`` only
describes them, and its ``source`` differs between equivalent sources).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import FormatError
from .formats import (
    DATASET_FILE,
    EXAMPLES_FILE,
    PAIRS_FORMAT,
    TEXTS_FILE,
    DatasetInfo,
    EmotionCounts,
    ExampleRecord,
    TextRecord,
    encode_json,
    encode_jsonl,
    read_json,
    read_jsonl,
)

__all__ = ["Dataset", "load_dataset", "dataset_sha256", "is_dataset_dir", "emotion_counts", "write_dataset_files"]


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: header, texts indexed by id, and every example."""

    path: Path
    info: DatasetInfo
    texts: list[TextRecord]
    examples: list[ExampleRecord]
    sha256: str

    def text_ids(self, split: str = "all") -> list[int]:
        """Sorted unique ids of texts used by at least one example of ``split`` (train|heldout|all)."""
        if split not in ("train", "heldout", "all"):
            raise FormatError(f"unknown split {split!r}; choose train, heldout or all")
        ids = {e.text_id for e in self.examples if split == "all" or e.split == split}
        if split != "heldout":
            ids.update(self.info.neutral)  # neutral texts are train texts: extract captures them with the rest
        return sorted(ids)


def is_dataset_dir(path: Path) -> bool:
    """True if ``path`` looks like a dataset dir (has dataset.json)."""
    return (Path(path) / DATASET_FILE).is_file()


def dataset_sha256(path: Path, neutral: Sequence[int] = ()) -> str:
    """Identity of a dataset dir: SHA-256 over texts.jsonl, examples.jsonl and the neutral text ids.

    The neutral ids (``dataset.json``'s ``neutral``) label texts as examples do, so
    they are part of the identity; an empty list adds nothing, so datasets
    without neutral texts keep the identity they always had.
    """
    h = hashlib.sha256()
    for name in (TEXTS_FILE, EXAMPLES_FILE):
        try:
            data = (Path(path) / name).read_bytes()
        except FileNotFoundError as exc:
            raise FormatError(f"{path} is not a dataset dir: {name} is missing") from exc
        h.update(name.encode() + b"\0" + data + b"\0")
    if neutral:
        h.update(b"neutral\0" + ",".join(str(int(i)) for i in neutral).encode() + b"\0")
    return h.hexdigest()


def load_dataset(path: Path) -> Dataset:
    """Load and cross-check a dataset dir; every inconsistency is a FormatError."""
    path = Path(path)
    if not path.is_dir():
        raise FormatError(f"dataset dir {path} does not exist (run `amygdala-vllm pairs` first)")
    if not is_dataset_dir(path):
        raise FormatError(f"{path} is not a dataset dir: {DATASET_FILE} is missing")
    info = read_json(path / DATASET_FILE, DatasetInfo, expect_format=PAIRS_FORMAT)
    texts = list(read_jsonl(path / TEXTS_FILE, TextRecord))
    for i, t in enumerate(texts):
        if t.id != i:
            raise FormatError(f"{path / TEXTS_FILE}: ids must be dense 0..N-1; line {i + 1} has id {t.id}")
    examples = list(read_jsonl(path / EXAMPLES_FILE, ExampleRecord))
    for e in examples:
        if not 0 <= e.text_id < len(texts):
            raise FormatError(f"{path / EXAMPLES_FILE}: text_id {e.text_id} out of range 0..{len(texts) - 1}")
    _check_neutral(path, info.neutral, len(texts), examples)
    return Dataset(path=path, info=info, texts=texts, examples=examples, sha256=dataset_sha256(path, info.neutral))


def _check_neutral(path: Path, neutral: list[int], n_texts: int, examples: list[ExampleRecord]) -> None:
    """Neutral ids are sorted, unique, in range, and in no example (a neutral text has no label)."""
    where = path / DATASET_FILE
    if any(b <= a for a, b in zip(neutral, neutral[1:])):
        raise FormatError(f"{where}: neutral text ids must be sorted and unique")
    if neutral and not (0 <= neutral[0] and neutral[-1] < n_texts):
        raise FormatError(f"{where}: neutral text ids must be within 0..{n_texts - 1}")
    labelled = set(neutral).intersection(e.text_id for e in examples)
    if labelled:
        raise FormatError(f"{where}: neutral text {min(labelled)} is also in {EXAMPLES_FILE}")


def emotion_counts(examples: Iterable[ExampleRecord], emotions: Iterable[str] = ()) -> dict[str, EmotionCounts]:
    """The ``emotions`` table of ``dataset.json``: train and held-out positives and negatives per emotion.

    Names in ``emotions`` come first and are listed even without examples; the
    rest follow in order of first use.
    """
    zero = {"positive": 0, "negative": 0, "heldout_positive": 0, "heldout_negative": 0}
    counts: dict[str, dict[str, int]] = {e: dict(zero) for e in emotions}
    for ex in examples:
        c = counts.setdefault(ex.emotion, dict(zero))
        c[("heldout_" if ex.split == "heldout" else "") + ex.polarity] += 1
    return {name: EmotionCounts(**c) for name, c in counts.items()}


def write_dataset_files(path: Path, info: DatasetInfo, texts: list[TextRecord], examples: list[ExampleRecord]) -> None:
    """Write the three files of a dataset dir into ``path`` (the caller makes it atomic if it must be)."""
    (path / TEXTS_FILE).write_bytes(encode_jsonl(texts))
    (path / EXAMPLES_FILE).write_bytes(encode_jsonl(examples))
    (path / DATASET_FILE).write_bytes(encode_json(info))
