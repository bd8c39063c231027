"""``extract``: forward every unique text of a dataset through vLLM once, pool, shard.

Work is cut into fixed shards before anything runs: the planned text ids
(sorted, then this machine's slice ``ids[shard_index::num_shards]``) are split
into shards of ``shard_size`` texts, and each shard into batches of
``batch_size``. Because that plan depends only on the dataset and the flags, a
rerun after a crash skips the shards already on disk and feeds vLLM exactly
the same batches as an uninterrupted run, so the files come out byte-identical.
``capture.json`` is rewritten (atomically) after every shard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import Dataset, load_dataset
from .errors import CaptureError, ModelError, StoreError, UsageError
from .formats import CAPTURE_FILE, CAPTURE_FORMAT, LAYER_SEMANTICS, CaptureInfo, read_json, write_json
from .model_config import DecoderShape, read_decoder_shape
from .shards import Shard, file_sha256, shard_name, write_shard

__all__ = ["ExtractOptions", "ExtractSummary", "ProgressFn", "plan_text_ids", "run_extract", "parse_layers"]

log = logging.getLogger(__name__)

OVERLONG = ("truncate", "skip", "error")
SPLITS = ("train", "heldout", "all")

ProgressFn = Callable[[int, int], None]
"""Called after each batch with (texts in the batch, tokens in the batch)."""


@dataclass
class ExtractOptions:
    """Everything ``extract`` needs; the CLI fills it from flags."""

    dataset_dir: Path
    output_dir: Path
    model: str
    layers: list[int]
    dtype: str = "auto"  # resolved before anything is written: capture.json records bf16/fp16/fp32
    batch_size: int = 16
    shard_size: int = 256
    max_model_len: int | None = None  # None: the model's own limit, capped (model_config.resolve_max_model_len)
    kv_cache_gb: float = 1.0
    max_num_batched_tokens: int | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    split: str = "all"
    num_shards: int = 1
    shard_index: int = 0
    overlong: str = "truncate"
    skip_first_tokens: int = 1
    enforce_eager: bool = True
    force: bool = False
    engine_extra: dict[str, Any] = field(default_factory=dict)


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
    if opts.batch_size < 1 or opts.shard_size < 1:
        raise UsageError("--batch-size and --shard-size must be >= 1")
    if opts.skip_first_tokens < 0:
        raise UsageError("--skip-first-tokens must be >= 0")
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
        dtype=opts.dtype,
        pooling=["mean", "last"],
        skip_first_tokens=opts.skip_first_tokens,
        dataset_sha256=dataset.sha256,
        vllm_version=vllm_version,
        split=opts.split,
        num_shards=opts.num_shards,
        shard_index=opts.shard_index,
        max_model_len=opts.max_model_len,
        overlong=opts.overlong,
        texts_planned=planned,
        overlong_truncated=[],
        overlong_skipped=[],
        shards=[],
    )


_IDENTITY = ("format", "model_fingerprint", "layers", "hidden_size", "dtype", "skip_first_tokens", "dataset_sha256",
             "split", "num_shards", "shard_index", "max_model_len", "overlong", "texts_planned")


def _prepare_output(opts: ExtractOptions, fresh: CaptureInfo) -> CaptureInfo:
    """Resume from an existing compatible activations dir, or start a new one."""
    out = opts.output_dir
    if not out.parent.is_dir():
        raise StoreError(f"cannot create {out}: {out.parent} does not exist")
    cap_path = out / CAPTURE_FILE
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not cap_path.is_file():
            if not opts.force:
                raise StoreError(f"{out} exists and is not an activations dir; pass --force to reuse it")
        elif opts.force:
            pass
        else:
            old = read_json(cap_path, CaptureInfo, expect_format=CAPTURE_FORMAT)
            diffs = [k for k in _IDENTITY if getattr(old, k) != getattr(fresh, k)]
            if diffs:
                k = diffs[0]
                raise StoreError(
                    f"{out} holds a different capture ({k}: {getattr(old, k)!r} there, {getattr(fresh, k)!r} now); "
                    "choose another --output-dir or pass --force to start over"
                )
            kept = [s for s in old.shards if (out / s.file).is_file() and file_sha256(out / s.file) == s.sha256]
            fresh.shards = kept
            fresh.overlong_truncated = old.overlong_truncated
            fresh.overlong_skipped = old.overlong_skipped
            return fresh
    out.mkdir(exist_ok=True)
    if opts.force:
        for stale in out.glob("shard-*.safetensors"):
            stale.unlink()
    return fresh


def run_extract(opts: ExtractOptions, progress: Callable[[int, int, int], ProgressFn] | None = None,
                *, llm: Any = None) -> ExtractSummary:
    """Run the whole stage; ``progress(total_texts, done_texts, done_tokens)`` returns a per-batch callback.

    ``llm`` reuses an engine already started with the amygdala worker extension
    (its model and dtype must be the ones in ``opts``); by default one is started.
    """
    from .dtype_choice import resolve_dtype
    from .model_config import resolve_max_model_len
    from .models import model_fingerprint, resolve_model

    dataset = load_dataset(opts.dataset_dir)
    opts.model = resolve_model(opts.model)
    shape = read_decoder_shape(opts.model)
    opts.dtype = resolve_dtype(opts.dtype).dtype
    opts.max_model_len = resolve_max_model_len(opts.model, opts.max_model_len)
    _check_options(opts, shape)
    planned = plan_text_ids(dataset, opts.split, opts.num_shards, opts.shard_index)
    if not planned:
        raise UsageError(f"the dataset has no texts in split {opts.split!r} for shard {opts.shard_index}")
    chunks = [planned[i : i + opts.shard_size] for i in range(0, len(planned), opts.shard_size)]

    from .vllm_ext import probes  # vLLM imported from here on

    fingerprint = model_fingerprint(opts.model)
    header = _prepare_output(opts, _header(opts, shape, dataset, fingerprint, probes.vllm_version(), len(planned)))
    done = {s.file for s in header.shards}
    todo = [(k, ids) for k, ids in enumerate(chunks) if shard_name(k) not in done]
    resumed = sum(len(ids) for k, ids in enumerate(chunks) if shard_name(k) in done)
    write_json(opts.output_dir / CAPTURE_FILE, header)
    start = time.perf_counter()
    tokens_total = 0
    texts_run = 0
    if todo:
        tokens_total, texts_run = _run_shards(opts, dataset, header, todo, len(planned), resumed, progress, llm)
    return ExtractSummary(
        output_dir=opts.output_dir,
        texts_planned=len(planned),
        texts_run=texts_run,
        texts_resumed=resumed,
        tokens=tokens_total,
        seconds=time.perf_counter() - start,
        shards=len(header.shards),
        truncated=len(header.overlong_truncated),
        skipped=len(header.overlong_skipped),
    )


def _run_shards(opts: ExtractOptions, dataset: Dataset, header: CaptureInfo, todo: list[tuple[int, list[int]]],
                total: int, resumed: int, progress: Callable[[int, int, int], ProgressFn] | None,
                llm: Any) -> tuple[int, int]:
    from .vllm_ext.engine import CaptureSession, EngineOptions, model_info, open_engine

    llm = llm if llm is not None else open_engine(
        EngineOptions(
            model=opts.model,
            dtype=opts.dtype,
            max_model_len=opts.max_model_len,
            kv_cache_bytes=int(opts.kv_cache_gb * (1 << 30)),
            max_num_seqs=max(opts.batch_size, 1),
            max_num_batched_tokens=opts.max_num_batched_tokens,
            tensor_parallel_size=opts.tensor_parallel_size,
            pipeline_parallel_size=opts.pipeline_parallel_size,
            enforce_eager=opts.enforce_eager,
            # Compiled graphs never run Python hooks: the layers are tapped by a custom op instead.
            tap_layers=None if opts.enforce_eager else list(header.layers),
            extra=opts.engine_extra,
        )
    )
    info = model_info(llm)
    if info["hidden_size"] != header.hidden_size or info["num_layers"] != header.num_hidden_layers:
        raise ModelError(
            f"vLLM built a decoder of {info['num_layers']} layers x {info['hidden_size']} but the config says "
            f"{header.num_hidden_layers} x {header.hidden_size}"
        )
    tokenizer = llm.get_tokenizer()
    assert opts.max_model_len is not None  # resolved in run_extract
    limit = opts.max_model_len - 1  # room for the one sampled token
    session = CaptureSession(llm, header.layers, opts.skip_first_tokens)
    on_batch = progress(total, resumed, 0) if progress else None
    tokens_total = texts_run = 0
    truncated, skipped = set(header.overlong_truncated), set(header.overlong_skipped)
    try:
        for k, ids in todo:
            kept_ids: list[int] = []
            prompts: list[list[int]] = []
            for tid in ids:
                toks = list(tokenizer.encode(dataset.texts[tid].text))
                if len(toks) > limit:
                    if opts.overlong == "error":
                        raise CaptureError(
                            f"text {tid} ({dataset.texts[tid].key}) has {len(toks)} tokens, over --max-model-len "
                            f"{opts.max_model_len} - 1; use --overlong truncate|skip or a larger --max-model-len"
                        )
                    if opts.overlong == "skip":
                        skipped.add(tid)
                        continue
                    truncated.add(tid)
                    toks = toks[:limit]
                kept_ids.append(tid)
                prompts.append(toks)
            L, H = len(header.layers), header.hidden_size
            mean = np.zeros((len(prompts), L, H), np.float32)
            last = np.zeros((len(prompts), L, H), np.float32)
            ntok = np.zeros(len(prompts), np.int32)
            for b in range(0, len(prompts), opts.batch_size):
                pooled = session.run(prompts[b : b + opts.batch_size])
                for j, p in enumerate(pooled, start=b):
                    mean[j], last[j], ntok[j] = p.mean, p.last, p.num_tokens
                batch_tokens = int(sum(p.num_tokens for p in pooled))
                tokens_total += batch_tokens
                if on_batch:
                    on_batch(len(pooled), batch_tokens)
            _check_finite(mean, last, kept_ids, k)
            entry = write_shard(opts.output_dir / shard_name(k), Shard(np.array(kept_ids, np.int64), ntok, mean, last))
            header.shards = sorted([*header.shards, entry], key=lambda s: s.file)
            header.overlong_truncated = sorted(truncated)
            header.overlong_skipped = sorted(skipped)
            write_json(opts.output_dir / CAPTURE_FILE, header)
            texts_run += len(ids)
    finally:
        session.close()
    return tokens_total, texts_run


def _check_finite(mean: np.ndarray, last: np.ndarray, ids: list[int], shard: int) -> None:
    bad = ~(np.isfinite(mean).all(axis=(1, 2)) & np.isfinite(last).all(axis=(1, 2)))
    if bad.any():
        tid = ids[int(np.nonzero(bad)[0][0])]
        raise CaptureError(f"shard {shard}: non-finite activations for text {tid} (try --dtype fp32 or bf16)")
