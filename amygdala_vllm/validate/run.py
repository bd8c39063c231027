"""The ``validate`` driver: vectors + dataset -> vLLM readout on held-out texts -> report dir.

Order matters for the user's time: every input is loaded and checked (vectors
against manifest, held-out examples present, ``--ood`` readable, the
``--compare-methods`` table computed offline) before the engine starts, since
an engine start costs from seconds to minutes. The engine part is one call,
``Readout(...).score_texts(texts)``, behind :data:`OpenReadout`, so tests (and
a future offline mode) can hand in any object with ``score_texts``.

The vectors reach the engine the way serving loads them: through
``VLLM_READOUT_VECTORS`` and ``VLLM_READOUT_MANIFEST``, set for the engine's
lifetime and restored afterwards (:func:`~amygdala_vllm.vectors_file.readout_env`).
The file is parsed once per process (:func:`~amygdala_vllm.vectors_file.load`):
the offline pass here, the agreement check and a single-process engine's
worker share that read.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec
import numpy as np

from ..dataset import Dataset, load_dataset
from ..defaults import REPORT_DIR
from ..dtype_choice import resolve_dtype
from ..engine_settings import ENGINE_DEFAULTS, EngineSettings
from ..errors import UsageError
from ..formats import ReadoutManifest
from ..reduce import ReduceOptions
from ..separation.specificity import read_taxonomy
from ..vectors_file import load as load_vectors_file
from ..vectors_file import pair_paths, readout_env
from .auto_check import auto_check
from .compare import compare_methods
from .evaluate import evaluate_projections, heldout_classes
from .ood import ood_report, read_ood_texts
from .report import write_report
from .schema import ValidateReport
from .stream import ScoreStream

__all__ = ["ValidateOptions", "ValidateResult", "ReadoutLike", "OpenReadout", "open_vllm_readout", "run_validate", "pick_heldout",
           "min_auroc_failures"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int], Callable[[int], None]]


class ReadoutLike(Protocol):
    def score_texts(self, texts: list[str], progress: Callable[[int], None] | None = None) -> list[Any]: ...


#: ``(vectors, manifest, engine settings) -> context manager yielding a ReadoutLike``; the settings' model and
#: dtype are resolved (the manifest's model, bf16/fp16/fp32).
OpenReadout = Callable[[Path, Path, EngineSettings], contextlib.AbstractContextManager]


@dataclass(frozen=True)
class ValidateOptions:
    """Every choice ``validate`` makes; the CLI flags map one to one."""

    vectors: Path
    training_data_dir: Path
    manifest: Path | None = None
    #: how the readout engine starts; its model None: the manifest's; its dtype is resolved once
    #: (dtype_choice), and the report and the agreement bar get bf16/fp16/fp32
    engine: EngineSettings = ENGINE_DEFAULTS
    output_dir: Path = REPORT_DIR
    ood: Path | None = None
    min_auroc: float | None = None
    compare_methods: bool = False
    activations: Sequence[Path] = ()
    max_texts: int | None = None
    shrinkage: float = ReduceOptions.shrinkage  # --compare-methods fits LDA as reduce does
    taxonomy: Path | None = None

    def check(self) -> None:
        """Refuse impossible combinations before any file is read."""
        self.engine.check()
        if self.min_auroc is not None and not 0.0 <= self.min_auroc <= 1.0:
            raise UsageError(f"--min-auroc must be within [0, 1], got {self.min_auroc}")
        if self.max_texts is not None and self.max_texts < 1:
            raise UsageError(f"--max-texts must be at least 1, got {self.max_texts}")
        if self.compare_methods and not self.activations:
            raise UsageError("--compare-methods needs --activations DIR (from `extract --split all`)")
        if self.activations and not self.compare_methods:
            raise UsageError("--activations is only used with --compare-methods")


@dataclass
class ValidateResult:
    """The report as written, where its files are, and the reasons it failed (empty: passed)."""

    report: ValidateReport
    paths: dict[str, Path]
    failures: list[str] = field(default_factory=list)


def pick_heldout(classes: dict[str, tuple[np.ndarray, np.ndarray]], max_texts: int | None) -> list[int]:
    """Unique held-out text ids; with a cap, taken round-robin over every (concept, polarity) class.

    A plain prefix of the sorted ids could hold only one concept's positives;
    round-robin keeps every class represented in a quick ``--max-texts`` run.
    """
    lists = [list(map(int, a)) for pair in classes.values() for a in pair]
    if max_texts is None:
        return sorted({t for lst in lists for t in lst})
    chosen: dict[int, None] = {}
    for k in range(max((len(lst) for lst in lists), default=0)):
        for lst in lists:
            if k < len(lst) and len(chosen) < max_texts:
                chosen.setdefault(lst[k])
    return sorted(chosen)


def min_auroc_failures(report: ValidateReport, bar: float) -> list[str]:
    """Concepts whose best-layer AUROC (manifest pooling) is below ``bar``; unmeasured ones fail too."""
    out = []
    for c in report.concepts:
        if c.best_auroc is None:
            out.append(f"{c.concept}: not measured ({c.reason or 'no finite AUROC'})")
        elif c.best_auroc < bar:
            out.append(f"{c.concept}: best AUROC {c.best_auroc:.3f} at layer {c.best_layer} "
                       f"({report.pooling} pooling) < --min-auroc {bar}")
    return out


@contextlib.contextmanager
def open_vllm_readout(vectors: Path, manifest: Path, engine: EngineSettings) -> Iterator[ReadoutLike]:
    """The real engine: ``amygdala_vllm.readout.scorer.Readout`` with the agreement check (vLLM imported here)."""
    from ..readout.scorer import Readout  # heavy: vllm + torch

    with Readout(vectors, manifest, engine=engine, check_agreement=True) as r:
        yield r


#: Batches of texts per ``score_texts`` call: the per-token scores of one call are held until it returns,
#: so this (not the held-out set) bounds them. A readout may say otherwise (``texts_per_call``: Ray, to keep
#: every actor busy).
BATCHES_PER_CALL = 4


def _score(r: ReadoutLike, texts: list[str], stream: ScoreStream, label: str, progress: Progress | None,
           batch_size: int) -> ScoreStream:
    """Score ``texts`` a few batches at a time, reducing each call's scores into ``stream`` before the next.

    Calls hold whole engine batches (a multiple of ``batch_size``), so the
    engine sees the same batches as one call over every text would give it.
    """
    advance = progress(label, len(texts)) if progress else None
    step = int(getattr(r, "texts_per_call", 0) or batch_size * BATCHES_PER_CALL)
    for start in range(0, len(texts), step):
        chunk = texts[start : start + step]
        scores = r.score_texts(chunk, advance) if advance else r.score_texts(chunk)
        if len(scores) != len(chunk):
            raise RuntimeError(f"Readout returned {len(scores)} results for {len(chunk)} texts")
        stream.add(scores)
        del scores
    return stream


def run_validate(opts: ValidateOptions, progress: Progress | None = None, *,
                 open_readout: OpenReadout | None = None) -> ValidateResult:
    """Validate; see the module docstring. Failures (min AUROC, agreement) are returned, not raised."""
    opts.check()
    vectors_path, man_path = pair_paths(opts.vectors, opts.manifest or None)
    loaded = load_vectors_file(vectors_path, man_path, calibrated=True)
    manifest, vectors = loaded.manifest, loaded.stacked()
    dataset = load_dataset(Path(opts.training_data_dir))
    text_ids = _heldout_ids(dataset, manifest, opts.max_texts)
    ood_texts = read_ood_texts(opts.ood) if opts.ood else None
    taxonomy = read_taxonomy(opts.taxonomy) if opts.taxonomy else None
    compare = (compare_methods(opts.activations, dataset, manifest, shrinkage=opts.shrinkage, taxonomy=taxonomy)
               if opts.compare_methods else None)

    model = opts.engine.model or manifest.model
    dtype = resolve_dtype(opts.engine.dtype).dtype
    engine = msgspec.structs.replace(opts.engine, model=model, dtype=dtype)
    log.info("scoring %d held-out texts with %s", len(text_ids), model)
    opener = open_readout or open_vllm_readout
    with readout_env(vectors_path, man_path), opener(vectors_path, man_path, engine) as r:
        shape = (len(manifest.layers), len(manifest.concepts))
        held = _score(r, [dataset.texts[t].text for t in text_ids], ScoreStream(text_ids, shape), "held-out",
                      progress, engine.batch_size)
        ood = (_score(r, ood_texts, ScoreStream(range(len(ood_texts)), shape), "ood", progress, engine.batch_size)
               if ood_texts else None)

    report = evaluate_projections(dataset, manifest, vectors, held.projections(), held.agreement(dtype, manifest.hidden_size),
                                  vectors_path=vectors_path, manifest_path=man_path, model=model, dtype=dtype,
                                  taxonomy=taxonomy)
    failures = []
    a = report.agreement
    if a.checked and not a.passed:
        failures.append(f"agreement: runtime and offline projections differ by {a.max_abs_diff:.3g} "
                        f"> {a.tolerance:.3g} allowed in {a.dtype}")
    if opts.min_auroc is not None:
        failures += min_auroc_failures(report, opts.min_auroc)
    report.min_auroc = opts.min_auroc
    report.failures = failures
    if ood is not None:
        pooled = ood.projections().of(manifest.pooling)
        report.ood = ood_report(opts.ood, manifest, pooled)
    report.compare = compare
    report.auto = auto_check(manifest, report.specificity)
    paths = write_report(Path(opts.output_dir), report)
    return ValidateResult(report=report, paths=paths, failures=failures)


def _heldout_ids(dataset: Dataset, manifest: ReadoutManifest, max_texts: int | None) -> list[int]:
    classes = heldout_classes(dataset, manifest.concepts)
    ids = pick_heldout(classes, max_texts)
    if not ids:
        raise UsageError(
            f"the dataset {dataset.path} has no held-out examples for the manifest's concepts "
            f"({', '.join(manifest.concepts)}); rebuild it with `amygdala-vllm pairs --heldout-fraction 0.2`"
        )
    return ids
