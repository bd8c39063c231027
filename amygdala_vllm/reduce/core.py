"""``reduce``: activations + dataset -> readout vectors and manifest.

The steps, each in its own module: open and cross-check the activations dirs
(:mod:`.activations`), choose concepts and their train texts (here), pass 1
over the texts for class sums (:mod:`.stats`), directions (:mod:`.directions`,
:mod:`.methods`; for ``--method auto`` the per-layer choice by cross-validation
on the train texts, :mod:`.auto`), pass 2 for the calibration of the projections,
then write both files together (:mod:`amygdala_vllm.vectors_file`). Held-out examples are never read: only ``split == "train"``
texts enter a class.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from ..dataset import Dataset, load_dataset
from ..errors import CaptureError, FormatError, StoreError, UsageError
from ..formats import (LAYER_SEMANTICS, READOUT_FORMAT, READOUT_FORMAT_V1, AutoChoice, Calibration, ConceptCounts,
                       ReadoutManifest)
from ..shards import POOLINGS
from ..vectors_file import DTYPES, cast, encode_vectors, manifest_path, write_pair
from . import auto, directions
from .activations import Activations, open_activations
from .directions import LayerCrossTalk
from .methods import SPECIFIC_METHODS, build, given_neutral
from .stats import Classes, ClassSums, class_sums, projection_spread
from .token_calibration import token_class_means

__all__ = ["METHODS", "full_path", "ReduceOptions", "ClassSize", "ReduceSummary", "ReduceResult", "reduce", "select_concepts"]

log = logging.getLogger(__name__)

METHODS = ("auto", "caa", "lda", *SPECIFIC_METHODS)


def full_path(output: Path) -> Path:
    """Where ``--remove-shared`` writes the method's full vectors: ``NAME.full.safetensors`` beside ``NAME``.

    The main output holds the specific vectors (shared axes removed), because
    that is what the flag asks for; the full ones keep their own manifest so
    either file can be loaded for readout as it is.
    """
    return Path(output).with_suffix(".full.safetensors")


@dataclass(frozen=True)
class ReduceOptions:
    """Every choice ``reduce`` makes; the CLI flags map one to one."""

    pooling: str = "mean"
    method: str = "auto"
    shrinkage: float = 0.1
    min_examples: int = 5
    emotions: Sequence[str] | None = None
    dtype: str = "float32"
    allow_missing: bool = False
    force: bool = False
    top_pairs: int = 5
    neutral_variance: float = 0.0
    remove_shared: int = 0
    folds: int = auto.FOLDS  # --method auto: cross-validation folds over the train texts
    seed: int = auto.SEED  # --method auto: seed of the fold order

    def check(self) -> None:
        """Refuse impossible combinations before any file is opened."""
        if self.pooling not in POOLINGS:
            raise UsageError(f"unknown --pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        if self.method not in METHODS:
            raise UsageError(f"unknown --method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.dtype not in DTYPES:
            raise UsageError(f"unknown --dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.min_examples < 2:
            raise UsageError(f"--min-examples must be at least 2 (a spread needs two texts), got {self.min_examples}")
        if not self.shrinkage >= 0:
            raise UsageError(f"--shrinkage must be >= 0, got {self.shrinkage}")
        if not 0.0 <= self.neutral_variance < 1.0:
            raise UsageError(f"--neutral-variance must be within [0, 1) (0 = off), got {self.neutral_variance}")
        if self.remove_shared < 0:
            raise UsageError(f"--remove-shared must be >= 0 (0 = off), got {self.remove_shared}")
        if self.folds < 2:
            raise UsageError(f"--folds must be at least 2, got {self.folds}")
        if self.method == "auto" and (self.neutral_variance > 0 or self.remove_shared > 0):
            raise UsageError("--method auto chooses the neutral projection and shared-axis removal itself; "
                             "--neutral-variance and --remove-shared need a fixed --method (caa, lda, ...)")
        if self.emotions is not None and len(set(self.emotions)) != len(self.emotions):
            raise UsageError("--emotions lists an emotion twice")


class ClassSize(msgspec.Struct):
    """Train class sizes of one kept concept."""

    concept: str
    positive: int
    negative: int


class ReduceSummary(msgspec.Struct):
    """What the CLI prints (and ``--json-summary`` writes); not part of the runtime format."""

    output: str
    manifest: str
    method: str
    pooling: str
    concepts: list[str]
    dropped: dict[str, str]
    layers: list[int]
    raw_norms: dict[str, dict[str, float]]  # concept -> str(layer) -> |mu_pos - mu_neg|
    smallest: list[ClassSize]  # kept concepts, smallest class first
    cross_talk: list[LayerCrossTalk]
    missing_texts: int = 0
    method_options: dict[str, float] = {}
    full_output: str | None = None  # --remove-shared: the method's vectors before the shared axes were removed
    auto: AutoChoice | None = None  # --method auto: the method chosen per layer and every candidate's CV figures


@dataclass
class ReduceResult:
    """The manifest as written, the summary, and the float64 unit vectors [E, L, H]."""

    manifest: ReadoutManifest
    summary: ReduceSummary
    vectors: np.ndarray = field(repr=False)


def _train_classes(dataset: Dataset) -> dict[str, tuple[set[int], set[int]]]:
    out: dict[str, tuple[set[int], set[int]]] = {e: (set(), set()) for e in dataset.info.emotions}
    for ex in dataset.examples:
        pair = out.setdefault(ex.emotion, (set(), set()))
        if ex.split == "train":
            pair[0 if ex.polarity == "positive" else 1].add(ex.text_id)
    for e, (pos, neg) in out.items():
        both = pos & neg
        if both:
            raise FormatError(f"{dataset.path}: text {min(both)} is both a positive and a negative for {e!r}")
    return out


def select_concepts(
    dataset: Dataset, acts: Activations, opts: ReduceOptions
) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]], dict[str, str], int]:
    """Kept concepts in manifest order, their (positive, negative) train ids, dropped reasons, missing count."""
    classes = _train_classes(dataset)
    if opts.emotions is not None:
        unknown = [e for e in opts.emotions if e not in classes]
        if unknown:
            raise UsageError(f"--emotions names {unknown} not in the dataset (it has: {', '.join(sorted(classes))})")
        candidates = list(opts.emotions)
    else:
        candidates = sorted(classes)
    arrays = {e: tuple(np.array(sorted(s), dtype=np.int64) for s in classes[e]) for e in candidates}
    needed = np.unique(np.concatenate([a for pair in arrays.values() for a in pair] + [np.zeros(0, np.int64)]))
    absent = needed[~acts.present(needed)]
    if len(absent) and not opts.allow_missing:
        raise CaptureError(
            f"{len(absent)} train text(s) the dataset needs are in no shard, e.g. ids {absent[:5].tolist()}; "
            "extract them, add the missing --activations dir, or pass --allow-missing"
        )
    if len(absent):
        log.warning("%d train text(s) are in no shard and are left out, e.g. ids %s", len(absent), absent[:5].tolist())
    kept, members, dropped = [], [], {}
    for e in candidates:
        pos, neg = (a[acts.present(a)] for a in arrays[e])
        reason = None
        if len(pos) == 0:
            reason = "no train positives"
        elif len(neg) == 0:
            reason = "no train negatives"
        elif min(len(pos), len(neg)) < opts.min_examples:
            reason = f"{len(pos)} train positives, {len(neg)} negatives (< --min-examples {opts.min_examples})"
        if reason is None:
            kept.append(e)
            members.append((pos, neg))
        elif opts.emotions is not None:
            raise UsageError(f"requested emotion {e!r} cannot be built: {reason}")
        else:
            dropped[e] = reason
    if not kept:
        raise UsageError(f"no concept has at least {opts.min_examples} train positives and negatives")
    return kept, members, dropped, int(len(absent))


def reduce(
    activations: Sequence[Path], training_data_dir: Path, output: Path, opts: ReduceOptions | None = None
) -> ReduceResult:
    """Compute readout vectors and write ``output`` plus its manifest; see the module docstring."""
    opts = opts or ReduceOptions()
    opts.check()
    output = Path(output)
    man_path = manifest_path(output)
    if not output.parent.is_dir():
        raise StoreError(f"cannot write {output}: directory {output.parent} does not exist")
    if not opts.force:
        extra = (full_path(output), manifest_path(full_path(output))) if opts.remove_shared else ()
        for p in (output, man_path, *extra):
            if p.exists():
                raise StoreError(f"{p} already exists (pass --force to overwrite)")
    dataset = load_dataset(Path(training_data_dir))
    acts = open_activations(activations, dataset_sha256=dataset.sha256)
    try:
        return _run(acts, dataset, output, man_path, opts)
    finally:
        acts.close()


def _run(acts: Activations, dataset: Dataset, output: Path, man_path: Path, opts: ReduceOptions) -> ReduceResult:
    info = acts.info
    acts.check_pooling(opts.pooling)
    if info.layer_semantics != LAYER_SEMANTICS:
        raise CaptureError(f"activations have layer_semantics {info.layer_semantics!r}, expected {LAYER_SEMANTICS!r}")
    concepts, members, dropped, missing = select_concepts(dataset, acts, opts)
    classes = Classes.build(members)
    layers = acts.layers
    log.info("pass 1 over %d train texts for %d concepts (%s)", len(classes.ids), len(concepts), opts.method)
    if opts.method == "auto":
        return _run_auto(acts, dataset, output, man_path, opts, concepts, members, dropped, missing)
    uses_neutral = opts.method == "mlda" or opts.neutral_variance > 0
    built = build(acts, members, concepts, opts.pooling, opts.method, shrinkage=opts.shrinkage,
                  neutral_variance=opts.neutral_variance, remove_shared_k=opts.remove_shared,
                  neutral=given_neutral(dataset, acts, allow_missing=opts.allow_missing) if uses_neutral else None)
    stats = built.stats
    raw_norm = _raw_norm(stats)
    write = dict(acts=acts, dataset=dataset, classes=classes, stats=stats, concepts=concepts, dropped=dropped,
                 raw_norm=raw_norm, opts=opts)
    full_out = None
    if built.specific is not None:
        full_out = full_path(output)
        full_opts = {k: v for k, v in built.options.items() if k != "remove_shared"}
        _write_pair(full_out, built.full, full_opts, **write)  # type: ignore[arg-type]
        unit = built.specific
    else:
        unit = built.full
    manifest, written = _write_pair(output, unit, built.options, **write)  # type: ignore[arg-type]
    summary = _summary(output, man_path, opts, concepts, dropped, layers, raw_norm, stats, written, missing,
                       built.options, full_out, None)
    return ReduceResult(manifest=manifest, summary=summary, vectors=unit)


def _raw_norm(stats: ClassSums) -> np.ndarray:
    means = stats.means()
    return np.linalg.norm(means[0] - means[1], axis=-1)  # [E, L]


def _run_auto(acts: Activations, dataset: Dataset, output: Path, man_path: Path, opts: ReduceOptions,
              concepts: list[str], members: list[tuple[np.ndarray, np.ndarray]], dropped: dict[str, str],
              missing: int) -> ReduceResult:
    """``--method auto``: cross-validate the candidates on the train split, fit each layer's winner on all of it."""
    given = given_neutral(dataset, acts, allow_missing=opts.allow_missing)
    choice = auto.cross_validate(acts, members, concepts, opts.pooling, opts.shrinkage, given,
                                 folds=opts.folds, seed=opts.seed)
    unit, kinds = auto.fit_chosen(acts, members, concepts, opts.pooling, opts.shrinkage, given, choice)
    classes = Classes.build(members)
    stats = class_sums(acts, classes, opts.pooling, scatter=False)
    raw_norm = _raw_norm(stats)
    options = {"shrinkage": float(opts.shrinkage)}
    manifest, written = _write_pair(output, unit, options, acts=acts, dataset=dataset, classes=classes, stats=stats,
                                    concepts=concepts, dropped=dropped, raw_norm=raw_norm, opts=opts,
                                    auto_choice=choice, kinds=kinds)
    summary = _summary(output, man_path, opts, concepts, dropped, acts.layers, raw_norm, stats, written, missing,
                       options, None, choice)
    return ReduceResult(manifest=manifest, summary=summary, vectors=unit)


def _summary(output: Path, man_path: Path, opts: ReduceOptions, concepts: list[str], dropped: dict[str, str],
             layers: list[int], raw_norm: np.ndarray, stats: ClassSums, written: np.ndarray, missing: int,
             options: dict[str, float], full_out: Path | None, choice: AutoChoice | None) -> ReduceSummary:
    counts = stats.counts
    order = np.argsort(counts.min(axis=0), kind="stable")
    return ReduceSummary(
        output=str(output),
        manifest=str(man_path),
        method=opts.method,
        pooling=opts.pooling,
        concepts=concepts,
        dropped=dropped,
        layers=layers,
        raw_norms={c: {str(l): float(raw_norm[e, i]) for i, l in enumerate(layers)} for e, c in enumerate(concepts)},
        smallest=[ClassSize(concepts[e], int(counts[0, e]), int(counts[1, e])) for e in order],
        cross_talk=directions.cross_talk(written, concepts, layers, top=opts.top_pairs),
        missing_texts=missing,
        method_options=options,
        full_output=None if full_out is None else str(full_out),
        auto=choice,
    )


def _write_pair(output: Path, unit: np.ndarray, method_options: dict[str, float], *, acts: Activations,
                dataset: Dataset, classes: Classes, stats: ClassSums, concepts: list[str], dropped: dict[str, str],
                raw_norm: np.ndarray, opts: ReduceOptions, auto_choice: AutoChoice | None = None,
                kinds: dict[str, dict[str, str]] | None = None) -> tuple[ReadoutManifest, np.ndarray]:
    """Calibrate unit vectors [E, L, H] (pass 2) and write them with their manifest; return both.

    One fixed method writes format version 1, byte for byte as before ``auto`` existed; ``auto`` writes
    version 2 with its choice and each vector's kind.
    """
    info, layers = acts.info, acts.layers
    stored, written = cast(unit, opts.dtype)
    log.info("pass 2: calibration of the projections")
    proj_means, pooled = projection_spread(acts, classes, opts.pooling, written, stats)
    tok = token_class_means(acts, classes, written)
    counts = stats.counts
    manifest = ReadoutManifest(
        format=READOUT_FORMAT_V1 if auto_choice is None else READOUT_FORMAT,
        concepts=concepts,
        layers=layers,
        layer_semantics=LAYER_SEMANTICS,
        hidden_size=acts.hidden_size,
        model=info.model,
        model_fingerprint=info.model_fingerprint,
        pooling=opts.pooling,
        method=opts.method,
        counts={c: ConceptCounts(int(counts[0, e]), int(counts[1, e])) for e, c in enumerate(concepts)},
        calibration={
            c: {
                str(layer): Calibration(
                    pos_mean=float(proj_means[0, e, li]),
                    neg_mean=float(proj_means[1, e, li]),
                    pooled_std=float(pooled[e, li]),
                    raw_norm=float(raw_norm[e, li]),
                    token_pos_mean=float(tok[0, e, li]),
                    token_neg_mean=float(tok[1, e, li]),
                )
                for li, layer in enumerate(layers)
            }
            for e, c in enumerate(concepts)
        },
        skip_first_tokens=info.skip_first_tokens,
        dropped=dropped,
        dataset_sha256=dataset.sha256,
        vllm_version=info.vllm_version,
        method_options=method_options,
        capture_dtype=info.dtype,
        vector_kind=kinds or {},
        auto=auto_choice,
    )
    write_pair(output, encode_vectors(manifest, stored, opts.dtype), manifest, force=opts.force)
    log.info("wrote %s and %s", output, manifest_path(output))
    return manifest, written
