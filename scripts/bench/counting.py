"""Forward passes and tokens: the seed's per-emotion loop vs one pass per unique text.

Pure python. ``seed_work`` walks the examples exactly as the seed script did
(per emotion, its positives then its negatives, in batches of 4, right-padded
to the longest text of the batch); ``dedup_work`` is what ``extract`` runs
(every unique text once). ``production_estimate`` scales both to a
production-shaped job under a stated overlap model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from amygdala_vllm.formats import ExampleRecord

__all__ = ["Work", "seed_batches", "seed_work", "dedup_work", "production_estimate"]


@dataclass(frozen=True)
class Work:
    """Sequences forwarded, batches (forward calls), real tokens and tokens after padding."""

    sequences: int
    batches: int
    tokens: int
    padded_tokens: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def seed_batches(examples: Sequence[ExampleRecord], batch_size: int = 4) -> list[list[int]]:
    """Text ids per forward call of the seed loop: per emotion (sorted), positives then negatives."""
    by_emotion: dict[str, dict[str, list[int]]] = {}
    for e in examples:
        by_emotion.setdefault(e.emotion, {"positive": [], "negative": []})[e.polarity].append(e.text_id)
    batches = []
    for emotion in sorted(by_emotion):
        for pol in ("positive", "negative"):
            ids = by_emotion[emotion][pol]
            batches.extend(ids[i : i + batch_size] for i in range(0, len(ids), batch_size))
    return batches


def seed_work(examples: Sequence[ExampleRecord], lengths: Sequence[int], batch_size: int = 4) -> Work:
    """The seed loop's work; ``lengths[text_id]`` is the text's token count."""
    batches = seed_batches(examples, batch_size)
    return Work(
        sequences=sum(len(b) for b in batches),
        batches=len(batches),
        tokens=sum(lengths[t] for b in batches for t in b),
        padded_tokens=sum(len(b) * max(lengths[t] for t in b) for b in batches),
    )


def dedup_work(text_ids: Sequence[int], lengths: Sequence[int], batch_size: int, sort_by_length: bool = False) -> Work:
    """One pass per unique text, in batches of ``batch_size`` (padding only matters for HF)."""
    ids = sorted(set(text_ids), key=lambda t: (lengths[t], t)) if sort_by_length else sorted(set(text_ids))
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    return Work(
        sequences=len(ids),
        batches=len(batches),
        tokens=sum(lengths[t] for t in ids),
        padded_tokens=sum(len(b) * max(lengths[t] for t in b) for b in batches),
    )


def production_estimate(nodes: int, emotions: int = 200, per_emotion: int = 1000, mean_tokens: float = 85.0,
                        seed_padding: float = 1.0) -> dict[str, float]:
    """Seed loop vs dedup for ``emotions`` x ``per_emotion`` examples drawn from a graph of ``nodes`` nodes.

    Overlap model: each emotion uses ``per_emotion`` distinct nodes drawn uniformly
    from the graph, independently of the other emotions, so a node is used by
    at least one emotion with probability ``1 - (1 - per_emotion/nodes)**emotions``.
    ``seed_padding`` is padded/real tokens of batches of 4 (measured on the corpus).
    """
    if per_emotion > nodes:
        raise ValueError("per_emotion examples need at least that many nodes")
    examples = emotions * per_emotion
    unique = nodes * (1.0 - (1.0 - per_emotion / nodes) ** emotions)
    return {
        "nodes": nodes,
        "emotions": emotions,
        "examples_per_emotion": per_emotion,
        "mean_tokens_per_text": mean_tokens,
        "seed_sequences": examples,
        "seed_batches": emotions * 2 * math.ceil(per_emotion / 2 / 4),
        "seed_tokens": examples * mean_tokens,
        "seed_padded_tokens": examples * mean_tokens * seed_padding,
        "unique_texts": unique,
        "dedup_tokens": unique * mean_tokens,
        "reuse": examples / unique,
        "tokens_ratio": examples * mean_tokens * seed_padding / (unique * mean_tokens),
    }
