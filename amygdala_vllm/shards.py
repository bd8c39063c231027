"""Reading and writing activation shards (``shard-NNNNN.safetensors``).

A shard holds, for ``n`` texts, ``text_ids`` int64 [n], ``num_tokens`` int32 [n]
and one float32 [n, L, H] per pooling mode, named by the mode
(:mod:`.pooling_modes`): always ``mean`` and ``last``, plus any other mode the
capture asked for (``capture.json`` lists them under ``pooling``). A version-1
shard is therefore a version-2 shard of modes mean and last, byte for byte. Shards are written
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
from .pooling_modes import DEFAULT_MODES, MODES

__all__ = ["Shard", "shard_name", "encode_shard", "decode_shard", "write_shard", "write_shard_bytes", "read_shard",
           "file_sha256", "POOLINGS"]

POOLINGS = tuple(MODES)
_IDS = ("text_ids", "num_tokens")


class Shard:
    """The arrays of one shard, validated for shape and dtype; ``more`` holds modes beyond mean and last."""

    __slots__ = ("text_ids", "num_tokens", "arrays")

    def __init__(self, text_ids: np.ndarray, num_tokens: np.ndarray, mean: np.ndarray, last: np.ndarray,
                 more: dict[str, np.ndarray] | None = None):
        self.text_ids = np.ascontiguousarray(text_ids, dtype=np.int64)
        self.num_tokens = np.ascontiguousarray(num_tokens, dtype=np.int32)
        raw = {"mean": mean, "last": last, **(more or {})}
        self.arrays = {k: np.ascontiguousarray(raw[k], dtype=np.float32) for k in MODES if k in raw}
        unknown = sorted(set(raw) - set(MODES))
        if unknown:
            raise CaptureError(f"unknown pooling {unknown[0]!r}; choose one of {', '.join(POOLINGS)}")
        n = self.text_ids.shape[0]
        if self.text_ids.ndim != 1 or self.num_tokens.shape != (n,):
            raise CaptureError("shard text_ids/num_tokens must be 1-D of equal length")
        shape = self.mean.shape
        if self.mean.ndim != 3 or shape[0] != n or any(a.shape != shape for a in self.arrays.values()):
            got = " and ".join(str(a.shape) for a in self.arrays.values())
            raise CaptureError(f"shard {'/'.join(self.arrays)} must be [n, L, H] with n={n}; got {got}")

    @property
    def mean(self) -> np.ndarray:
        return self.arrays["mean"]

    @property
    def last(self) -> np.ndarray:
        return self.arrays["last"]

    @property
    def modes(self) -> tuple[str, ...]:
        """The pooling modes this shard holds, in registry order."""
        return tuple(self.arrays)

    def __len__(self) -> int:
        return int(self.text_ids.shape[0])

    def pooled(self, pooling: str) -> np.ndarray:
        """The [n, L, H] array for ``pooling`` (a mode of :mod:`.pooling_modes` this shard holds)."""
        if pooling not in self.arrays:
            raise CaptureError(f"unknown pooling {pooling!r}; choose one of {', '.join(self.arrays)}")
        return self.arrays[pooling]


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
    return save({"text_ids": shard.text_ids, "num_tokens": shard.num_tokens, **shard.arrays})


def decode_shard(blob: bytes, what: str = "shard", modes: tuple[str, ...] = DEFAULT_MODES) -> Shard:
    """Parse shard bytes (a file's content or a remote worker's reply) holding exactly ``modes``, naming ``what``."""
    try:
        tensors = load(blob)
    except (SafetensorError, ValueError) as exc:
        raise CaptureError(f"{what} is not readable safetensors: {exc}") from exc
    return _checked(tensors, what, modes)


def write_shard_bytes(path: Path, blob: bytes, num_texts: int) -> ShardInfo:
    """Atomically write encoded shard bytes (of ``num_texts`` texts) to ``path``; return its ``capture.json`` entry."""
    path = Path(path)
    atomic.write_bytes(path, blob)
    return ShardInfo(file=path.name, num_texts=num_texts, sha256=hashlib.sha256(blob).hexdigest())


def write_shard(path: Path, shard: Shard) -> ShardInfo:
    """Atomically write ``shard`` to ``path``; return its entry for ``capture.json``."""
    return write_shard_bytes(path, encode_shard(shard), len(shard))


def read_shard(path: Path, modes: tuple[str, ...] = DEFAULT_MODES) -> Shard:
    """Load a shard holding exactly the pooling ``modes`` (``capture.json``'s ``pooling``), naming the file on any problem."""
    path = Path(path)
    try:
        tensors = load_file(str(path))
    except FileNotFoundError as exc:
        raise CaptureError(f"shard {path} does not exist") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise CaptureError(f"shard {path} is not a readable safetensors file: {exc}") from exc
    return _checked(tensors, f"shard {path}", modes)


def _checked(tensors: dict[str, np.ndarray], what: str, modes: tuple[str, ...]) -> Shard:
    keys = (*_IDS, *dict.fromkeys([*DEFAULT_MODES, *modes]))
    missing = [k for k in keys if k not in tensors]
    unexpected = sorted(set(tensors) - set(keys))
    if missing or unexpected:
        raise CaptureError(f"{what}: missing key(s) {missing}, unexpected key(s) {unexpected}")
    more = {k: v for k, v in tensors.items() if k not in (*_IDS, *DEFAULT_MODES)}
    try:
        return Shard(tensors["text_ids"], tensors["num_tokens"], tensors["mean"], tensors["last"], more)
    except CaptureError as exc:
        raise CaptureError(f"{what}: {exc}") from exc
