"""The benchmark script's pure-python parts: corpus building and work counting (no engines, seconds)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from bench import corpus, counting  # noqa: E402

from amygdala_vllm.formats import ExampleRecord  # noqa: E402


def _ex(emotion: str, polarity: str, tid: int) -> ExampleRecord:
    return ExampleRecord(emotion=emotion, polarity=polarity, text_id=tid, score=None, split="train")


def test_sample_nodes_have_no_tag_lines() -> None:
    nodes = corpus.sample_nodes()
    assert len(nodes) > 400
    for n in nodes:
        body = corpus.variant_text(n, 0, {})
        assert not any(f"{name}:" in body.splitlines()[-1] for name in n.tags), n.key


def test_variants_keep_shape_and_are_deterministic() -> None:
    nodes = corpus.sample_nodes()
    pools = corpus._pools(nodes)
    n = max(nodes, key=lambda x: sum(len(p) for p in x.paragraphs))
    a, b = corpus.variant_text(n, 3, pools), corpus.variant_text(n, 3, pools)
    assert a == b
    assert a != corpus.variant_text(n, 4, pools)
    assert a.count("\n\n") == len(n.paragraphs) - 1


def test_build_corpus_reaches_target_with_sample_lengths(tmp_path: Path) -> None:
    ds, rounds = corpus.build_corpus(tmp_path, 600)
    assert len(ds.text_ids()) >= 600 and rounds >= 2
    assert len({t.text for t in ds.texts}) == len(ds.texts)
    sample = corpus.length_quantiles([len(" ".join(" ".join(p) for p in n.paragraphs)) for n in corpus.sample_nodes()])
    got = corpus.length_quantiles([len(t.text) for t in ds.texts])
    assert 0.7 < got["median"] / sample["median"] < 1.3
    sub = corpus.subset_dataset(ds, tmp_path / "sub", 50)
    assert len(sub.texts) == 50 and sub.text_ids() == list(range(50))
    kept = {t.key for t in sub.texts}
    assert len(sub.examples) == sum(1 for e in ds.examples if ds.texts[e.text_id].key in kept)


def test_short_dataset_is_unique_and_short(tmp_path: Path) -> None:
    ds = corpus.short_dataset(tmp_path, 300)
    assert len({t.text for t in ds.texts}) == 300
    assert max(len(t.text.split()) for t in ds.texts) == 3


def test_seed_work_counts_repeats_and_padding() -> None:
    lengths = [10, 20, 30, 40, 50]
    examples = [_ex("a", "positive", 0), _ex("a", "positive", 1), _ex("a", "negative", 2),
                _ex("b", "positive", 2), _ex("b", "negative", 0), _ex("b", "negative", 3), _ex("b", "negative", 4)]
    w = counting.seed_work(examples, lengths, batch_size=2)
    # batches: a+ [0,1], a- [2], b+ [2], b- [0,3], [4]
    assert w.batches == 5 and w.sequences == 7
    assert w.tokens == 10 + 20 + 30 + 30 + 10 + 40 + 50
    assert w.padded_tokens == 2 * 20 + 30 + 30 + 2 * 40 + 50
    d = counting.dedup_work([e.text_id for e in examples], lengths, batch_size=16)
    assert d.sequences == 5 and d.tokens == sum(lengths) and d.batches == 1


def test_production_estimate_overlap_model() -> None:
    p = counting.production_estimate(20_000, mean_tokens=100)
    assert p["seed_sequences"] == 200_000
    assert p["unique_texts"] == pytest.approx(20_000, rel=1e-3)  # every node used
    big = counting.production_estimate(1_000_000, mean_tokens=100)
    assert big["unique_texts"] == pytest.approx(1_000_000 * (1 - (1 - 1e-3) ** 200))
    assert big["reuse"] < p["reuse"]
    with pytest.raises(ValueError):
        counting.production_estimate(500)


def test_a_rerun_keeps_the_hand_measured_section(tmp_path: Path) -> None:
    """bench.py rewrites benchmarks.md; the section after the marker (timed by hand) must survive."""
    from bench import hand_section

    doc = tmp_path / "benchmarks.md"
    hand_section.write_markdown(doc, "# Benchmarks\n\nold rows\n")
    assert doc.read_text() == "# Benchmarks\n\nold rows\n"  # no section yet: the generated text only
    doc.write_text(doc.read_text() + "\n" + hand_section.MARKER + "\n## By hand\n\n3 min 5 s\n")
    hand_section.write_markdown(doc, "# Benchmarks\n\nnew rows\n")
    assert doc.read_text() == "# Benchmarks\n\nnew rows\n\n" + hand_section.MARKER + "\n## By hand\n\n3 min 5 s\n"
