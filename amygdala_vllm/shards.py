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
from safetensors.numpy import load, load_file, save

from . import atomic
from .errors import CaptureError
from .formats import ShardInfo

__all__ = ["Shard", "shard_name", "encode_shard", "decode_shard", "write_shard", "write_shard_bytes", "read_shard",
           "file_sha256", "POOLINGS"]

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


def encode_shard(shard: Shard) -> bytes:
    """The exact bytes of a shard file: one encoder, so every writer (one process, the driver of
    a Ray run) produces byte-identical files for equal arrays."""
    return save({"text_ids": shard.text_ids, "num_tokens": shard.num_tokens, "mean": shard.mean, "last": shard.last})


def decode_shard(blob: bytes, what: str = "shard") -> Shard:
    """Parse shard bytes (a file's content or a remote worker's reply), naming ``what`` on any problem."""
    try:
        tensors = load(blob)
    except (SafetensorError, ValueError) as exc:
        raise CaptureError(f"{what} is not readable safetensors: {exc}") from exc
    return _checked(tensors, what)


def write_shard_bytes(path: Path, blob: bytes, num_texts: int) -> ShardInfo:
    """Atomically write encoded shard bytes (of ``num_texts`` texts) to ``path``; return its ``capture.json`` entry."""
    path = Path(path)
    atomic.write_bytes(path, blob)
    return ShardInfo(file=path.name, num_texts=num_texts, sha256=hashlib.sha256(blob).hexdigest())


def write_shard(path: Path, shard: Shard) -> ShardInfo:
    """Atomically write ``shard`` to ``path``; return its entry for ``capture.json``."""
    return write_shard_bytes(path, encode_shard(shard), len(shard))


def read_shard(path: Path) -> Shard:
    """Load a shard, naming the file on any problem."""
    path = Path(path)
    try:
        tensors = load_file(str(path))
    except FileNotFoundError as exc:
        raise CaptureError(f"shard {path} does not exist") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise CaptureError(f"shard {path} is not a readable safetensors file: {exc}") from exc
    return _checked(tensors, f"shard {path}")


def _checked(tensors: dict[str, np.ndarray], what: str) -> Shard:
    missing = [k for k in _KEYS if k not in tensors]
    unexpected = sorted(set(tensors) - set(_KEYS))
    if missing or unexpected:
        raise CaptureError(f"{what}: missing key(s) {missing}, unexpected key(s) {unexpected}")
    try:
        return Shard(tensors["text_ids"], tensors["num_tokens"], tensors["mean"], tensors["last"])
    except CaptureError as exc:
        raise CaptureError(f"{what}: {exc}") from exc
