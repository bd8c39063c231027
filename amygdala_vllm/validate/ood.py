"""``--ood FILE``: how the readout behaves on text unlike the training data.

On out-of-distribution text (conversations, other domains) a good concept
vector should mostly stay near its negatives' level; a projection that sits far
above the calibrated threshold on everything is a vector that reads something
other than the concept (length, register, topic). The report gives, per
concept and layer, the distribution of the projection (manifest pooling) and
where its mean sits relative to the train calibration: ``z_mean = (mean -
threshold) / pooled_std``, and the share of texts on the positive side.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np

from ..errors import FormatError
from ..formats import ReadoutManifest
from .metrics import calibrated_threshold
from .schema import OODConcept, OODLayer, OODReport, opt

__all__ = ["read_ood_texts", "ood_report", "QUANTILES"]

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def read_ood_texts(path: Path) -> list[str]:
    """Texts of a JSONL file (objects with a ``text`` string) or of a plain file, one per line.

    A file whose first non-empty line starts with ``{`` is read as JSONL and
    every line must then carry ``text``; anything else is plain text. Blank
    lines are skipped; an empty result is an error.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise FormatError(f"--ood file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot read --ood file {path}: {exc}") from exc
    numbered = [(i, ln) for i, ln in enumerate(lines, 1) if ln.strip()]
    if not numbered:
        raise FormatError(f"--ood file {path} holds no text")
    if not numbered[0][1].lstrip().startswith("{"):
        return [ln for _, ln in numbered]
    texts = []
    for i, ln in numbered:
        try:
            obj = msgspec.json.decode(ln)
        except msgspec.DecodeError as exc:
            raise FormatError(f"{path}:{i}: not valid JSON: {exc}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise FormatError(f"{path}:{i}: expected an object with a \"text\" string")
        texts.append(obj["text"])
    return texts


def ood_report(path: Path | str, manifest: ReadoutManifest, pooled: np.ndarray) -> OODReport:
    """Distribution of the projections ``pooled`` [N, L, E] (manifest pooling) per concept and layer."""
    pooled = np.asarray(pooled, dtype=np.float64)
    concepts = []
    for e, c in enumerate(manifest.concepts):
        layers = []
        for li, layer in enumerate(manifest.layers):
            x = pooled[:, li, e]
            cal = manifest.calibration[c][str(layer)]
            thr = calibrated_threshold(cal.pos_mean, cal.neg_mean)
            above = cal.pos_mean >= cal.neg_mean
            mean = float(x.mean())
            z = (mean - thr) / cal.pooled_std if cal.pooled_std > 0 else float("nan")
            positive = (x > thr) if above else (x < thr)
            layers.append(OODLayer(
                layer=layer, mean=mean, std=float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                quantiles={f"q{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, np.quantile(x, QUANTILES))},
                z_mean=opt(z if above else -z), fraction_positive=float(positive.mean()),
            ))
        concepts.append(OODConcept(concept=c, layers=layers))
    return OODReport(file=str(path), texts=int(pooled.shape[0]), concepts=concepts)
