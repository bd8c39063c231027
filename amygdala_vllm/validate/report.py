"""Write the report dir: ``report.json``, ``report.md``, ``auroc.png``, ``crosstalk.png``.

Each file is written atomically (temporary name, then rename), so a reader
never sees half a report; files of an older run in the same dir are replaced
one by one. Plots use matplotlib's Agg backend, imported here lazily so the
CLI starts fast and no display is ever needed.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import msgspec
import numpy as np

from .. import atomic
from ..calibration import calibration_transfers
from ..errors import FormatError, StoreError
from ..formats import encode_json, upgrade_validate_v1
from .schema import (
    VALIDATE_FORMAT,
    VALIDATE_FORMAT_V1,
    LayerMetrics,
    ValidateReport,
    report_modes,
)
from .specificity_report import auto_markdown, methods_markdown, specificity_markdown, specificity_png

__all__ = ["write_report", "read_report", "render_markdown", "render_plots", "REPORT_FILES"]

log = logging.getLogger(__name__)

REPORT_FILES = ("report.json", "report.md", "auroc.png", "crosstalk.png", "specificity.png")


def read_report(path: Path) -> ValidateReport:
    """Decode and check a ``report.json``; an ``amygdala-validate/1`` one is read as the version 2 it converts to."""
    try:
        doc = msgspec.json.decode(Path(path).read_bytes())
        fmt = doc.get("format") if isinstance(doc, dict) else None
        if fmt not in (VALIDATE_FORMAT, VALIDATE_FORMAT_V1):
            raise FormatError(f"{path} has format {fmt!r}, expected {VALIDATE_FORMAT!r}")
        return msgspec.convert(upgrade_validate_v1(doc) if fmt == VALIDATE_FORMAT_V1 else doc, type=ValidateReport)
    except (OSError, msgspec.DecodeError) as exc:
        raise FormatError(f"{path} is not a readable {VALIDATE_FORMAT} report: {exc}") from exc


def _f(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def _auroc(layer: LayerMetrics, pooling: str) -> float | None:
    """A layer's AUROC for ``pooling``; None where that mode was not measured."""
    m = layer.pooled.get(pooling)
    return None if m is None else m.auroc


def render_markdown(r: ValidateReport) -> str:
    """A human-readable report: summary, per-layer AUROC, agreement, cross-talk, OOD, comparison.

    Every pooling mode the report holds gets an AUROC column, the manifest's first.
    """
    modes = report_modes(r)
    lines = [
        "# Validation report", "",
        f"- model: `{r.model}`, dtype {r.dtype}",
        f"- vectors: `{r.vectors}` ({r.method}, {r.pooling} pooling, layers {r.layers})",
        f"- dataset: `{r.dataset}`, {r.heldout_texts} held-out texts"
        + ("" if r.dataset_matches_manifest else " (**not the dataset the vectors were reduced from**)"),
    ]
    a = r.agreement
    verdict = "not checked" if not a.checked else ("pass" if a.passed else "**FAIL**")
    lines.append(f"- agreement (runtime vs offline projection): max |diff| {_f(a.max_abs_diff, '.3g')} "
                 f"(bar {a.tolerance:.3g} for {a.dtype}): {verdict}")
    if r.min_auroc is not None:
        lines.append(f"- --min-auroc {r.min_auroc}: " + ("pass" if not r.failures else "**FAIL**"))
    for f in r.failures:
        lines.append(f"  - {f}")
    if not calibration_transfers(r.pooling):
        lines.append(f"- accuracy and OOD z are n/a: the calibration was measured on {r.pooling}(rows) . vector, "
                     f"but {r.pooling} pooling of the per-token scores is {r.pooling}(rows . vector), which differs "
                     "for a non-linear pooling")
    lines += ["", "## Summary (best layer by AUROC, " + r.pooling + " pooling)", "",
              "| concept | held-out +/- | best layer | " + " | ".join(f"AUROC {m}" for m in modes)
              + " | Cohen's d | accuracy |", "|---|---|---|" + "---|" * len(modes) + "---|---|"]
    for c in r.concepts:
        m = next((l for l in c.layers if l.layer == c.best_layer), None)
        if c.status != "ok" or m is None:
            lines.append(f"| {c.concept} | {c.heldout_positive}/{c.heldout_negative} | n/a ({c.reason}) |"
                         + " |" * (len(modes) + 2))
            continue
        main = m.pooled[r.pooling]
        lines.append(f"| {c.concept} | {c.heldout_positive}/{c.heldout_negative} | {c.best_layer} | "
                     + "".join(f"{_f(_auroc(m, mode))} | " for mode in modes)
                     + f"{_f(main.cohens_d, '.2f')} | {_f(main.accuracy)} |")
    lines += ["", f"## AUROC per layer ({' / '.join(modes)} pooling)", "",
              "| concept | " + " | ".join(f"L{l}" for l in r.layers) + " |",
              "|---|" + "---|" * len(r.layers)]
    for c in r.concepts:
        lines.append(f"| {c.concept} | " + " | ".join(" / ".join(_f(_auroc(l, mode), ".2f") for mode in modes)
                                                       for l in c.layers) + " |")
    lines += ["", f"## Cross-talk at layer {r.crosstalk_layer}", "",
              "Upper triangle: cosine between vectors; lower triangle: correlation of held-out projections.", ""]
    names = [c.concept for c in r.concepts]
    ct = next(t for t in r.crosstalk if t.layer == r.crosstalk_layer)
    lines += ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, n in enumerate(names):
        cells = [("1" if i == j else _f(ct.cosine[i][j] if j > i else ct.correlation[i][j], "+.2f"))
                 for j in range(len(names))]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    if r.specificity is not None:
        lines += specificity_markdown(r.specificity)
    lines += auto_markdown(r.auto)
    if r.ood is not None:
        lines += ["", f"## Out-of-distribution: `{r.ood.file}` ({r.ood.texts} texts, {r.pooling} pooling)", "",
                  "z = (mean projection - calibrated threshold) / train pooled std, signed toward the concept.", "",
                  "| concept | layer | mean | std | q05 | q50 | q95 | z | share positive |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for oc in r.ood.concepts:
            for l in oc.layers:
                q = l.quantiles
                lines.append(f"| {oc.concept} | {l.layer} | {l.mean:.3g} | {l.std:.3g} | {q['q05']:.3g} | "
                             f"{q['q50']:.3g} | {q['q95']:.3g} | {_f(l.z_mean, '+.2f')} | "
                             f"{_f(l.fraction_positive, '.2f')} |")
    if r.compare is not None:
        cm = r.compare
        lines += ["", f"## CAA vs LDA (offline, {cm.pooling} pooling, shrinkage {cm.shrinkage}; "
                  f"{cm.train_texts} train / {cm.heldout_texts} held-out texts)", "",
                  "| concept | best CAA | best LDA | " + " | ".join(f"L{l.layer} CAA/LDA" for l in cm.concepts[0].layers)
                  + " |", "|---|---|---|" + "---|" * len(cm.concepts[0].layers)]
        for mc in cm.concepts:
            lines.append(f"| {mc.concept} | {_f(mc.best_caa)} | {_f(mc.best_lda)} | "
                         + " | ".join(f"{_f(l.caa, '.2f')} / {_f(l.lda, '.2f')}" for l in mc.layers) + " |")
        if cm.scores:
            lines += methods_markdown(cm)
    return "\n".join(lines) + "\n"


#: Largest side of a heat map, in inches. Rows of 0.35-0.45 in made a 154-concept cross-talk map about
#: 16,000 x 7,800 pixels at 110 dpi, and validate's peak RSS 4.2 GB; past this size rows get thinner and
#: their labels smaller (:func:`_fit_labels`). Maps of up to ~60 concepts are drawn as before.
MAX_SIDE_INCHES = 30.0


def _fit_labels(axes, rows: int, inches: float, both: bool = False) -> None:
    """Shrink concept tick labels to the row height when the map was capped at :data:`MAX_SIDE_INCHES`."""
    if inches < MAX_SIDE_INCHES:
        return
    size = max(2.0, min(10.0, 72 * (inches - 1.5) / max(rows, 1) * 0.8))  # points: 80 % of a row's height
    for ax in axes:
        ax.tick_params(axis="both" if both else "y", labelsize=size)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _matrix(rows: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)


def _heat(ax, data: np.ndarray, xlabels, ylabels, title: str, vmin: float, vmax: float, cmap: str):
    im = ax.imshow(np.ma.masked_invalid(data), vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(xlabels)), labels=xlabels, rotation=45 if len(xlabels) > 6 else 0, ha="right" if len(xlabels) > 6 else "center")
    ax.set_yticks(range(len(ylabels)), labels=ylabels)
    ax.set_title(title)
    if data.size <= 400:
        for (i, j), v in np.ndenumerate(data):
            ax.text(j, i, "n/a" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center", fontsize=7)
    return im


def render_plots(r: ValidateReport) -> dict[str, bytes]:
    """PNG bytes of the AUROC heat map (concepts x layers, one panel per pooling mode) and the cross-talk heat map."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = [c.concept for c in r.concepts]
    layers = [f"L{l}" for l in r.layers]
    label = max((len(n) for n in names), default=4) * 0.08  # inches of y tick labels
    h = min(max(2.8, 0.35 * len(names) + 1.5), MAX_SIDE_INCHES)
    modes = report_modes(r) or [r.pooling]
    fig, axes = plt.subplots(1, len(modes), figsize=(len(modes) * (label + max(2.5, 0.7 * len(layers))) + 1.2, h),
                             squeeze=False, layout="constrained")
    for ax, pooling in zip(axes[0], modes):
        data = np.array([[np.nan if (a := _auroc(l, pooling)) is None else a for l in c.layers] for c in r.concepts],
                        dtype=np.float64)
        im = _heat(ax, data, layers, names, f"held-out AUROC\n{pooling} pooling", 0.0, 1.0, "RdYlGn")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    _fit_labels(axes[0], len(names), h)
    auroc_png = _png(fig)
    plt.close(fig)

    ct = next(t for t in r.crosstalk if t.layer == r.crosstalk_layer)
    side = min(max(3.0, 0.45 * len(names) + 1.5), MAX_SIDE_INCHES)
    fig, axes = plt.subplots(1, 2, figsize=(2 * (side + label) + 1.2, side), squeeze=False, layout="constrained")
    _heat(axes[0][0], _matrix(ct.cosine), names, names, f"cosine between vectors\nlayer {ct.layer}", -1, 1, "coolwarm")
    im = _heat(axes[0][1], _matrix(ct.correlation), names, names,
               f"correlation of held-out projections\nlayer {ct.layer}", -1, 1, "coolwarm")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    _fit_labels(axes[0], len(names), side, both=True)
    talk_png = _png(fig)
    plt.close(fig)
    return {"auroc.png": auroc_png, "crosstalk.png": talk_png}


def write_report(out_dir: Path, report: ValidateReport) -> dict[str, Path]:
    """Write every report file into ``out_dir`` (created if missing); return name -> path."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create report dir {out_dir}: {exc.strerror}") from exc
    if not out_dir.is_dir():
        raise StoreError(f"{out_dir} exists and is not a directory")
    files = {"report.json": encode_json(report), "report.md": render_markdown(report).encode("utf-8")}
    files.update(render_plots(report))
    files["specificity.png"] = specificity_png(report)
    paths = {}
    for name in REPORT_FILES:
        atomic.write_bytes(out_dir / name, files[name])
        paths[name] = out_dir / name
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
