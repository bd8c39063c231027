"""Reading and writing activation shards (``shard-NNNNN.safetensors``).

A shard holds, for ``n`` texts, ``text_ids`` int64 [n], ``num_tokens`` int32 [n],
``mean`` float32 [n, L, H] and ``last`` float32 [n, L, H]. Shards are written
atomically (temporary name, then rename), so a shard file that exists is whole.
Plain numpy + safetensors: no torch, no vLLM, so ``reduce`` runs anywhere.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from . import atomic
from .errors import CaptureError
from .formats import ShardInfo

__all__ = ["Shard", "shard_name", "write_shard", "read_shard", "file_sha256", "POOLINGS"]

POOLINGS = ("mean", "last")
_KEYS = ("text_ids", "num_tokens", "mean", "last")


class Shard:
    """The arrays of one shard, validated for shape and dtype."""

    __slots__ = ("text_ids", "num_tokens", "mean", "last")

    def __init__(self, text_ids: np.ndarray, num_tokens: np.ndarray, mean: np.ndarray, last: np.ndarray):
        self.text_ids = np.ascontiguousarray(text_ids, dtype=np.int64)
        self.num_tokens = np.ascontiguousarray(num_tokens, dtype=np.int32)
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)
        self.last = np.ascontiguousarray(last, dtype=np.float32)
        n = self.text_ids.shape[0]
        if self.text_ids.ndim != 1 or self.num_tokens.shape != (n,):
            raise CaptureError("shard text_ids/num_tokens must be 1-D of equal length")
        if self.mean.ndim != 3 or self.mean.shape[0] != n or self.last.shape != self.mean.shape:
            raise CaptureError(
                f"shard mean/last must be [n, L, H] with n={n}; got {self.mean.shape} and {self.last.shape}"
            )

    def __len__(self) -> int:
        return int(self.text_ids.shape[0])

    def pooled(self, pooling: str) -> np.ndarray:
        """The [n, L, H] array for ``pooling`` ('mean' or 'last')."""
        if pooling not in POOLINGS:
            raise CaptureError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        return self.mean if pooling == "mean" else self.last


def shard_name(index: int) -> str:
    """File name of shard number ``index``."""
    return f"shard-{index:05d}.safetensors"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_shard(path: Path, shard: Shard) -> ShardInfo:
    """Atomically write ``shard`` to ``path``; return its entry for ``capture.json``."""
    path = Path(path)
    tensors = {
        "text_ids": shard.text_ids,
        "num_tokens": shard.num_tokens,
        "mean": shard.mean,
        "last": shard.last,
    }
    with atomic.temp_path(path) as tmp:
        save_file(tensors, str(tmp))
    return ShardInfo(file=path.name, num_texts=len(shard), sha256=file_sha256(path))


def read_shard(path: Path) -> Shard:
    """Load a shard, naming the file on any problem."""
    path = Path(path)
    try:
        tensors = load_file(str(path))
    except FileNotFoundError as exc:
        raise CaptureError(f"shard {path} does not exist") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise CaptureError(f"shard {path} is not a readable safetensors file: {exc}") from exc
    missing = [k for k in _KEYS if k not in tensors]
    unexpected = sorted(set(tensors) - set(_KEYS))
    if missing or unexpected:
        raise CaptureError(f"shard {path}: missing key(s) {missing}, unexpected key(s) {unexpected}")
    try:
        return Shard(tensors["text_ids"], tensors["num_tokens"], tensors["mean"], tensors["last"])
    except CaptureError as exc:
        raise CaptureError(f"shard {path}: {exc}") from exc
