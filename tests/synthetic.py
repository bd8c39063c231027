"""Synthetic datasets and activations dirs with planted directions, for tests and benchmarks.

The generative model, per text ``t`` of emotion ``e`` with sign ``s`` (+1 for a
positive example, -1 for a negative one), at every layer::

    mean_t = k_t * (offset + s * signal * plant[e] + noise * N(0, I) + g_t * axis),  g_t ~ N(0, nuisance^2)
    last_t = -offset + s * signal * plant[e] + noise * N(0, I)

so the true mean difference of ``e`` is ``2 * signal * plant[e]``. ``offset`` is
a large shared vector (like the attention-sink residual) that CAA must cancel;
``axis`` is a shared within-class nuisance direction that each plant leans on
by ``nuisance_mix`` (CAA inherits it, LDA should not). ``k_t`` is 1 unless
``dynamic_range`` > 0 scales each text's ``mean`` by its own power of ten: values
then spread over many binary exponents and float64 sums depend on their order,
as on real activations. Every text is used by exactly one (emotion, polarity,
split), so class means are easy to check.

API: :func:`make_synthetic` -> :class:`SyntheticData`; :func:`write_dataset`,
:func:`write_activations` (any subset of texts, any shard size), and
:func:`make_run` that does all of it, optionally split over several dirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amygdala_vllm.dataset import dataset_sha256
from amygdala_vllm.formats import (
    CAPTURE_FILE,
    CAPTURE_FORMAT,
    LAYER_SEMANTICS,
    CaptureInfo,
    ExampleRecord,
    TextRecord,
    write_json,
)
from amygdala_vllm.shards import Shard, shard_name, write_shard

__all__ = ["SyntheticSpec", "SyntheticData", "make_synthetic", "write_dataset", "write_activations",
           "split_ids", "make_run", "auroc"]


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape and strength of a synthetic capture."""

    emotions: tuple[str, ...] = ("anger", "joy", "warmth")
    layers: tuple[int, ...] = (2, 5)
    hidden_size: int = 32
    train_per_class: int = 40
    heldout_per_class: int = 20
    signal: float = 1.0
    noise: float = 0.15
    offset: float = 30.0
    nuisance: float = 0.0
    nuisance_mix: float = 0.0
    dynamic_range: float = 0.0  # each text's mean scaled by 10**-U(0, dynamic_range)
    seed: int = 0


@dataclass
class SyntheticData:
    """Dataset records, pooled activations for every text, and the planted truth."""

    spec: SyntheticSpec
    texts: list[TextRecord]
    examples: list[ExampleRecord]
    mean: np.ndarray  # float32 [N, L, H]
    last: np.ndarray  # float32 [N, L, H]
    plants: np.ndarray  # float64 [E, L, H], unit
    axis: np.ndarray  # float64 [L, H], unit nuisance axis

    def ids(self, split: str | None = None) -> np.ndarray:
        """Text ids used by examples of ``split`` (train|heldout; None = all)."""
        return np.array(sorted({e.text_id for e in self.examples if split in (None, e.split)}), dtype=np.int64)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_synthetic(spec: SyntheticSpec = SyntheticSpec()) -> SyntheticData:
    """Draw a synthetic dataset and its activations (deterministic in ``spec.seed``)."""
    rng = np.random.default_rng(spec.seed)
    n_layers, hidden = len(spec.layers), spec.hidden_size
    axis = _unit(rng.normal(size=(n_layers, hidden)))
    plants = _unit(_unit(rng.normal(size=(len(spec.emotions), n_layers, hidden))) + spec.nuisance_mix * axis)
    offset = spec.offset * _unit(rng.normal(size=(n_layers, hidden)))
    texts: list[TextRecord] = []
    examples: list[ExampleRecord] = []
    means, lasts = [], []
    for e, emo in enumerate(spec.emotions):
        for split, n in (("train", spec.train_per_class), ("heldout", spec.heldout_per_class)):
            for pol, sign in (("positive", 1.0), ("negative", -1.0)):
                for _ in range(n):
                    tid = len(texts)
                    texts.append(TextRecord(id=tid, key=f"n{tid}", text=f"{emo} {pol} {split} {tid}", sha256=f"{tid:064x}"))
                    examples.append(ExampleRecord(emotion=emo, polarity=pol, text_id=tid,
                                                  score=9.0 if sign > 0 else None, split=split))
                    sig = sign * spec.signal * plants[e]
                    g = rng.normal() * spec.nuisance
                    scale = 10.0 ** -rng.uniform(0, spec.dynamic_range)
                    noise = spec.noise * rng.normal(size=(n_layers, hidden))
                    means.append(scale * (offset + sig + noise + g * axis))
                    lasts.append(-offset + sig + spec.noise * rng.normal(size=(n_layers, hidden)))
    return SyntheticData(spec=spec, texts=texts, examples=examples, mean=np.array(means, dtype=np.float32),
                         last=np.array(lasts, dtype=np.float32), plants=plants, axis=axis)


def write_dataset(path: Path, data: SyntheticData) -> str:
    """Write a dataset dir (as ``pairs`` would); return its sha256."""
    from text_datasets import write_dataset_dir

    write_dataset_dir(path, data.texts, data.examples, source={"kind": "synthetic"}, options={"seed": data.spec.seed},
                      emotions=tuple(data.spec.emotions))
    return dataset_sha256(path)


def write_activations(path: Path, data: SyntheticData, *, dataset_sha256: str, text_ids: Sequence[int] | None = None,
                      shard_size: int = 64, more_modes: dict[str, np.ndarray] | None = None,
                      **overrides: object) -> CaptureInfo:
    """Write an activations dir holding ``text_ids`` (default all) in shards of ``shard_size``.

    ``more_modes`` adds pooling modes beyond mean and last (``[N, L, H]`` by text id, listed in
    ``pooling``); ``overrides`` replace capture.json fields (e.g. ``model_fingerprint``) to build mismatches.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    ids = np.sort(np.asarray(data.ids() if text_ids is None else text_ids, dtype=np.int64))
    shards = []
    for i, j0 in enumerate(range(0, len(ids), shard_size)):
        sel = ids[j0:j0 + shard_size]
        more = {k: v[sel] for k, v in (more_modes or {}).items()}
        shard = Shard(sel, np.full(len(sel), 12, dtype=np.int32), data.mean[sel], data.last[sel], more)
        shards.append(write_shard(path / shard_name(i), shard))
    fields: dict[str, object] = dict(
        format=CAPTURE_FORMAT, model="synthetic/model", model_fingerprint="fp-synthetic",
        layers=list(data.spec.layers), layer_semantics=LAYER_SEMANTICS, hidden_size=data.spec.hidden_size,
        num_hidden_layers=max(data.spec.layers) + 2, dtype="bfloat16", pooling=["mean", "last", *(more_modes or {})],
        skip_first_tokens=1, dataset_sha256=dataset_sha256, vllm_version="0.0.0-synthetic", split="all",
        num_shards=1, shard_index=0, max_model_len=512, overlong="truncate", texts_planned=len(ids),
        overlong_truncated=[], overlong_skipped=[], shards=shards,
    )
    fields.update(overrides)
    info = CaptureInfo(**fields)  # type: ignore[arg-type]
    write_json(path / CAPTURE_FILE, info)
    return info


def split_ids(ids: np.ndarray, parts: int, mode: str = "contiguous") -> list[np.ndarray]:
    """Split text ids over ``parts`` machines: ``contiguous`` ranges or ``strided`` (round robin)."""
    if mode == "strided":
        return [ids[k::parts] for k in range(parts)]
    return [a for a in np.array_split(ids, parts)]


def make_run(root: Path, spec: SyntheticSpec = SyntheticSpec(), *, parts: int = 1, shard_size: int = 64,
             mode: str = "contiguous", text_ids: Sequence[int] | None = None) -> tuple[Path, list[Path], SyntheticData]:
    """Dataset dir plus ``parts`` activations dirs under ``root``: ``(dataset_dir, act_dirs, data)``."""
    root = Path(root)
    data = make_synthetic(spec)
    ds = root / "dataset"
    sha = write_dataset(ds, data)
    ids = data.ids() if text_ids is None else np.asarray(text_ids, dtype=np.int64)
    dirs = []
    for k, part in enumerate(split_ids(ids, parts, mode)):
        d = root / f"acts{k}"
        write_activations(d, data, dataset_sha256=sha, text_ids=part, shard_size=shard_size,
                          num_shards=parts, shard_index=k)
        dirs.append(d)
    return ds, dirs, data


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve of scores ``pos`` vs ``neg`` (Mann-Whitney, ties count half)."""
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))
