"""Terminal tables for ``validate``'s specificity figures and its ``--compare-methods`` ranking."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..validate.auto_check import GAP_WARN, auto_warnings
from ..separation.schema import SpecificityReport
from ..validate.schema import AutoLayerCheck, CompareReport

__all__ = ["print_specificity", "print_method_ranking", "print_auto_choice"]


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def print_specificity(console: Console, s: SpecificityReport) -> None:
    """Per layer: one-vs-rest vs sibling AUROC, identification, valence dominance; the recommended layers."""
    t = Table(title=f"specificity (medians over concepts; siblings = {s.nearest} nearest vectors"
                    + (" + taxonomy)" if s.taxonomy else ")"))
    for name in ("layer", "1-vs-rest", "sibling", "top-1", "top-5", "rank", "PC1", "|corr|"):
        t.add_column(name, justify="right", no_wrap=True)
    for l in s.layers:
        t.add_row(str(l.layer), _fmt(l.median_one_vs_rest_auroc), _fmt(l.median_sibling_auroc), _fmt(l.top1, ".2f"),
                  _fmt(l.top5, ".2f"), _fmt(l.median_rank, ".1f"), _fmt(l.pc1_share, ".2f"),
                  f"{_fmt(l.mean_abs_correlation, '.2f')}>{_fmt(l.mean_abs_partial_correlation, '.2f')}")
    console.print(t)
    console.print("rank: median rank of the true concept; PC1: share of the vectors' variance on their first axis; "
                  "|corr|: mean between concepts' held-out projections > after removing their first component",
                  highlight=False)
    console.print(f"identification chance (1/E): {s.chance:.3f}; layers by sibling AUROC: "
                  f"{', '.join(map(str, s.recommended_layers)) or 'n/a'}", highlight=False)


def print_method_ranking(console: Console, c: CompareReport) -> None:
    """Every method's medians per layer, and the winner of each layer."""
    t = Table(title=f"methods compared offline ({c.pooling} pooling): median AUROC over concepts, identification",
              caption="* winner of the layer: best (sibling AUROC + top-1) / 2 with 1-vs-rest >= 0.9")
    for name in ("layer", "method", "1-vs-rest", "sibling", "top-1", "top-5", ""):
        t.add_column(name, justify="left" if name in ("method", "") else "right", no_wrap=True)
    order = {m: i for i, m in enumerate(dict.fromkeys(s.method for s in c.scores))}
    for s in sorted(c.scores, key=lambda s: (s.layer, order[s.method])):
        win = "*" if c.winners.get(str(s.layer)) == s.method else ""
        t.add_row(str(s.layer), s.method, _fmt(s.one_vs_rest_auroc), _fmt(s.sibling_auroc), _fmt(s.top1, ".2f"),
                  _fmt(s.top5, ".2f"), win)
    console.print(t)


def print_auto_choice(console: Console, rows: list[AutoLayerCheck]) -> None:
    """``reduce --method auto``'s choice per layer, cross-validated (train) vs held-out; warnings for large gaps."""
    if not rows:
        return
    t = Table(title="method chosen per layer by reduce --method auto: cross-validated on train vs held-out",
              caption=f"merit = (sibling + top-1) / 2 (1-vs-rest with one concept); gap = CV - held-out, "
                      f"> {GAP_WARN} warns")
    for name in ("layer", "method", "kind", "CV 1vr/sib/top1", "held-out 1vr/sib/top1", "gap"):
        t.add_column(name, justify="left" if name in ("method", "kind") else "right", no_wrap=True)
    for r in rows:
        t.add_row(str(r.layer), r.method, r.kind,
                  f"{_fmt(r.cv_one_vs_rest_auroc, '.2f')}/{_fmt(r.cv_sibling_auroc, '.2f')}/{_fmt(r.cv_top1, '.2f')}",
                  f"{_fmt(r.heldout_one_vs_rest_auroc, '.2f')}/{_fmt(r.heldout_sibling_auroc, '.2f')}/"
                  f"{_fmt(r.heldout_top1, '.2f')}", _fmt(r.gap, "+.3f") + (" !" if r.warning else ""))
    console.print(t)
    for w in auto_warnings(rows):
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
