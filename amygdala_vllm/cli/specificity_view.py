"""Terminal tables for ``validate``'s specificity figures and its ``--compare-methods`` ranking."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..validate.schema import CompareReport, SpecificityReport

__all__ = ["print_specificity", "print_method_ranking"]


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
