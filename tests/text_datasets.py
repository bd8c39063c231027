"""Write small dataset dirs (the ``pairs`` format) from given texts, for engine tests.

``pairs`` builds datasets from memory graphs; engine tests need exact control
over the texts instead (lengths, shared prefixes, long texts), so they write the
three files directly through the same format structs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from amygdala_vllm.formats import (
    PAIRS_FORMAT,
    DatasetInfo,
    DatasetStats,
    EmotionCounts,
    ExampleRecord,
    TextRecord,
    encode_jsonl,
    write_json,
)

__all__ = ["write_text_dataset", "varied_texts"]

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


def write_text_dataset(path: Path, texts: list[str], *, emotion: str = "joy", heldout_every: int = 5) -> Path:
    """Dataset dir with one emotion: even texts positive, odd negative; every k-th held out."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    records = [
        TextRecord(id=i, key=f"node/{i}", text=t, sha256=hashlib.sha256(t.encode()).hexdigest())
        for i, t in enumerate(texts)
    ]
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
    counts = {"positive": 0, "negative": 0, "heldout_positive": 0, "heldout_negative": 0}
    for e in examples:
        counts[("heldout_" if e.split == "heldout" else "") + e.polarity] += 1
    info = DatasetInfo(
        format=PAIRS_FORMAT,
        source={"kind": "test"},
        options={},
        emotions={emotion: EmotionCounts(**counts)},
        stats=DatasetStats(nodes_read=len(texts), nodes_skipped={}, texts=len(texts)),
    )
    write_json(path / "dataset.json", info)
    (path / "texts.jsonl").write_bytes(encode_jsonl(records))
    (path / "examples.jsonl").write_bytes(encode_jsonl(examples))
    return path
