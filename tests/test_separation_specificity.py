"""Specificity metrics on hand-made score tables: every figure equals a value worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amygdala_vllm.errors import FormatError, UsageError
from amygdala_vllm.separation.specificity import (
    identification,
    partial_correlation,
    pc1_share,
    read_taxonomy,
    sibling_auroc,
    siblings_of,
    specificity,
    zscore,
)


def test_sibling_auroc_leaves_out_texts_positive_for_both() -> None:
    scores = np.array([3.0, 1.0, 5.0, 2.0, 0.0, 9.0])
    # row 2 is positive for both concepts: it must not count as a sibling negative
    assert sibling_auroc(scores, np.array([0, 1, 2]), np.array([2, 3, 4])) == pytest.approx(5 / 6)


def test_identification_ranks_among_concepts_the_text_is_not_positive_for() -> None:
    z = np.array([[2.0, 1.0, 0.0], [2.0, 1.0, 3.0], [1.0, 1.0, 0.0]])
    ranks = identification(z, [np.array([0, 2]), np.array([1, 2]), np.array([1])])
    # (row 1, concept 1): rival concept 0 scores 2 >= 1 -> rank 2; concept 2 is also positive there, not a rival
    assert ranks.tolist() == [1, 1, 2, 1, 1]


def test_zscore_and_flat_columns() -> None:
    z = zscore(np.array([[1.0, 7.0], [3.0, 7.0]]))
    assert z.tolist() == [[-1.0, 0.0], [1.0, 0.0]]


def test_pc1_share() -> None:
    assert pc1_share(np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])) == pytest.approx(0.5)
    assert pc1_share(np.array([[2.0, 0], [-2, 0], [0, 1], [0, -1]])) == pytest.approx(0.8)


def test_partial_correlation_removes_the_shared_axis() -> None:
    rng = np.random.default_rng(0)
    g = rng.normal(size=(4000, 1)) * 10
    raw, part = partial_correlation(g + rng.normal(size=(4000, 3)))
    assert raw > 0.98
    # three exchangeable columns: once their common part is gone, residuals sum to ~0 -> correlation -1/2
    assert part == pytest.approx(0.5, abs=0.03)
    raw2, part2 = partial_correlation(np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 3.0]]))
    assert raw2 == pytest.approx(abs(np.corrcoef([1, 2, 3, 4], [2, 1, 5, 3])[0, 1]))
    assert part2 == pytest.approx(1.0)  # two columns: the residuals are mirror images


def test_siblings_are_nearest_vectors_plus_taxonomy_family() -> None:
    cos = np.array([[1.0, 0.9, 0.1, 0.2], [0.9, 1.0, 0.3, 0.0], [0.1, 0.3, 1.0, 0.5], [0.2, 0.0, 0.5, 1.0]])
    names = ["love", "warmth", "anger", "fear"]
    assert siblings_of(cos, names, nearest=1) == [[1], [0], [3], [2]]
    assert siblings_of(cos, names, {"bond": ["love", "anger", "unknown"]}, nearest=1) == [[1, 2], [0], [3, 0], [2]]


def test_specificity_on_a_hand_made_table() -> None:
    concepts = ["a", "b", "c"]
    vectors = np.eye(3)[:, None, :]  # [E, L=1, H=3]
    cols = np.array([[5, 4, 3, 6, 1, 0, 2, 2], [0, 0, 5, 5, 0, 0, 1, 1], [0, 1, 2, 0, 4, 3, 0, 0]], dtype=float)
    pooled = cols.T[:, None, :]  # [N=8, L=1, E=3]
    ids = np.arange(10, 18)
    neg = np.array([16, 17])
    classes = {"a": (np.array([10, 11]), neg), "b": (np.array([12, 13]), neg), "c": (np.array([14, 15]), neg)}
    rep = specificity(concepts, [7], vectors, pooled, ids, classes)
    a = rep.concepts[0].layers[0]
    assert a.siblings == ["b", "c"]
    assert a.sibling_auroc == [0.5, 1.0]  # {5,4} vs b's {3,6}: 2 of 4 pairs; vs c's {1,0}: all
    assert (a.sibling_auroc_mean, a.sibling_auroc_min, a.one_vs_rest_auroc, a.gap) == (0.75, 0.5, 1.0, 0.25)
    layer = rep.layers[0]
    assert layer.identified == 6 and rep.chance == pytest.approx(1 / 3)
    assert layer.pc1_share == pytest.approx(0.5)  # centred identity rows: variance 1/2 on the first axis
    assert rep.best_layer == 7 and rep.recommended_layers == [7]
    z = zscore(cols.T)
    top1 = np.mean([np.argmax(z[r]) == e for e, rows in enumerate([[0, 1], [2, 3], [4, 5]]) for r in rows])
    assert layer.top1 == pytest.approx(top1)


def test_taxonomy_file(tmp_path) -> None:
    p = tmp_path / "tax.json"
    p.write_text(json.dumps({"bond": ["love", "warmth"]}))
    assert read_taxonomy(p) == {"bond": ["love", "warmth"]}
    p.write_text(json.dumps(["love"]))
    with pytest.raises(FormatError, match="taxonomy"):
        read_taxonomy(p)
    with pytest.raises(UsageError, match="names none"):
        specificity(["a"], [0], np.ones((1, 1, 2)), np.zeros((0, 1, 1)), np.zeros(0, np.int64), {}, {"f": ["x"]})
