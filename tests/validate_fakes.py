"""A stand-in for ``amygdala_vllm.readout.scorer.Readout`` over synthetic activations, for validate's tests.

It scores a text exactly as the real readout must: the dot product of the
text's pooled activation (from :mod:`synthetic`) with each concept's unit vector,
for both poolings, so everything after the engine call is tested on projections
whose truth is known. ``agreement`` is what the real engine's check would report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amygdala_vllm.engine_settings import EngineSettings
from amygdala_vllm.pooling_modes import MODES
from amygdala_vllm.readout.scorer import TextScores
from amygdala_vllm.reduce import ReduceOptions, reduce
from amygdala_vllm.validate import load_manifest, load_vectors
from synthetic import SyntheticData, SyntheticSpec, make_run


@dataclass
class FakeReadout:
    data: SyntheticData
    vectors: np.ndarray  # [E, L, H]
    agreement: float | None = 0.0
    ood: dict[str, np.ndarray] = field(default_factory=dict)  # text -> pooled activation [L, H]
    calls: list[dict] = field(default_factory=list)

    def score_texts(self, texts: list[str], progress: Callable[[int], None] | None = None) -> list[TextScores]:
        by_text = {t.text: t.id for t in self.data.texts}
        out = []
        for text in texts:
            if text in by_text:
                m, l = self.data.mean[by_text[text]], self.data.last[by_text[text]]
            else:
                m = l = self.ood[text]
            mean = np.einsum("lh,elh->le", m.astype(np.float64), self.vectors).astype(np.float32)
            last = np.einsum("lh,elh->le", l.astype(np.float64), self.vectors).astype(np.float32)
            # One scored token (``last[None]``): every other registered mode (max) of it is that token's score.
            pooled = {name: mean if name == "mean" else last for name in MODES}
            out.append(TextScores([1], [text[:4]], last[None], pooled, self.agreement))
            if progress:
                progress(1)
        return out

    @contextlib.contextmanager
    def opener(self, vectors: Path, manifest: Path, engine: EngineSettings) -> Iterator[FakeReadout]:
        """Records the settings the engine would start with (``validate.run.OpenReadout``), field by field."""
        import os

        import msgspec

        self.calls.append({"vectors": vectors, "manifest": manifest, **msgspec.structs.asdict(engine),
                           "env": (os.environ.get("VLLM_READOUT_VECTORS"), os.environ.get("VLLM_READOUT_MANIFEST"))})
        yield self


def reduced_run(root: Path, spec: SyntheticSpec = SyntheticSpec(), method: str = "caa", pooling: str = "mean"
                ) -> tuple[Path, list[Path], SyntheticData, Path]:
    """A synthetic dataset + activations and vectors reduced from them: ``(dataset, act_dirs, data, vectors)``."""
    ds, dirs, data = make_run(root, spec)
    out = root / "vectors.safetensors"
    reduce(dirs, ds, out, ReduceOptions(method=method, pooling=pooling))
    return ds, dirs, data, out


def fake_for(data: SyntheticData, vectors_file: Path, agreement: float | None = 0.0) -> FakeReadout:
    man = load_manifest(vectors_file.with_suffix(".manifest.json"))
    return FakeReadout(data=data, vectors=load_vectors(vectors_file, man), agreement=agreement)
