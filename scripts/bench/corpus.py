"""Benchmark corpora built deterministically from the bundled sample graph.

How the main corpus is made (also written into docs/benchmarks.md):

1. Every node of ``amygdala_vllm/data/sample_graph.jsonl`` is parsed with
   :func:`amygdala_vllm.pairs.tags.parse_tags` (tag lines stripped; malformed
   nodes skipped) and its body split into paragraphs (blank lines) and
   sentences (after ``.``, ``!`` or ``?``).
2. Variant ``v >= 1`` of node ``n`` keeps ``n``'s paragraph and sentence
   *counts* (so the length distribution follows the sample's) and fills each
   sentence slot with ``n``'s own sentence or, with probability 1/2, a sentence
   drawn from every sentence of the sample's nodes of the same type; sentences are
   then shuffled within each paragraph. The variant keeps ``n``'s tag line, so
   ``pairs`` selects it like ``n``. Variant 0 is the node itself. All draws come
   from ``random.Random(f"{seed}:{key}:{v}")``.
3. Variants are added round by round (all nodes' variant 1, then 2, ...) and the
   memory file goes through the real ``pairs`` builder (default rules) until the
   dataset holds at least ``target`` unique texts.

Tags of a recombined text no longer describe it exactly; only the *shape* of
the work (text lengths, per-emotion overlap) matters here.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from amygdala_vllm.dataset import Dataset, emotion_counts, load_dataset, write_dataset_files
from amygdala_vllm.formats import PAIRS_FORMAT, DatasetInfo, DatasetStats, ExampleRecord, TextRecord
from amygdala_vllm.pairs.build import PairsOptions, build_dataset
from amygdala_vllm.pairs.sources import SourceSpec, sample_graph_bytes
from amygdala_vllm.pairs.tags import MalformedTags, format_tag_line, parse_tags

__all__ = ["SampleNode", "sample_nodes", "variant_text", "build_corpus", "subset_dataset", "short_dataset",
           "length_quantiles", "write_dataset"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_PARAGRAPH = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class SampleNode:
    """A sample-graph node: key, type, tags, and its body as paragraphs of sentences."""

    key: str
    type: str
    tags: dict[str, float]
    paragraphs: tuple[tuple[str, ...], ...]


def _split(body: str) -> tuple[tuple[str, ...], ...]:
    paras = []
    for para in _PARAGRAPH.split(body):
        sents = tuple(s.strip() for s in _SENTENCE.split(para.strip()) if s.strip())
        if sents:
            paras.append(sents)
    return tuple(paras)


def sample_nodes() -> list[SampleNode]:
    """The sample graph's well-formed nodes, tags stripped, in file order."""
    out = []
    for line in sample_graph_bytes().decode().splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        try:
            parsed = parse_tags(raw["content"])
        except MalformedTags:
            continue
        paras = _split(parsed.text)
        if paras:
            out.append(SampleNode(raw["key"], raw.get("type") or "", dict(parsed.tags), paras))
    return out


def _pools(nodes: list[SampleNode]) -> dict[str, list[str]]:
    pools: dict[str, list[str]] = {}
    for n in nodes:
        pools.setdefault(n.type, []).extend(s for p in n.paragraphs for s in p)
    return pools


def variant_text(node: SampleNode, v: int, pools: dict[str, list[str]], seed: int = 0) -> str:
    """Variant ``v`` of ``node`` (``v == 0``: the node's own body)."""
    if v == 0:
        return "\n\n".join(" ".join(p) for p in node.paragraphs)
    rng = random.Random(f"{seed}:{node.key}:{v}")
    pool = pools[node.type]
    paras = []
    for para in node.paragraphs:
        sents = [s if rng.random() < 0.5 else rng.choice(pool) for s in para]
        rng.shuffle(sents)
        paras.append(" ".join(sents))
    return "\n\n".join(paras)


def _memory_lines(nodes: list[SampleNode], rounds: int, pools: dict[str, list[str]], seed: int) -> list[str]:
    lines = []
    for v in range(rounds):
        for n in nodes:
            body = variant_text(n, v, pools, seed)
            content = body + ("\n\n" + format_tag_line(n.tags) if n.tags else "")
            key = n.key if v == 0 else f"{n.key}~v{v}"
            lines.append(json.dumps({"key": key, "content": content, "type": n.type or None}))
    return lines


def build_corpus(out_dir: Path, target: int, seed: int = 0) -> tuple[Dataset, int]:
    """A ``pairs`` dataset under ``out_dir/dataset`` with at least ``target`` texts; also returns the rounds used."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nodes = sample_nodes()
    pools = _pools(nodes)
    rounds = max(1, -(-target // len(nodes)))
    while True:
        mem = out_dir / "memory.jsonl"
        mem.write_text("\n".join(_memory_lines(nodes, rounds, pools, seed)) + "\n")
        ds_dir = out_dir / "dataset"
        build_dataset(SourceSpec(memory_file=mem), ds_dir, PairsOptions(), force=True)
        ds = load_dataset(ds_dir)
        if len(ds.text_ids()) >= target:
            return ds, rounds
        rounds += 1


def write_dataset(path: Path, texts: list[TextRecord], examples: list[ExampleRecord], source: dict) -> Dataset:
    """Write a dataset dir (the ``pairs`` format) from records; ids must be dense."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    info = DatasetInfo(format=PAIRS_FORMAT, source=source, options={},
                       emotions=dict(sorted(emotion_counts(examples).items())),
                       stats=DatasetStats(nodes_read=len(texts), nodes_skipped={}, texts=len(texts)))
    write_dataset_files(path, info, texts, examples)
    return load_dataset(path)


def subset_dataset(ds: Dataset, path: Path, n_texts: int, seed: int = 0) -> Dataset:
    """``n_texts`` texts drawn uniformly (seeded) with every example that uses them, ids made dense.

    Keeping all examples of the kept texts keeps the per-emotion reuse of texts
    (examples per unique text) of the full dataset, which is what the seed-style
    loop pays for.
    """
    ids = ds.text_ids()
    keep = sorted(random.Random(seed).sample(ids, min(n_texts, len(ids))))
    new = {old: i for i, old in enumerate(keep)}
    texts = [TextRecord(id=new[o], key=ds.texts[o].key, text=ds.texts[o].text, sha256=ds.texts[o].sha256) for o in keep]
    examples = [ExampleRecord(emotion=e.emotion, polarity=e.polarity, text_id=new[e.text_id], score=e.score,
                              split=e.split) for e in ds.examples if e.text_id in new]
    return write_dataset(path, texts, examples, {"kind": "bench-subset", "of": str(ds.path), "texts": len(keep),
                                                 "seed": seed})


def short_dataset(path: Path, n_texts: int, words: int = 3, seed: int = 0) -> Dataset:
    """``n_texts`` unique short texts (``words`` sample words each), one example each, for the memory rows."""
    vocab = sorted({w.strip(".,;:!?\"'()").lower() for n in sample_nodes() for p in n.paragraphs for s in p
                    for w in s.split()} - {""})
    rng = random.Random(seed)
    seen: set[str] = set()
    texts: list[TextRecord] = []
    while len(texts) < n_texts:
        t = " ".join(rng.choice(vocab) for _ in range(words)).capitalize() + "."
        if t in seen:
            continue
        seen.add(t)
        texts.append(TextRecord(id=len(texts), key=f"short/{len(texts):06d}", text=t,
                                sha256=hashlib.sha256(t.encode()).hexdigest()))
    examples = [ExampleRecord(emotion="bench", polarity="positive" if i % 2 == 0 else "negative", text_id=i,
                              score=None, split="train") for i in range(n_texts)]
    return write_dataset(path, texts, examples, {"kind": "bench-short", "texts": n_texts, "words": words, "seed": seed})


def length_quantiles(lengths: list[int]) -> dict[str, float]:
    """min, p10, p25, median, p75, p90, max and mean of ``lengths``."""
    s = sorted(lengths)
    if not s:
        return {}

    def q(f: float) -> float:
        return float(s[min(len(s) - 1, int(round(f * (len(s) - 1))))])

    return {"min": float(s[0]), "p10": q(0.1), "p25": q(0.25), "median": q(0.5), "p75": q(0.75), "p90": q(0.9),
            "max": float(s[-1]), "mean": sum(s) / len(s)}
