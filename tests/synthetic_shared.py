"""Synthetic activations with a planted shared (valence) axis and planted concept-specific directions.

Per layer, with ``shared`` and ``specific[e]`` orthonormal, every text is
``offset + noise * N(0, I)`` plus

* for a positive of emotion ``e``:  ``+strength * shared + specific[e]``;
* for a negative (of any emotion):   ``-strength * shared``

so every emotion is "pleasant" and its negatives are "unpleasant", and no text
is positive for two emotions. Plain CAA (``mu_pos - mu_neg = 2 strength shared
+ specific[e]``) then points almost entirely along the shared axis: its
sibling AUROC sits near 0.5 while its one-vs-rest AUROC is perfect. A method
that removes what the emotions share should recover ``specific[e]``.
Negatives are positive for no emotion, so they are the neutral texts. Every
text also varies along ``nuisance_dims`` further orthonormal directions with
std ``nuisance`` (token noise that dominates the neutral texts' variance, the
thing a neutral projection removes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amygdala_vllm.formats import ExampleRecord, TextRecord
from synthetic import SyntheticData, SyntheticSpec

__all__ = ["SharedSpec", "make_shared"]


@dataclass(frozen=True)
class SharedSpec:
    emotions: int = 24
    layers: tuple[int, ...] = (2, 5)
    hidden_size: int = 64
    train_per_class: int = 200
    heldout_per_class: int = 20
    strength: float = 20.0
    noise: float = 0.1
    offset: float = 30.0
    nuisance_dims: int = 3
    nuisance: float = 0.6
    seed: int = 0


def make_shared(spec: SharedSpec = SharedSpec()) -> tuple[SyntheticData, np.ndarray]:
    """``(data, shared)``: ``data.plants`` are the planted specific directions [E, L, H]; ``shared`` is [L, H]."""
    rng = np.random.default_rng(spec.seed)
    n_l, h, n_e = len(spec.layers), spec.hidden_size, spec.emotions
    basis = np.stack([np.linalg.qr(rng.normal(size=(h, n_e + 1 + spec.nuisance_dims)))[0].T
                      for _ in range(n_l)], axis=1)  # [1 + E + nuisance_dims, L, H]
    shared, specific, nuisance = basis[0], basis[1:n_e + 1], basis[n_e + 1:]
    offset = spec.offset * rng.normal(size=(n_l, h)) / np.sqrt(h)
    names = tuple(f"emo{e:02d}" for e in range(n_e))
    texts: list[TextRecord] = []
    examples: list[ExampleRecord] = []
    rows = []
    for e, name in enumerate(names):
        for split, n in (("train", spec.train_per_class), ("heldout", spec.heldout_per_class)):
            for pol in ("positive", "negative"):
                for _ in range(n):
                    tid = len(texts)
                    texts.append(TextRecord(id=tid, key=f"n{tid}", text=f"{name} {pol} {split} {tid}",
                                            sha256=f"{tid:064x}"))
                    examples.append(ExampleRecord(emotion=name, polarity=pol, text_id=tid,
                                                  score=9.0 if pol == "positive" else None, split=split))
                    sig = spec.strength * shared + specific[e] if pol == "positive" else -spec.strength * shared
                    tok = np.einsum("k,klh->lh", spec.nuisance * rng.normal(size=spec.nuisance_dims), nuisance)
                    rows.append(offset + sig + tok + spec.noise * rng.normal(size=(n_l, h)))
    act = np.array(rows, dtype=np.float32)
    syn = SyntheticSpec(emotions=names, layers=spec.layers, hidden_size=h, seed=spec.seed)
    return SyntheticData(spec=syn, texts=texts, examples=examples, mean=act, last=act.copy(), plants=specific,
                         axis=shared), shared
