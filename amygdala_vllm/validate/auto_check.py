"""``reduce --method auto`` checked on held-out texts: the method chosen per layer, cross-validated vs held-out.

``auto`` ranked its candidates on folds of the train split; the held-out
figures of the same layer (``specificity.py``, the vectors as written) say
whether that estimate held. The gap is CV merit minus held-out merit (merit:
``reduce/variants.py``); one above :data:`GAP_WARN` is printed as a warning:
the cross-validation was optimistic (few train texts, train and held-out texts
that differ in kind), and the choice may not be the best for new text.
"""

from __future__ import annotations

from ..formats import ReadoutManifest
from ..reduce.variants import kind_of, merit
from ..separation.schema import SpecificityReport
from .schema import AutoLayerCheck

__all__ = ["GAP_WARN", "auto_check", "auto_warnings"]

#: CV merit minus held-out merit above which validate warns.
GAP_WARN = 0.05


def auto_check(manifest: ReadoutManifest, spec: SpecificityReport | None) -> list[AutoLayerCheck]:
    """One row per layer of an ``auto`` manifest (none for a fixed method); held-out figures from ``spec``."""
    if manifest.auto is None:
        return []
    held = {l.layer: l for l in spec.layers} if spec is not None else {}
    rows = []
    for layer in manifest.layers:
        choice = manifest.auto.layers.get(str(layer))
        if choice is None:
            continue
        cv = next((s for s in choice.cv if s.method == choice.method), None)
        h = held.get(layer)
        h_merit = None if h is None else merit(h.median_sibling_auroc, h.top1, h.median_one_vs_rest_auroc)
        c_merit = None if cv is None or cv.merit <= -1.0 else cv.merit
        h_merit = None if h_merit is None or h_merit <= -1.0 else h_merit
        gap = None if c_merit is None or h_merit is None else c_merit - h_merit
        rows.append(AutoLayerCheck(
            layer=layer, method=choice.method, kind=kind_of(choice.method),
            cv_one_vs_rest_auroc=None if cv is None else cv.one_vs_rest_auroc,
            cv_sibling_auroc=None if cv is None else cv.sibling_auroc, cv_top1=None if cv is None else cv.top1,
            heldout_one_vs_rest_auroc=None if h is None else h.median_one_vs_rest_auroc,
            heldout_sibling_auroc=None if h is None else h.median_sibling_auroc,
            heldout_top1=None if h is None else h.top1,
            cv_merit=c_merit, heldout_merit=h_merit, gap=gap, warning=gap is not None and gap > GAP_WARN,
        ))
    return rows


def auto_warnings(rows: list[AutoLayerCheck]) -> list[str]:
    """One line per layer whose cross-validated merit exceeds its held-out merit by more than :data:`GAP_WARN`."""
    return [f"layer {r.layer}: {r.method} cross-validated at merit {r.cv_merit:.3f} on the train folds but reads "
            f"{r.heldout_merit:.3f} on held-out texts (gap {r.gap:+.3f} > {GAP_WARN})"
            for r in rows if r.warning]
