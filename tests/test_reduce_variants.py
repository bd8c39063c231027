"""reduce/variants: the merit of a variant and the winner per layer, on hand-made score rows."""

from __future__ import annotations

from types import SimpleNamespace

from amygdala_vllm.reduce.variants import OVR_BAR, TIE, VARIANTS, kind_of, merit, pick_winners


def _row(method, layer, ovr=0.95, sib=None, top1=None):
    # stands in for validate's MethodScore: pick_winners reads only these five fields
    return SimpleNamespace(method=method, layer=layer, one_vs_rest_auroc=ovr, sibling_auroc=sib, top1=top1)


def test_merit():
    assert merit(0.8, 0.6, 0.99) == 0.7  # sibling AUROC and top-1 both there: their mean
    assert merit(None, None, 0.9) == 0.9  # a single concept: one-vs-rest alone
    assert merit(0.8, None, 0.9) == -1.0 and merit(None, None, None) == -1.0


def test_kind_of_names_and_methods():
    assert kind_of("caa+remove-shared1") == "mean-difference" and kind_of("mlda") == "whitened"
    assert kind_of("lda") == "whitened" and kind_of("grand-mean") == "mean-difference"


def test_winners_per_layer_ties_to_the_simplest_and_the_ovr_bar():
    order = list(VARIANTS)
    assert order.index("caa") < order.index("lda")
    rows = [
        _row("lda", 1, sib=0.9, top1=0.9), _row("caa", 1, sib=0.9 - TIE / 2, top1=0.9),  # a tie: caa is simpler
        _row("lda", 2, sib=0.95, top1=0.95), _row("caa", 2, sib=0.7, top1=0.7),
        _row("mlda", 3, ovr=OVR_BAR - 0.1, sib=1.0, top1=1.0), _row("caa", 3, sib=0.6, top1=0.6),  # mlda misses the bar
        _row("caa", 4, ovr=0.5),  # no row clears the bar: all are kept; one-vs-rest alone is the merit
    ]
    assert pick_winners(rows) == {"1": "caa", "2": "lda", "3": "caa", "4": "caa"}
    assert pick_winners([_row("caa", 5, ovr=None)]) == {}  # no merit at all: no winner
