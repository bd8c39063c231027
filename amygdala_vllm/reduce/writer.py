"""Write the vectors file and its manifest together, deterministically and atomically.

The safetensors bytes are produced here rather than by ``safetensors.numpy``:
its Rust writer emits ``__metadata__`` in hash-map order, which changes from
one process to the next, so two identical reductions would differ in bytes. The
format is small (u64 little-endian header length, a JSON header, the raw
little-endian tensor data) and this writer emits the header with sorted keys,
padded with spaces to 8 bytes, which every safetensors reader accepts. It also
writes bfloat16, which numpy has no dtype for (round to nearest even from
float32; such a file loads with ``safetensors.torch``/vLLM, not with
``safetensors.numpy``).

Both outputs are written under temporary names and renamed only when both are
complete, so an error never leaves a partial or a mismatched pair.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import StoreError, UsageError
from ..formats import ReadoutManifest, encode_json, manifest_path_for

__all__ = ["DTYPES", "manifest_path", "cast", "safetensors_bytes", "write_outputs"]

#: --dtype choices -> safetensors dtype tag.
DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def manifest_path(output: Path) -> Path:
    """``NAME.safetensors`` -> ``NAME.manifest.json`` beside it."""
    return manifest_path_for(output, "--output")


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest, ties to even
    return rounded.astype(np.uint16)


def cast(x: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``(stored, as_float64)``: the array as written in ``dtype`` and its exact float64 value."""
    if dtype not in DTYPES:
        raise UsageError(f"unknown --dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "bfloat16":
        stored = _bf16_bits(x)
        value = (stored.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        return stored, value
    stored = np.ascontiguousarray(x, dtype=np.dtype(dtype).newbyteorder("<"))
    return stored, stored.astype(np.float64)


def safetensors_bytes(tensors: Mapping[str, tuple[str, np.ndarray]], metadata: Mapping[str, str]) -> bytes:
    """Serialise ``{name: (dtype tag, array)}`` with a sorted, deterministic header."""
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        tag, arr = tensors[name]
        data = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": tag, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def write_outputs(output: Path, vectors: bytes, manifest: ReadoutManifest, *, force: bool) -> Path:
    """Write ``output`` and its manifest as a pair; return the manifest path."""
    output = Path(output)
    man = manifest_path(output)
    if not output.parent.is_dir():
        raise StoreError(f"cannot write {output}: directory {output.parent} does not exist")
    for p in (output, man):
        if p.exists() and not force:
            raise StoreError(f"{p} already exists (pass --force to overwrite)")
        if p.exists() and not p.is_file():
            raise StoreError(f"{p} exists and is not a file")
    with atomic.temp_path(output) as tv, atomic.temp_path(man) as tm:
        tv.write_bytes(vectors)
        tm.write_bytes(encode_json(manifest))
    return man
