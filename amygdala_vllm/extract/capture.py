"""The engine side of ``extract``: one engine, fed one planned shard at a time.

Shared by the one-process run (:mod:`.run`) and every Ray actor
(:mod:`.ray_shards`), so both tokenize the same texts with the engine's own
tokenizer and hand vLLM exactly the same token ids in exactly the same batches
(``batch_size`` texts per ``generate()`` call, cut the same way inside each
shard). That, plus one encoder for the file bytes (``shards.encode_shard``), is
what makes a shard captured by an actor on another machine byte-identical to
the one a single process writes.

Everything an engine needs travels as :class:`CaptureSpec`, a msgspec Struct,
so a remote actor receives it as JSON bytes (no pickle of our data).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from ..engine_settings import EngineSettings
from ..errors import CaptureError, ModelError
from ..formats import TextRecord
from ..pooling_modes import DEFAULT_MODES
from ..shards import Shard, encode_shard

__all__ = ["CaptureSpec", "ShardResult", "ShardCapturer", "BatchFn"]

BatchFn = Callable[[int, int], None]
"""Called after each batch with (texts in the batch, tokens in the batch)."""


class CaptureSpec(msgspec.Struct, forbid_unknown_fields=True):
    """How to start a capture engine and what to capture; the wire form handed to Ray actors.

    ``engine`` is resolved: its model is a folder or hub name, its dtype
    concrete and its ``max_model_len`` a number (what ``capture.json`` records).
    """

    engine: EngineSettings
    layers: list[int]
    hidden_size: int
    num_layers: int
    skip_first_tokens: int
    overlong: str
    pooling: tuple[str, ...] = DEFAULT_MODES

    @property
    def max_model_len(self) -> int:
        """The resolved context length; prompts are cut to one less (room for the sampled token)."""
        if self.engine.max_model_len is None:
            raise CaptureError("a capture spec needs a resolved max_model_len")
        return self.engine.max_model_len


@dataclass
class ShardResult:
    """One captured shard: its file bytes and what the driver records in ``capture.json``."""

    index: int
    blob: bytes  # the shard file's exact bytes
    num_texts: int  # texts in the file (planned minus skipped)
    planned: int  # texts planned for the shard
    tokens: int
    truncated: list[int]
    skipped: list[int]


class ShardCapturer:
    """A capture engine (started here, or ``llm`` reused) and its capture session."""

    def __init__(self, spec: CaptureSpec, llm: Any = None):
        from ..vllm_ext.engine import CaptureSession, model_info, open_engine

        self.spec = spec
        self.llm = llm if llm is not None else open_engine(spec.engine, spec.layers)
        info = model_info(self.llm)
        if info["hidden_size"] != spec.hidden_size or info["num_layers"] != spec.num_layers:
            raise ModelError(
                f"vLLM built a decoder of {info['num_layers']} layers x {info['hidden_size']} but the config says "
                f"{spec.num_layers} x {spec.hidden_size}"
            )
        self.tokenizer = self.llm.get_tokenizer()
        self.session = CaptureSession(self.llm, spec.layers, spec.skip_first_tokens, tuple(spec.pooling))

    def close(self) -> None:
        """Stop pooling on the workers (the engine itself is freed with this object)."""
        self.session.close()

    def capture(self, index: int, records: Sequence[TextRecord], on_batch: BatchFn | None = None) -> ShardResult:
        """Forward one shard's texts (in plan order) and return the encoded shard."""
        spec = self.spec
        kept, prompts, truncated, skipped = self._tokenize(records)
        L, H = len(spec.layers), spec.hidden_size
        arrays = {name: np.zeros((len(prompts), L, H), np.float32) for name in spec.pooling}
        ntok = np.zeros(len(prompts), np.int32)
        tokens = 0
        batch = spec.engine.batch_size
        for b in range(0, len(prompts), batch):
            pooled = self.session.run(prompts[b : b + batch])
            for j, p in enumerate(pooled, start=b):
                ntok[j] = p.num_tokens
                for name, arr in arrays.items():
                    arr[j] = p.pooled[name]
            batch_tokens = int(sum(p.num_tokens for p in pooled))
            tokens += batch_tokens
            if on_batch:
                on_batch(len(pooled), batch_tokens)
        _check_finite(arrays, kept, index)
        more = {k: v for k, v in arrays.items() if k not in DEFAULT_MODES}
        blob = encode_shard(Shard(np.array(kept, np.int64), ntok, arrays["mean"], arrays["last"], more))
        return ShardResult(index=index, blob=blob, num_texts=len(kept), planned=len(records), tokens=tokens,
                           truncated=truncated, skipped=skipped)

    def _tokenize(self, records: Sequence[TextRecord]) -> tuple[list[int], list[list[int]], list[int], list[int]]:
        spec = self.spec
        limit = spec.max_model_len - 1  # room for the one sampled token
        kept: list[int] = []
        prompts: list[list[int]] = []
        truncated: list[int] = []
        skipped: list[int] = []
        for rec in records:
            toks = list(self.tokenizer.encode(rec.text))
            if len(toks) > limit:
                if spec.overlong == "error":
                    raise CaptureError(
                        f"text {rec.id} ({rec.key}) has {len(toks)} tokens, over --max-model-len "
                        f"{spec.max_model_len} - 1; use --overlong truncate|skip or a larger --max-model-len"
                    )
                if spec.overlong == "skip":
                    skipped.append(rec.id)
                    continue
                truncated.append(rec.id)
                toks = toks[:limit]
            kept.append(rec.id)
            prompts.append(toks)
        return kept, prompts, truncated, skipped


def _check_finite(arrays: dict[str, np.ndarray], ids: list[int], shard: int) -> None:
    bad = ~np.logical_and.reduce([np.isfinite(a).all(axis=(1, 2)) for a in arrays.values()])
    if bad.any():
        tid = ids[int(np.nonzero(bad)[0][0])]
        raise CaptureError(f"shard {shard}: non-finite activations for text {tid} (try --dtype fp32 or bf16)")
