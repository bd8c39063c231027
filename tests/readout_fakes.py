"""Hand-made readout scores and manifests, so rendering and the CLI test without an engine.

Scores are real :class:`amygdala_vllm.readout.scorer.TextScores`;
``FakeReadout`` stands in for :class:`amygdala_vllm.readout.scorer.Readout` and
records how the CLI drove it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from amygdala_vllm.formats import READOUT_FORMAT, Calibration, ConceptCounts, ReadoutManifest
from amygdala_vllm.readout.scorer import TextScores, pooled_scores

CONCEPTS = ["anger", "joy", "fear", "calm", "awe"]
LAYERS = [3, 8, 14, 20]


def make_manifest(*, uncalibrated: tuple[tuple[str, int], ...] = (), skip: int = 1) -> ReadoutManifest:
    """Calibration of concept j at layer l: midpoint ``l/10 + j``, pooled std ``j + 1``."""
    calibration: dict[str, dict[str, Calibration]] = {}
    for j, concept in enumerate(CONCEPTS):
        calibration[concept] = {}
        for layer in LAYERS:
            if (concept, layer) in uncalibrated:
                continue
            mid = layer / 10 + j
            calibration[concept][str(layer)] = Calibration(
                pos_mean=mid + 1.0, neg_mean=mid - 1.0, pooled_std=float(j + 1), raw_norm=2.0
            )
    return ReadoutManifest(
        format=READOUT_FORMAT, concepts=list(CONCEPTS), layers=list(LAYERS), layer_semantics="residual_out",
        hidden_size=8, model="tiny-model", model_fingerprint="fp", pooling="mean", method="caa",
        counts={c: ConceptCounts(positive=10, negative=10) for c in CONCEPTS}, calibration=calibration,
        skip_first_tokens=skip, dropped={"grief": "3 train positives"},
    )


def make_scores(tokens: list[str], manifest: ReadoutManifest, *, seed: int = 0,
                boost: dict[str, float] | None = None) -> TextScores:
    """Scores near each calibration midpoint; ``boost`` shifts a concept by that many stds."""
    rng = np.random.default_rng(seed)
    n_l, n_e = len(manifest.layers), len(manifest.concepts)
    base = np.zeros((n_l, n_e), dtype=np.float32)
    for j, concept in enumerate(manifest.concepts):
        for i, layer in enumerate(manifest.layers):
            shift = (boost or {}).get(concept, 0.0) * (j + 1)
            base[i, j] = layer / 10 + j + shift
    scores = (base[None] + rng.normal(0, 0.3, (len(tokens), n_l, n_e))).astype(np.float32)
    skip = manifest.skip_first_tokens
    return TextScores(
        token_ids=list(range(100, 100 + len(tokens))), tokens=list(tokens), scores=scores,
        pooled=pooled_scores(scores, skip), agreement=None,
    )


def write_vectors(tmp: Path, manifest: ReadoutManifest | None = None) -> Path:
    """A placeholder NAME.safetensors (the fake engine never reads it) and its manifest."""
    from amygdala_vllm.formats import write_json

    vectors = tmp / "vec.safetensors"
    vectors.write_bytes(b"placeholder")
    write_json(tmp / "vec.manifest.json", manifest or make_manifest())
    return vectors


@dataclass
class FakeReadout:
    """Records constructor arguments and calls; tokenises by whitespace."""

    model: str
    vectors: Path
    manifest_path: Path
    kwargs: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def __enter__(self) -> FakeReadout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls.append(("close", None))

    def _score(self, tokens: list[str]) -> TextScores:
        return make_scores(tokens, make_manifest(), boost={"fear": 2.0, "awe": -1.5})

    def score_texts(self, texts: list[str], progress: Any = None) -> list[TextScores]:
        self.calls.append(("score_texts", texts))
        return [self._score(["<s>", *t.split(" ")]) for t in texts]

    def chat_token_ids(self, messages: list[dict[str, str]]) -> list[int]:
        self.calls.append(("chat_token_ids", messages))
        return list(range(7))

    def score_token_ids(self, prompts: list[list[int]]) -> list[TextScores]:
        self.calls.append(("score_token_ids", prompts))
        return [self._score([f"<t{i}>" for i in p]) for p in prompts]
