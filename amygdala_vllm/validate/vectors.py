"""Load a readout vectors file and its manifest, and check that they belong together.

The vectors file may be float32, float16 or bfloat16 (``reduce --dtype``).
numpy has no bfloat16 and ``safetensors.numpy`` refuses such files, so the few
lines of the safetensors layout (u64 header length, JSON header, raw
little-endian data) are read here; vLLM loads the same file with torch.
Every mismatch between the file and the manifest is a :class:`FormatError`
naming both paths: validating vectors against the wrong manifest would report
numbers about some other set of concepts.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..formats import READOUT_FORMAT, ReadoutManifest, read_input, read_json

__all__ = ["load_manifest", "load_vectors"]

_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8")}


def load_manifest(path: Path) -> ReadoutManifest:
    """Read and check a readout manifest (format, concepts, calibration coverage)."""
    man = read_json(Path(path), ReadoutManifest, expect_format=READOUT_FORMAT)
    if not man.concepts or not man.layers:
        raise FormatError(f"{path} lists no concepts or no layers")
    for c in man.concepts:
        missing = [l for l in man.layers if str(l) not in man.calibration.get(c, {})]
        if missing:
            raise FormatError(f"{path}: calibration of {c!r} lacks layer(s) {missing}")
    return man


def _read_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    raw = read_input(path, what="vectors file")
    try:
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
    except (struct.error, ValueError) as exc:
        raise FormatError(f"{path} is not a safetensors file: {exc}") from exc
    data = memoryview(raw)[8 + n :]
    meta = header.pop("__metadata__", None) or {}
    out: dict[str, np.ndarray] = {}
    for name, spec in header.items():
        try:
            tag, shape, (a, b) = spec["dtype"], list(spec["shape"]), spec["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{path}: malformed entry for tensor {name!r}") from exc
        buf = bytes(data[a:b])
        if tag == "BF16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif tag in _DTYPES:
            arr = np.frombuffer(buf, dtype=_DTYPES[tag])
        else:
            raise FormatError(f"{path}: tensor {name!r} has dtype {tag}; expected F32, F16 or BF16")
        if arr.size != int(np.prod(shape)):
            raise FormatError(f"{path}: tensor {name!r} holds {arr.size} values, shape {shape} needs {int(np.prod(shape))}")
        out[name] = arr.astype(np.float64).reshape(shape)
    return out, meta


def load_vectors(path: Path, manifest: ReadoutManifest, manifest_file: Path | None = None) -> np.ndarray:
    """float64 [E, L, H] in manifest concept and layer order, checked against ``manifest``."""
    path = Path(path)
    where = f"{path} and {manifest_file}" if manifest_file else str(path)
    tensors, meta = _read_tensors(path)
    want = {f"layer_{l}.vectors" for l in manifest.layers}
    missing, unexpected = sorted(want - set(tensors)), sorted(set(tensors) - want)
    if missing or unexpected:
        raise FormatError(f"manifest mismatch between {where}: missing key(s) {missing}, unexpected key(s) {unexpected}")
    for key, value in (("concepts", manifest.concepts), ("layers", manifest.layers)):
        if key in meta:
            try:
                found = json.loads(meta[key])
            except ValueError:
                found = meta[key]
            if found != value:
                raise FormatError(f"manifest mismatch between {where}: the file's {key} are {found}, the manifest's {value}")
    shape = [len(manifest.concepts), manifest.hidden_size]
    out = np.empty((len(manifest.concepts), len(manifest.layers), manifest.hidden_size), dtype=np.float64)
    for li, layer in enumerate(manifest.layers):
        t = tensors[f"layer_{layer}.vectors"]
        if list(t.shape) != shape:
            raise FormatError(
                f"manifest mismatch between {where}: layer_{layer}.vectors has shape {list(t.shape)}, "
                f"expected {shape} (concepts x hidden_size)"
            )
        if not np.isfinite(t).all():
            raise FormatError(f"{path}: layer_{layer}.vectors holds NaN or Inf")
        out[:, li, :] = t
    return out
