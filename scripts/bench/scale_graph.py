"""Production-shaped synthetic memory graphs for ``scripts/bench_scale.py`` and the scale tests.

The user's job: a graph of tens of thousands of nodes, each 40-120 words of
prose ending in a tag line with 2-6 of about 200 emotions. The prose here is
drawn from a fixed word list (no emotion names in it, so the mention rule
keeps untagged nodes usable as negatives); what matters for the pipeline's
cost is the shape (node count, words per node, tags per node, emotion count),
not the meaning. Seeded: the same arguments give the same bytes.
"""

from __future__ import annotations

import random
from pathlib import Path

import msgspec

__all__ = ["emotion_names", "generate", "write_graph"]

_WORDS = ("the a of to and in on for with at by from after before during while under over near "
          "morning evening night walk kitchen window letter train garden desk chair cup tea coffee "
          "rain sun wind street river bridge market office meeting call message note book page "
          "friend sister brother mother father neighbour colleague stranger child dog cat bird "
          "went came sat stood looked heard said wrote read thought waited opened closed carried "
          "slowly quickly quietly again still almost never always maybe later soon today yesterday "
          "small large old new warm cold bright dark long short quiet loud soft hard empty full").split()
_SYLLABLES = ("ka ri mo lu te sa vi no pe ra zu li ko ma di fe go hu ja be").split()


def emotion_names(n: int, seed: int = 7) -> list[str]:
    """``n`` distinct made-up emotion names (two or three syllables, letters only: valid tag names)."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < n:
        names.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3, 3)))) + "x")
    return sorted(names)


def generate(nodes: int, emotions: int = 200, seed: int = 1) -> list[dict[str, str | None]]:
    """``nodes`` graph nodes: 40-120 words, then a tag line with 2-6 emotions (Zipf-weighted, scores 1-10)."""
    rng = random.Random(seed)
    names = emotion_names(emotions)
    weights = [1.0 / (k + 1) ** 0.6 for k in range(emotions)]  # some emotions are far more common than others
    out = []
    for i in range(nodes):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(40, 120))]
        sentences, j = [], 0
        while j < len(words):
            step = rng.randint(6, 16)
            chunk = words[j : j + step]
            sentences.append(chunk[0].capitalize() + " " + " ".join(chunk[1:]) + ".")
            j += step
        chosen: dict[str, int] = {}
        for _ in range(rng.randint(2, 6)):
            chosen[rng.choices(names, weights)[0]] = rng.randint(1, 10)
        tags = " ".join(f"{k}:{v}" for k, v in chosen.items())
        out.append({"key": f"node/{i:06d}", "content": " ".join(sentences) + "\n\n" + tags,
                    "type": "episodic_session", "category": None})
    return out


def write_graph(path: Path, nodes: int, emotions: int = 200, seed: int = 1) -> Path:
    """Write the graph as JSONL (the ``pairs --memory-export`` format) and return its path."""
    enc = msgspec.json.Encoder()
    with open(path, "wb") as f:
        for n in generate(nodes, emotions, seed):
            f.write(enc.encode(n) + b"\n")
    return path
