"""``pairs`` as a library call: a memory-graph source in, a dataset dir out.

This is the one function the CLI calls. It reads and checks everything first
(options, output location, emotions file, source) and writes only at the end,
through :func:`amygdala_vllm.atomic.staged_dir`, so bad input or a crash or a
Ctrl-C leaves no half dataset, and a rerun with the same inputs gives the same
bytes (all ordering is by key, emotion and seed, never by arrival order).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import atomic
from ..dataset import emotion_counts, is_dataset_dir, write_dataset_files
from ..errors import FormatError, SourceError, StoreError, UsageError
from ..formats import (
    DATASET_FILE,
    PAIRS_FORMAT,
    DatasetInfo,
    DatasetStats,
    EmotionCounts,
    ExampleRecord,
    TextRecord,
    read_input,
)
from .neutral import NeutralTexts, read_neutral_texts
from .select import (Example, Rules, UnitIndex, choose_emotions, normalise_whitespace, parse_emotion_list,
                     prepare_texts, select_examples)
from .sources import SourceSpec, read_source

__all__ = ["PairsOptions", "PairsSummary", "build_dataset", "check_output_dir", "read_emotions_file"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairsOptions:
    """Everything besides the source and output location that shapes the dataset."""

    rules: Rules = field(default_factory=Rules)
    min_content_chars: int = 40
    heldout_fraction: float = 0.2
    emotions_file: Path | None = None
    top_emotions: int | None = None
    strict: bool = False
    neutral_texts: Path | None = None  # ``--neutral-texts FILE`` (pairs/neutral.py)

    def __post_init__(self) -> None:
        if not 0 <= self.heldout_fraction < 1:
            raise UsageError(f"--heldout-fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.min_content_chars < 0:
            raise UsageError("--min-content-chars must be >= 0")
        if self.top_emotions is not None and self.top_emotions < 1:
            raise UsageError("--top-emotions must be >= 1")


@dataclass(frozen=True)
class PairsSummary:
    """What ``build_dataset`` wrote: the header as written, left-out emotions, example count."""

    output_dir: Path
    info: DatasetInfo
    dropped: dict[str, str]
    examples: int


def check_output_dir(path: Path, *, force: bool) -> None:
    """Refuse to replace anything but a dataset dir or an empty dir, unless ``force``.

    A plain file is refused even with ``force``: it is never ours to delete.
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise StoreError(f"output {path} exists and is not a directory")
    if is_dataset_dir(path) or force or not any(path.iterdir()):
        return
    raise StoreError(f"output dir {path} exists and is not a dataset dir (no {DATASET_FILE}); pass --force to replace it")


def read_emotions_file(path: Path) -> list[str]:
    """The curated emotion names of ``path`` (one per line, ``#`` comments), canonical."""
    path = Path(path)
    data = read_input(path, what="emotions file", error=UsageError)
    try:
        names = parse_emotion_list(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FormatError(f"emotions file {path} is not UTF-8") from exc
    if not names:
        raise UsageError(f"emotions file {path} names no emotion")
    return names


def _options_record(options: PairsOptions, curated: list[str] | None) -> dict[str, Any]:
    r = options.rules
    return {
        "min_positive_score": r.min_positive_score,
        "max_negative_score": r.max_negative_score,
        "max_negative_mentions": r.max_negative_mentions,
        "min_content_chars": options.min_content_chars,
        "max_examples_per_emotion": r.max_examples_per_emotion,
        "negatives_per_positive": r.negatives_per_positive,
        "min_examples": r.min_examples,
        "heldout_fraction": options.heldout_fraction,
        "seed": r.seed,
        "top_emotions": options.top_emotions,
        "emotions_file": None if options.emotions_file is None else str(options.emotions_file),
        "emotions": curated,
    }


def _records(examples: list[Example], neutral: dict[str, str] | None = None
             ) -> tuple[list[TextRecord], list[ExampleRecord], dict[str, EmotionCounts], list[int]]:
    """Dense text ids in key order over the texts actually used and the neutral ones; examples in a fixed order."""
    used: dict[str, str] = {ex.unit.key: ex.unit.text for ex in examples}
    neutral = neutral or {}
    clash = sorted(set(used) & set(neutral))
    if clash:
        raise UsageError(f"a node key collides with a --neutral-texts key: {clash[0]!r}")
    used.update(neutral)
    ids = {key: i for i, key in enumerate(sorted(used))}
    texts = [
        TextRecord(id=ids[key], key=key, text=used[key], sha256=hashlib.sha256(used[key].encode()).hexdigest())
        for key in sorted(used)
    ]
    records = sorted(
        (
            ExampleRecord(
                emotion=ex.emotion,
                polarity=ex.polarity,
                text_id=ids[ex.unit.key],
                score=ex.score,
                split="heldout" if ex.unit.heldout else "train",
            )
            for ex in examples
        ),
        key=lambda e: (e.emotion, e.polarity != "positive", e.text_id),
    )
    return texts, records, dict(sorted(emotion_counts(records).items())), sorted(ids[k] for k in neutral)


def _neutral_record(file: NeutralTexts, kept: int, duplicates: int) -> dict[str, Any]:
    return {"path": str(file.path), "sha256": file.sha256, "lines": file.lines, "texts": kept, "duplicates": duplicates}


def build_dataset(
    source: SourceSpec,
    output_dir: Path,
    options: PairsOptions,
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PairsSummary:
    """Read ``source``, choose the examples, and write the dataset dir atomically.

    An existing dataset dir (or empty dir) at ``output_dir`` is replaced in one
    swap; any other existing dir needs ``force``. Nothing is written unless
    every step before the write succeeded. ``progress(done, total)`` follows the
    per-node fetches from an MCP server.
    """
    output_dir = Path(output_dir)
    check_output_dir(output_dir, force=force)
    curated = read_emotions_file(options.emotions_file) if options.emotions_file is not None else None
    neutral_file = read_neutral_texts(options.neutral_texts) if options.neutral_texts is not None else None
    result = read_source(source, strict=options.strict, progress=progress)
    units, skipped = prepare_texts(
        result.nodes,
        min_content_chars=options.min_content_chars,
        seed=options.rules.seed,
        heldout_fraction=options.heldout_fraction,
    )
    skipped.update(result.skipped)
    if not units:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
        raise SourceError(f"no usable nodes in the source ({reasons})")
    index = UnitIndex(units)
    emotions, dropped = choose_emotions(units, options.rules, curated=curated, top=options.top_emotions, index=index)
    for name, why in dropped.items():
        log.info("emotion %s left out: %s", name, why)
    examples = [ex for name in emotions for ex in select_examples(units, name, options.rules, index)]
    neutral: dict[str, str] = {}
    record = _options_record(options, curated)
    if neutral_file is not None:
        neutral, dups = neutral_file.without({normalise_whitespace(ex.unit.text) for ex in examples})
        if dups:
            log.warning("%d --neutral-texts text(s) repeat a dataset text or an earlier line and are kept once", dups)
        record["neutral_texts"] = _neutral_record(neutral_file, len(neutral), dups)
    texts, records, counts, neutral_ids = _records(examples, neutral)
    info = DatasetInfo(
        format=PAIRS_FORMAT,
        source=result.description,
        options=record,
        emotions=counts,
        stats=DatasetStats(
            nodes_read=len(result.nodes) + sum(result.skipped.values()),
            nodes_skipped=dict(sorted(skipped.items())),
            texts=len(texts),
        ),
        neutral=neutral_ids,
    )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    check_output_dir(output_dir, force=force)
    with atomic.staged_dir(output_dir, replace=True) as staging:
        write_dataset_files(staging, info, texts, records)
    log.info("wrote %d texts and %d examples to %s", len(texts), len(records), output_dir)
    return PairsSummary(output_dir=output_dir, info=info, dropped=dropped, examples=len(records))
