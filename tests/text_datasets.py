"""Write small dataset dirs (the ``pairs`` format) from given texts, for engine tests.

``pairs`` builds datasets from memory graphs; engine tests need exact control
over the texts instead (lengths, shared prefixes, long texts), so they write the
three files directly through the same format structs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from amygdala_vllm.dataset import emotion_counts, write_dataset_files
from amygdala_vllm.formats import PAIRS_FORMAT, DatasetInfo, DatasetStats, ExampleRecord, TextRecord

__all__ = ["write_dataset_dir", "write_text_dataset", "varied_texts"]

WORDS = (
    "the morning was quiet and the river ran slowly past the old mill while she opened the window "
    "and felt the cold air on her face nothing had happened yet but everything was about to change"
).split()


def varied_texts(n: int, *, seed: int = 0, max_words: int = 60) -> list[str]:
    """``n`` distinct texts of mixed lengths (3..max_words words), deterministic."""
    out = []
    for i in range(n):
        length = 3 + (i * 7 + seed) % (max_words - 2)
        words = [WORDS[(i * 13 + j * 5 + seed) % len(WORDS)] for j in range(length)]
        out.append(" ".join(words) + f" ({i})")
    return out


def write_dataset_dir(path: Path, texts: list[TextRecord], examples: list[ExampleRecord],
                      source: dict | None = None, options: dict | None = None, emotions: tuple[str, ...] = ()) -> Path:
    """Write the three files of a dataset dir, with per-emotion counts derived from ``examples``.

    ``emotions`` are listed in ``dataset.json`` even when no example uses them.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    info = DatasetInfo(
        format=PAIRS_FORMAT,
        source=source or {"kind": "test"},
        options=options or {},
        emotions=emotion_counts(examples, emotions),
        stats=DatasetStats(nodes_read=len(texts), nodes_skipped={}, texts=len(texts)),
    )
    write_dataset_files(path, info, texts, examples)
    return path


def text_record(i: int, text: str, key: str | None = None) -> TextRecord:
    """A texts.jsonl record for ``text`` with id ``i``."""
    return TextRecord(id=i, key=key or f"node/{i}", text=text, sha256=hashlib.sha256(text.encode()).hexdigest())


def write_text_dataset(path: Path, texts: list[str], *, emotion: str = "joy", heldout_every: int = 5) -> Path:
    """Dataset dir with one emotion: even texts positive, odd negative; every k-th held out."""
    records = [text_record(i, t) for i, t in enumerate(texts)]
    examples = [
        ExampleRecord(
            emotion=emotion,
            polarity="positive" if i % 2 == 0 else "negative",
            text_id=i,
            score=9.0 if i % 2 == 0 else None,
            split="heldout" if i % heldout_every == heldout_every - 1 else "train",
        )
        for i in range(len(texts))
    ]
    return write_dataset_dir(path, records, examples)
