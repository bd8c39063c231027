"""The specificity part of the report dir: markdown sections and ``specificity.png``."""

from __future__ import annotations

import io

from ..separation.schema import SpecificityReport
from .auto_check import GAP_WARN, auto_warnings
from .schema import AutoLayerCheck, CompareReport, ValidateReport

__all__ = ["specificity_markdown", "methods_markdown", "auto_markdown", "specificity_png"]


def _f(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def specificity_markdown(s: SpecificityReport) -> list[str]:
    """Per-layer medians, the recommended layers, and each concept's siblings at the best layer."""
    lines = ["", "## Specificity: telling emotions apart", "",
             f"Sibling AUROC: a concept's held-out positives vs the held-out positives of each of its siblings "
             f"(the {s.nearest} most similar vectors" + (", plus taxonomy families" if s.taxonomy else "")
             + ") that are not positive for it. Identification: projections z-scored per concept across the "
             f"held-out texts, rank of the true concept (chance top-1 = {s.chance:.3f}).", "",
             "| layer | 1-vs-rest AUROC | sibling AUROC | top-1 | top-5 | median rank | PC1 share | mean abs corr "
             "| ... without PC1 |", "|---|---|---|---|---|---|---|---|---|"]
    for l in s.layers:
        lines.append(f"| {l.layer} | {_f(l.median_one_vs_rest_auroc)} | {_f(l.median_sibling_auroc)} | "
                     f"{_f(l.top1, '.2f')} | {_f(l.top5, '.2f')} | {_f(l.median_rank, '.1f')} | "
                     f"{_f(l.pc1_share, '.2f')} | {_f(l.mean_abs_correlation, '.2f')} | "
                     f"{_f(l.mean_abs_partial_correlation, '.2f')} |")
    lines += ["", f"Recommended layers (best median sibling AUROC first): "
              f"{', '.join(map(str, s.recommended_layers)) or 'n/a'}"]
    if s.best_layer is not None:
        lines += ["", f"### Siblings at layer {s.best_layer}", "",
                  "| concept | 1-vs-rest | sibling mean | sibling min | gap | siblings (AUROC) |",
                  "|---|---|---|---|---|---|"]
        for c in s.concepts:
            l = next(x for x in c.layers if x.layer == s.best_layer)
            sib = ", ".join(f"{n} {_f(a, '.2f')}" for n, a in zip(l.siblings, l.sibling_auroc))
            lines.append(f"| {c.concept} | {_f(l.one_vs_rest_auroc)} | {_f(l.sibling_auroc_mean)} | "
                         f"{_f(l.sibling_auroc_min)} | {_f(l.gap, '+.3f')} | {sib} |")
    return lines


def methods_markdown(cm: CompareReport) -> list[str]:
    """Every compared method per layer, medians over concepts, with the winner of each layer."""
    lines = ["", "## Methods side by side (offline, medians over concepts)", "",
             "| layer | method | 1-vs-rest AUROC | sibling AUROC | top-1 | top-5 | |", "|---|---|---|---|---|---|---|"]
    order = {m: i for i, m in enumerate(dict.fromkeys(s.method for s in cm.scores))}
    for s in sorted(cm.scores, key=lambda s: (s.layer, order[s.method])):
        win = "**winner**" if cm.winners.get(str(s.layer)) == s.method else ""
        lines.append(f"| {s.layer} | {s.method} | {_f(s.one_vs_rest_auroc)} | {_f(s.sibling_auroc)} | "
                     f"{_f(s.top1, '.2f')} | {_f(s.top5, '.2f')} | {win} |")
    return lines


def auto_markdown(rows: list[AutoLayerCheck]) -> list[str]:
    """``reduce --method auto``: the method chosen per layer, its cross-validated and held-out figures, the gap."""
    if not rows:
        return []
    lines = ["", "## Method chosen by `reduce --method auto`", "",
             "Chosen per layer by cross-validation on the train split (never the held-out texts). Merit = "
             "(median sibling AUROC + top-1) / 2 (one-vs-rest AUROC with a single concept); gap = CV merit - "
             f"held-out merit, above {GAP_WARN} marked (!).", "",
             "| layer | method | kind | CV 1-vs-rest | CV sibling | CV top-1 | held-out 1-vs-rest | held-out sibling "
             "| held-out top-1 | gap |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.layer} | {r.method} | {r.kind} | {_f(r.cv_one_vs_rest_auroc)} | {_f(r.cv_sibling_auroc)} | "
                     f"{_f(r.cv_top1, '.2f')} | {_f(r.heldout_one_vs_rest_auroc)} | {_f(r.heldout_sibling_auroc)} | "
                     f"{_f(r.heldout_top1, '.2f')} | {_f(r.gap, '+.3f')}{' (!)' if r.warning else ''} |")
    lines += ["", *(f"- warning: {w}" for w in auto_warnings(rows))] if any(r.warning for r in rows) else []
    return lines


def specificity_png(r: ValidateReport) -> bytes:
    """Per layer: median one-vs-rest and sibling AUROC, identification top-1/top-5 and chance (empty if absent)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    s = r.specificity
    if s is not None and s.layers:
        xs = [l.layer for l in s.layers]
        for attr, label, style in (("median_one_vs_rest_auroc", "1-vs-rest AUROC", "o-"),
                                   ("median_sibling_auroc", "sibling AUROC", "s-"),
                                   ("top1", "identification top-1", "^-"), ("top5", "identification top-5", "v--")):
            ys = [float("nan") if getattr(l, attr) is None else getattr(l, attr) for l in s.layers]
            ax.plot(xs, ys, style, label=label)
        ax.axhline(s.chance, color="grey", lw=0.8, ls=":", label="chance top-1")
        ax.axhline(0.5, color="grey", lw=0.8, ls="-.", label="chance AUROC")
        ax.set_xticks(xs)
        ax.set_xlabel("layer")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"specificity ({r.method}, {r.pooling} pooling; medians over concepts)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
