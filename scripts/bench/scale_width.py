"""Jobs of ``scripts/bench_scale.py --width``: reduce and validate at the real model's width, no model needed.

    python -m bench.scale_width write DIR TEXTS_PER_CLASS HIDDEN CONCEPTS
    python -m bench.scale_width validate DIR TOKENS
    python -m bench.scale_width random-vectors DATASET MODEL VECTORS   # for --skip-extract

``write`` puts a synthetic dataset and its activations, in the capture format,
under DIR (tests/synthetic.py draws them: planted unit directions plus noise).
``validate`` runs :func:`amygdala_vllm.validate.run_validate` on them through
a stand-in readout that returns what the engine returns per text: a per-token
score series ``[T, L, E]`` (``T`` = TOKENS, every row the text's pooled
projection) and its pooled values, so the driver's memory is measured at the
real number of concepts and layers without an engine. ``reduce`` runs as the
CLI itself (bench_scale.py calls it). Each job is its own process, so its
peak RSS is its own.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))


def write(out: Path, per_class: int, hidden: int, concepts: int) -> None:
    from synthetic import SyntheticSpec, make_synthetic, write_activations, write_dataset

    from bench.scale_graph import emotion_names

    spec = SyntheticSpec(emotions=tuple(emotion_names(concepts)), layers=(15, 31, 47, 63), hidden_size=hidden,
                         train_per_class=per_class, heldout_per_class=max(1, per_class // 2), noise=0.5)
    data = make_synthetic(spec)
    sha = write_dataset(out / "dataset", data)
    write_activations(out / "acts", data, dataset_sha256=sha, shard_size=256)
    print(f"wrote {len(data.texts)} texts x {len(spec.layers)} layers x {hidden} under {out}")


class _Readout:
    """Scores like ``Readout.score_texts``: pooled projections of the stored activations, and ``T`` token rows."""

    def __init__(self, out: Path, tokens: int):
        from amygdala_vllm.dataset import load_dataset
        from amygdala_vllm.shards import decode_shard
        from amygdala_vllm.vectors_file import load

        self.tokens = tokens
        ds = load_dataset(out / "dataset")
        self.by_text = {t.text: t.id for t in ds.texts}
        self.rows: dict[int, tuple[Path, int]] = {}
        for shard in sorted((out / "acts").glob("shard-*.safetensors")):
            ids = decode_shard(shard.read_bytes()).text_ids
            self.rows.update({int(t): (shard, k) for k, t in enumerate(ids)})
        loaded = load(out / "vectors.safetensors", out / "vectors.manifest.json")
        self.vectors = np.stack([m.astype(np.float32) for m in loaded.matrices])  # [L, E, H]
        self._cache: tuple[Path, object] | None = None

    def _pooled(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        from amygdala_vllm.shards import decode_shard

        shard, k = self.rows[tid]
        if self._cache is None or self._cache[0] != shard:
            self._cache = (shard, decode_shard(shard.read_bytes()))
        s = self._cache[1]
        return s.mean[k], s.last[k]  # type: ignore[attr-defined]

    def score_texts(self, texts: list[str], progress: Callable[[int], None] | None = None) -> list[object]:
        from amygdala_vllm.pooling_modes import MODES
        from amygdala_vllm.readout.scorer import TextScores

        out = []
        for text in texts:
            mean, last = self._pooled(self.by_text[text])
            m = np.einsum("lh,leh->le", mean, self.vectors)
            l = np.einsum("lh,leh->le", last, self.vectors)
            series = np.repeat(l[None], self.tokens, axis=0)  # [T, L, E] float32, as the engine returns it
            pooled = {name: m if name == "mean" else l for name in MODES}
            out.append(TextScores(list(range(self.tokens)), ["t"] * self.tokens, series, pooled, 0.0))
        if progress:
            progress(len(texts))
        return out


def validate(out: Path, tokens: int) -> None:
    from amygdala_vllm.engine_settings import EngineSettings
    from amygdala_vllm.validate import ValidateOptions, run_validate

    @contextlib.contextmanager
    def opener(vectors: Path, manifest: Path, engine: object) -> Iterator[_Readout]:
        yield _Readout(out, tokens)

    opts = ValidateOptions(vectors=out / "vectors.safetensors", training_data_dir=out / "dataset",
                           output_dir=out / "report", engine=EngineSettings(model="synthetic/model", dtype="fp32"))
    result = run_validate(opts, open_readout=opener)
    print(f"validated {result.report.heldout_texts} held-out texts x {len(result.report.layers)} layers x "
          f"{len(result.report.concepts)} concepts")


def random_vectors(dataset: Path, model: Path, out: Path, hidden: int, layers: list[int]) -> None:
    """Random unit vectors, calibrated, for every emotion of ``dataset``: validate's cost does not depend on them."""
    from safetensors.numpy import save_file

    from amygdala_vllm.dataset import load_dataset
    from amygdala_vllm.formats import LAYER_SEMANTICS, READOUT_FORMAT, Calibration, ReadoutManifest, write_json
    from amygdala_vllm.models import model_fingerprint

    concepts = sorted(load_dataset(dataset).info.emotions)
    rng = np.random.default_rng(0)
    mats = {}
    for i in layers:
        m = rng.standard_normal((len(concepts), hidden)).astype(np.float32)
        mats[f"layer_{i}.vectors"] = m / np.linalg.norm(m, axis=1, keepdims=True)
    save_file(mats, str(out))
    cal = {c: {str(l): Calibration(pos_mean=1.0, neg_mean=0.0, pooled_std=1.0, raw_norm=1.0) for l in layers}
           for c in concepts}
    write_json(out.with_name(out.name.removesuffix(".safetensors") + ".manifest.json"), ReadoutManifest(
        format=READOUT_FORMAT, concepts=concepts, layers=layers, layer_semantics=LAYER_SEMANTICS, hidden_size=hidden,
        model=str(model), model_fingerprint=model_fingerprint(str(model)), pooling="mean", method="caa", counts={},
        calibration=cal))


if __name__ == "__main__":
    what, where = sys.argv[1], Path(sys.argv[2])
    if what == "random-vectors":
        random_vectors(where, Path(sys.argv[3]), Path(sys.argv[4]), 128, [0, 1, 2, 3])
    elif what == "write":
        write(where, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        validate(where, int(sys.argv[3]))
