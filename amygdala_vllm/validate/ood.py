"""``--ood FILE``: how the readout behaves on text unlike the training data.

On out-of-distribution text (conversations, other domains) a good concept
vector should mostly stay near its negatives' level; a projection that sits far
above the calibrated threshold on everything is a vector that reads something
other than the concept (length, register, topic). The report gives, per
concept and layer, the distribution of the projection (manifest pooling) and
where its mean sits relative to the train calibration: ``z_mean = (mean -
threshold) / pooled_std``, and the share of texts on the positive side. Both
need the calibration to transfer, which it does for a linear manifest pooling
only (see ``evaluate.concept_reports``); otherwise they are ``null``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..calibration import calibration_transfers, midpoint, signed_z
from ..formats import ReadoutManifest
from ..text_file import read_text_lines
from ..separation.schema import opt
from .schema import OODConcept, OODLayer, OODReport

__all__ = ["read_ood_texts", "ood_report", "QUANTILES"]

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def read_ood_texts(path: Path) -> list[str]:
    """Texts of a JSONL file (objects with a ``text`` string) or of a plain file, one per line.

    A file whose first non-empty line starts with ``{`` is read as JSONL and
    every line must then carry ``text``; anything else is plain text. Blank
    lines are skipped; an empty result is an error.
    """
    return [text for _, text in read_text_lines(path, "--ood file")]


def ood_report(path: Path | str, manifest: ReadoutManifest, pooled: np.ndarray) -> OODReport:
    """Distribution of the projections ``pooled`` [N, L, E] (manifest pooling) per concept and layer."""
    pooled = np.asarray(pooled, dtype=np.float64)
    transfers = calibration_transfers(manifest.pooling)
    concepts = []
    for e, c in enumerate(manifest.concepts):
        layers = []
        for li, layer in enumerate(manifest.layers):
            x = pooled[:, li, e]
            cal = manifest.calibration[c][str(layer)]
            thr = midpoint(cal.pos_mean, cal.neg_mean)
            above = cal.pos_mean >= cal.neg_mean
            mean = float(x.mean())
            positive = (x > thr) if above else (x < thr)
            layers.append(OODLayer(
                layer=layer, mean=mean, std=float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                quantiles={f"q{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, np.quantile(x, QUANTILES))},
                z_mean=opt(signed_z(mean, cal)) if transfers else None,
                fraction_positive=float(positive.mean()) if transfers else None,
            ))
        concepts.append(OODConcept(concept=c, layers=layers))
    return OODReport(file=str(path), texts=int(pooled.shape[0]), concepts=concepts)
