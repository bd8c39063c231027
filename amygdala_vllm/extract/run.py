"""``extract``: forward every unique text of a dataset through vLLM once, pool, shard.

Work is cut into fixed shards before anything runs: the planned text ids
(sorted, then this machine's slice ``ids[shard_index::num_shards]``) are split
into shards of ``shard_size`` texts, and each shard into batches of
``batch_size``. Because that plan depends only on the dataset and the flags, a
rerun after a crash skips the shards already on disk and feeds vLLM exactly
the same batches as an uninterrupted run, so the files come out byte-identical.
``capture.json`` is rewritten (atomically) after every shard.

Who runs the shards is a :data:`ShardSource`: one engine in this process
(:func:`local_shards`, the engine side lives in :mod:`.capture`), or Ray
actors on a cluster (``amygdala_vllm.cluster``). Either way this process alone
checks each returned shard against the plan and writes it, so a shard is never
written twice or partly, and the directory is the same whichever ran it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..dataset import Dataset, load_dataset
from ..engine_settings import EngineSettings
from ..errors import CaptureError, StoreError, UsageError
from ..formats import (CAPTURE_FILE, CAPTURE_FORMAT, LAYER_SEMANTICS, CaptureInfo, TextRecord, read_capture_info,
                      write_json)
from ..model_config import DecoderShape, read_decoder_shape
from ..pooling_modes import DEFAULT_MODES, parse_modes
from ..shards import decode_shard, file_sha256, shard_name, write_shard_bytes
from .capture import BatchFn, CaptureSpec, ShardResult

__all__ = ["ExtractOptions", "ExtractSummary", "ExtractPlan", "ProgressFn", "ShardSource", "plan_text_ids",
           "plan_extract", "local_shards", "run_extract", "parse_layers"]

log = logging.getLogger(__name__)

OVERLONG = ("truncate", "skip", "error")
SPLITS = ("train", "heldout", "all")

ProgressFn = BatchFn
"""Called as texts complete with (texts, tokens): per batch in one process, per shard from a cluster."""


@dataclass
class ExtractOptions:
    """Everything ``extract`` needs; the CLI fills it from flags.

    ``engine.model`` is required here; ``plan_extract`` replaces ``engine`` by
    its resolved form (model folder, concrete dtype, numeric ``max_model_len``),
    which ``capture.json`` records.
    """

    dataset_dir: Path
    output_dir: Path
    layers: list[int]
    engine: EngineSettings
    shard_size: int = 256
    split: str = "all"
    num_shards: int = 1
    shard_index: int = 0
    overlong: str = "truncate"
    skip_first_tokens: int = 1
    force: bool = False
    pooling: tuple[str, ...] = DEFAULT_MODES

    @property
    def model(self) -> str:
        """The engine's model (a folder once planned)."""
        if self.engine.model is None:
            raise UsageError("extract needs a model (--model)")
        return self.engine.model


@dataclass
class ExtractSummary:
    """What a run did, for the CLI's closing table."""

    output_dir: Path
    texts_planned: int
    texts_run: int
    texts_resumed: int
    tokens: int
    seconds: float
    shards: int
    truncated: int
    skipped: int


def parse_layers(spec: str) -> list[int]:
    """``"3,18,33"`` -> ``[3, 18, 33]``; ranges ``"0-3"`` allowed; order kept, duplicates refused."""
    layers: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                layers.extend(range(lo, hi + 1))
            else:
                layers.append(int(part))
        except ValueError as exc:
            raise UsageError(f"bad layer list {spec!r}: {part!r} is not an integer or a range a-b") from exc
    if not layers:
        raise UsageError("no layers given")
    if len(set(layers)) != len(layers):
        raise UsageError(f"layer list {spec!r} repeats a layer")
    if min(layers) < 0:
        raise UsageError(f"layer list {spec!r} has a negative layer")
    return layers


def plan_text_ids(dataset: Dataset, split: str, num_shards: int, shard_index: int) -> list[int]:
    """The sorted text ids this machine forwards: the split's texts, then its slice."""
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise UsageError(f"--shard-index must be in 0..{num_shards - 1} (got {shard_index})")
    return dataset.text_ids(split)[shard_index::num_shards]


def _check_options(opts: ExtractOptions, shape: DecoderShape) -> None:
    if opts.overlong not in OVERLONG:
        raise UsageError(f"unknown --overlong {opts.overlong!r}; choose one of {', '.join(OVERLONG)}")
    if opts.shard_size < 1:
        raise UsageError(f"--shard-size must be at least 1, got {opts.shard_size}")
    if opts.skip_first_tokens < 0:
        raise UsageError("--skip-first-tokens must be >= 0")
    parse_modes(",".join(opts.pooling))
    if tuple(opts.pooling[:2]) != DEFAULT_MODES:
        raise UsageError(f"--pooling must start with {','.join(DEFAULT_MODES)} (readout and validate pool by them); "
                         f"got {','.join(opts.pooling)}")
    bad = [i for i in opts.layers if i >= shape.num_layers]
    if bad:
        raise UsageError(
            f"layers {bad} out of range: {opts.model} has {shape.num_layers} decoder layers (0..{shape.num_layers - 1})"
        )


def _header(opts: ExtractOptions, shape: DecoderShape, dataset: Dataset, fingerprint: str, vllm_version: str,
            planned: int) -> CaptureInfo:
    return CaptureInfo(
        format=CAPTURE_FORMAT,
        model=opts.model,
        model_fingerprint=fingerprint,
        layers=list(opts.layers),
        layer_semantics=LAYER_SEMANTICS,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        dtype=opts.engine.dtype,
        pooling=list(opts.pooling),
        skip_first_tokens=opts.skip_first_tokens,
        dataset_sha256=dataset.sha256,
        vllm_version=vllm_version,
        split=opts.split,
        num_shards=opts.num_shards,
        shard_index=opts.shard_index,
        max_model_len=opts.engine.max_model_len,
        overlong=opts.overlong,
        texts_planned=planned,
        overlong_truncated=[],
        overlong_skipped=[],
        shards=[],
    )


_IDENTITY = ("format", "model_fingerprint", "layers", "hidden_size", "dtype", "pooling", "skip_first_tokens",
             "dataset_sha256", "split", "num_shards", "shard_index", "max_model_len", "overlong", "texts_planned")


def _resume(opts: ExtractOptions, fresh: CaptureInfo) -> CaptureInfo:
    """The header to continue from: an existing compatible activations dir's whole shards, or ``fresh``.

    Reads only; nothing is created or deleted here (see :func:`_make_output_dir`).
    """
    out = opts.output_dir
    if not out.parent.is_dir():
        raise StoreError(f"cannot create {out}: {out.parent} does not exist")
    cap_path = out / CAPTURE_FILE
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not opts.force:
        if not cap_path.is_file():
            raise StoreError(f"{out} exists and is not an activations dir; pass --force to reuse it")
        old = read_capture_info(cap_path)
        diffs = [k for k in _IDENTITY if getattr(old, k) != getattr(fresh, k)]
        if diffs:
            k = diffs[0]
            raise StoreError(
                f"{out} holds a different capture ({k}: {getattr(old, k)!r} there, {getattr(fresh, k)!r} now); "
                "choose another --output-dir or pass --force to start over"
            )
        fresh.shards = [s for s in old.shards if (out / s.file).is_file() and file_sha256(out / s.file) == s.sha256]
        fresh.overlong_truncated = old.overlong_truncated
        fresh.overlong_skipped = old.overlong_skipped
    return fresh


def _make_output_dir(opts: ExtractOptions) -> None:
    opts.output_dir.mkdir(exist_ok=True)
    if opts.force:
        for stale in opts.output_dir.glob("shard-*.safetensors"):
            stale.unlink()


@dataclass
class ExtractPlan:
    """What a run will do, decided before anything is started or written."""

    dataset: Dataset
    header: CaptureInfo
    spec: CaptureSpec
    planned: list[int]
    chunks: list[list[int]]  # the fixed shard plan: shard k holds chunks[k]
    todo: list[int]  # shard indices not yet on disk
    resumed: int  # texts in shards already on disk

    def work(self) -> list[tuple[int, list[TextRecord]]]:
        """The shards still to run, each with its texts in plan order."""
        return [(k, [self.dataset.texts[t] for t in self.chunks[k]]) for k in self.todo]


def plan_extract(opts: ExtractOptions) -> ExtractPlan:
    """Check every input and fix the shard plan; reads files (and imports vLLM for its version), writes nothing."""
    from ..dtype_choice import resolve_dtype
    from ..model_config import resolve_max_model_len
    from ..models import model_fingerprint, resolve_model

    opts.engine.check()
    dataset = load_dataset(opts.dataset_dir)
    model = resolve_model(opts.model)
    shape = read_decoder_shape(model)
    opts.engine = msgspec.structs.replace(opts.engine, model=model, dtype=resolve_dtype(opts.engine.dtype).dtype,
                                          max_model_len=resolve_max_model_len(model, opts.engine.max_model_len))
    _check_options(opts, shape)
    planned = plan_text_ids(dataset, opts.split, opts.num_shards, opts.shard_index)
    if not planned:
        raise UsageError(f"the dataset has no texts in split {opts.split!r} for shard {opts.shard_index}")
    chunks = [planned[i : i + opts.shard_size] for i in range(0, len(planned), opts.shard_size)]

    from ..vllm_ext import probes  # vLLM imported from here on

    fingerprint = model_fingerprint(opts.model)
    header = _resume(opts, _header(opts, shape, dataset, fingerprint, probes.check_version(), len(planned)))
    done = {s.file for s in header.shards}
    spec = CaptureSpec(engine=opts.engine, layers=list(opts.layers), hidden_size=shape.hidden_size,
                       num_layers=shape.num_layers, skip_first_tokens=opts.skip_first_tokens, overlong=opts.overlong,
                       pooling=tuple(opts.pooling))
    return ExtractPlan(
        dataset=dataset, header=header, spec=spec, planned=planned, chunks=chunks,
        todo=[k for k in range(len(chunks)) if shard_name(k) not in done],
        resumed=sum(len(ids) for k, ids in enumerate(chunks) if shard_name(k) in done),
    )


ShardSource = Callable[[CaptureSpec, list[tuple[int, list[TextRecord]]], ProgressFn | None],
                       contextlib.AbstractContextManager[Iterator[ShardResult]]]
"""Runs planned shards somewhere and yields each result once, in any order.

Entering the context starts the engine(s) (or connects to a cluster); nothing is
written before that succeeds. ``on_batch`` is called as texts complete. The one
process source is :func:`local_shards`; ``amygdala_vllm.cluster`` has the Ray one.
"""


def local_shards(llm: Any = None) -> ShardSource:
    """Run shards one after another on one engine in this process (``llm`` reused if given)."""

    @contextlib.contextmanager
    def source(spec: CaptureSpec, work: list[tuple[int, list[TextRecord]]],
               on_batch: ProgressFn | None) -> Iterator[Iterator[ShardResult]]:
        from .capture import ShardCapturer

        capturer = ShardCapturer(spec, llm)
        try:
            yield (capturer.capture(k, records, on_batch) for k, records in work)
        finally:
            capturer.close()

    return source


def run_extract(opts: ExtractOptions, progress: Callable[[int, int, int], ProgressFn] | None = None,
                *, llm: Any = None, source: ShardSource | None = None) -> ExtractSummary:
    """Run the whole stage; ``progress(total_texts, done_texts, done_tokens)`` returns a per-batch callback.

    ``llm`` reuses an engine already started with the amygdala worker extension
    (its model and dtype must be the ones in ``opts.engine``); by default one is started.
    ``source`` runs the shards elsewhere (``amygdala_vllm.extract.ray_shards``);
    whatever runs them, this process alone writes the files.
    """
    plan = plan_extract(opts)
    header = plan.header
    start = time.perf_counter()
    tokens_total = texts_run = 0
    if not plan.todo:
        _make_output_dir(opts)
        write_json(opts.output_dir / CAPTURE_FILE, header)
    else:
        bar = _Progress(progress, len(plan.planned), plan.resumed) if progress else None
        with (source or local_shards(llm))(plan.spec, plan.work(), bar) as results:
            _make_output_dir(opts)
            write_json(opts.output_dir / CAPTURE_FILE, header)
            if bar:
                bar.start()
            for res in results:
                _record(opts.output_dir, plan, res)
                tokens_total += res.tokens
                texts_run += res.planned
        if texts_run != sum(len(plan.chunks[k]) for k in plan.todo):
            raise CaptureError(f"only {texts_run} of the planned texts came back")  # a source's bug, never silent
    return ExtractSummary(
        output_dir=opts.output_dir,
        texts_planned=len(plan.planned),
        texts_run=texts_run,
        texts_resumed=plan.resumed,
        tokens=tokens_total,
        seconds=time.perf_counter() - start,
        shards=len(header.shards),
        truncated=len(header.overlong_truncated),
        skipped=len(header.overlong_skipped),
    )


class _Progress:
    """The caller's progress display, started once the engine(s) are up, so its rate leaves out start-up."""

    def __init__(self, progress: Callable[[int, int, int], ProgressFn], total: int, done: int):
        self._args = (progress, total, done)
        self._fn: ProgressFn | None = None

    def start(self) -> None:
        if self._fn is None:
            progress, total, done = self._args
            self._fn = progress(total, done, 0)

    def __call__(self, n_texts: int, n_tokens: int) -> None:
        self.start()
        assert self._fn is not None
        self._fn(n_texts, n_tokens)


def _record(out: Path, plan: ExtractPlan, res: ShardResult) -> None:
    """Write one shard (checked against the plan) and list it in ``capture.json``; never the same shard twice."""
    header, name = plan.header, shard_name(res.index)
    if res.index not in plan.todo or any(s.file == name for s in header.shards):
        raise CaptureError(f"shard {res.index} came back but was not due (already written or not planned)")
    skipped = set(res.skipped)
    expected = [t for t in plan.chunks[res.index] if t not in skipped]
    got = decode_shard(res.blob, f"shard {res.index} as received", tuple(header.pooling))
    if got.text_ids.tolist() != expected or got.mean.shape[1:] != (len(header.layers), header.hidden_size):
        raise CaptureError(f"shard {res.index} as received does not hold the planned texts and layers")
    entry = write_shard_bytes(out / name, res.blob, len(got))
    header.shards = sorted([*header.shards, entry], key=lambda s: s.file)
    header.overlong_truncated = sorted({*header.overlong_truncated, *res.truncated})
    header.overlong_skipped = sorted({*header.overlong_skipped, *res.skipped})
    write_json(out / CAPTURE_FILE, header)
