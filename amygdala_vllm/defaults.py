"""What the tool does when you do not say: default paths of the stages, and the default layers.

The default run (``scripts/run_default.sh``) chains the stages through these
paths, so every command that reads or writes one of them names it from here.
"""

from __future__ import annotations

from pathlib import Path

from .models import SMOLLM2_ALIAS

__all__ = ["DEFAULT_MODEL", "DATASET_DIR", "ACTIVATIONS_DIR", "VECTORS_FILE", "REPORT_DIR", "AUTO_LAYER_FRACTIONS", "auto_layers"]

#: ``extract --model``'s default: the bundled SmolLM2-135M-Instruct, prepared offline on first use (``models.py``).
DEFAULT_MODEL = SMOLLM2_ALIAS
#: ``pairs`` writes here; ``extract``, ``reduce`` and ``validate`` read it.
DATASET_DIR = Path("runs/dataset")
#: ``extract`` writes here; ``reduce`` reads it.
ACTIVATIONS_DIR = Path("runs/activations")
#: ``reduce`` writes this (and ``amygdala.manifest.json`` beside it); ``validate`` and ``readout`` read it.
VECTORS_FILE = Path("runs/amygdala.safetensors")
#: ``validate`` writes its report here.
REPORT_DIR = Path("runs/report")

#: Depths of the default layers, as fractions of the decoder.
AUTO_LAYER_FRACTIONS = (0.25, 0.5, 0.7, 0.85)


def auto_layers(num_layers: int) -> list[int]:
    """Four layers spread over the middle-to-late decoder, where abstract features live.

    Measured on SmolLM2-135M (docs: FACTS, "What makes the directions good"):
    held-out AUROC rises from layer 4 to 14 and stays high to 26 of 30, so the
    picks sit at 25/50/70/85% depth. Fewer than four come back when depths
    coincide in a shallow model; never a layer outside ``0..num_layers-1``.
    """
    if num_layers < 1:
        raise ValueError(f"a decoder has at least one layer, got {num_layers}")
    return sorted({min(num_layers - 1, int(num_layers * f)) for f in AUTO_LAYER_FRACTIONS})
