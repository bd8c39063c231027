"""The readout vectors file, in one place: its bytes, its readers, its checks, its environment contract.

A vectors file is a pair: ``NAME.safetensors`` (``layer_{i}.vectors`` [E, H] per
hooked layer, rows in manifest concept order; ``__metadata__`` repeats format,
model, layers, concepts, method, pooling, layer semantics) and
``NAME.manifest.json`` (:class:`~amygdala_vllm.formats.ReadoutManifest`).
``reduce`` writes it, ``validate`` and ``readout`` read it as numpy, vLLM's
workers read it as torch; all of them come through here.

Bytes are produced here rather than by ``safetensors.numpy``: its Rust writer
emits ``__metadata__`` in hash-map order, which changes from one process to the
next, so two identical reductions would differ in bytes. The layout is small
(u64 little-endian header length, a JSON header, raw little-endian data); the
header is written with sorted keys and padded with spaces to 8 bytes, which
every safetensors reader accepts. bfloat16 is written (round to nearest even
from float32) and read (exactly, into float32) here too, since numpy has no
bfloat16 and ``safetensors.numpy`` refuses such files. The torch reader is
``torch.from_numpy`` over the same parse, so every reader sees the same values.

One process parses a file once: :func:`load` caches the checked pair by path
and file identity (inode, size, mtime; outputs are replaced by rename, so a
rewritten file is a new identity). In a single-process engine, ``validate``'s
offline pass, the agreement check and the worker all share that one read.

Serving finds the pair through :data:`ENV_VECTORS` and :data:`ENV_MANIFEST`;
:func:`readout_env` sets both and restores the previous values on exit,
:func:`env_values` is what a launcher adds to a child's environment, and
:func:`paths_from_env` / :func:`readout_requested` are the only readers of
the two variables. :func:`pair_paths` is the one rule for "the manifest
given, else the one beside the vectors".
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from . import atomic
from .errors import FormatError, ModelError, StoreError, UsageError
from .formats import (LAYER_SEMANTICS, READOUT_FORMAT_V1, READOUT_FORMATS, ReadoutManifest, ReadoutManifestV1, encode_json,
                      manifest_path_for, read_input, read_json)

if TYPE_CHECKING:
    import torch

__all__ = [
    "ENV_VECTORS",
    "ENV_MANIFEST",
    "DTYPES",
    "ReadoutVectors",
    "tensor_key",
    "manifest_path",
    "pair_paths",
    "cast",
    "safetensors_bytes",
    "encode_vectors",
    "encode_manifest",
    "write_pair",
    "parse_safetensors",
    "safetensors_metadata",
    "read_manifest",
    "vector_kind",
    "MEAN_DIFFERENCE",
    "WHITENED",
    "METHOD_KINDS",
    "check_model",
    "load",
    "load_torch",
    "paths_from_env",
    "readout_requested",
    "env_values",
    "readout_env",
]

#: The environment variables serving reads the vectors file and its manifest from.
ENV_VECTORS = "VLLM_READOUT_VECTORS"
ENV_MANIFEST = "VLLM_READOUT_MANIFEST"

#: ``reduce --dtype`` choices -> safetensors dtype tag.
DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
_NUMPY = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8")}


def tensor_key(layer: int) -> str:
    """The safetensors key of one hooked layer's ``[E, H]`` matrix."""
    return f"layer_{layer}.vectors"


def manifest_path(output: Path) -> Path:
    """``NAME.safetensors`` -> ``NAME.manifest.json`` beside it (``reduce --output``)."""
    return manifest_path_for(output, "--output")


def pair_paths(vectors: Path | str, manifest: Path | str | None = None, flag: str = "--vectors") -> tuple[Path, Path]:
    """``(vectors, manifest)`` as paths: ``manifest`` if given, else ``NAME.manifest.json`` beside the vectors.

    Every command and API that takes a vectors file and an optional manifest
    resolves the pair here, so the default is one rule; ``flag`` names the
    option in the error for a vectors path that is not ``NAME.safetensors``.
    """
    vectors = Path(vectors)
    return vectors, Path(manifest) if manifest is not None else manifest_path_for(vectors, flag)


# ----------------------------------------------------------------------- write


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest, ties to even
    return rounded.astype(np.uint16)


def _bf16_values(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def cast(x: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``(stored, as_float64)``: the array as written in ``dtype`` and its exact float64 value."""
    if dtype not in DTYPES:
        raise UsageError(f"unknown --dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "bfloat16":
        stored = _bf16_bits(x)
        return stored, _bf16_values(stored).astype(np.float64)
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


def encode_vectors(manifest: ReadoutManifest, stored: np.ndarray, dtype: str) -> bytes:
    """The ``.safetensors`` bytes for ``stored`` [E, L, H] (already :func:`cast` to ``dtype``)."""
    tag = DTYPES[dtype]
    tensors = {tensor_key(layer): (tag, stored[:, li, :]) for li, layer in enumerate(manifest.layers)}
    metadata = {
        "format": manifest.format,
        "model": manifest.model,
        "layers": msgspec.json.encode(manifest.layers).decode(),
        "concepts": msgspec.json.encode(manifest.concepts).decode(),
        "method": manifest.method,
        "pooling": manifest.pooling,
        "layer_semantics": LAYER_SEMANTICS,
    }
    return safetensors_bytes(tensors, metadata)


def encode_manifest(manifest: ReadoutManifest) -> bytes:
    """The manifest's JSON bytes; a version-1 manifest is written without the version-2 fields, as before."""
    if manifest.format == READOUT_FORMAT_V1:
        if manifest.vector_kind or manifest.auto is not None:
            raise ValueError(f"a {READOUT_FORMAT_V1} manifest cannot hold vector_kind or auto")
        v1 = ReadoutManifestV1(**{f: getattr(manifest, f) for f in ReadoutManifestV1.__struct_fields__})
        return encode_json(v1)
    return encode_json(manifest)


def write_pair(output: Path, vectors: bytes, manifest: ReadoutManifest, *, force: bool) -> Path:
    """Write ``output`` and its manifest as a pair (both renamed into place only when both are complete).

    Returns the manifest path. An error never leaves a partial or a mismatched pair.
    """
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
        tm.write_bytes(encode_manifest(manifest))
    return man


# ------------------------------------------------------------------------ read


def _header(raw: bytes, where: str) -> tuple[dict[str, Any], int]:
    try:
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
    except (struct.error, ValueError) as exc:
        raise FormatError(f"{where} is not a safetensors file: {exc}") from exc
    return header, 8 + n


def safetensors_metadata(raw: bytes, where: str = "safetensors bytes") -> dict[str, str]:
    """The ``__metadata__`` of in-memory safetensors bytes (a file, or a worker's RPC reply)."""
    return _header(raw, where)[0].get("__metadata__") or {}


def parse_safetensors(raw: bytes, where: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``({name: array}, metadata)``; float tensors come back exactly (bf16 and f16 as float32)."""
    header, start = _header(raw, where)
    data = memoryview(raw)[start:]
    meta = header.pop("__metadata__", None) or {}
    out: dict[str, np.ndarray] = {}
    for name, spec in header.items():
        try:
            tag, shape, (a, b) = spec["dtype"], [int(s) for s in spec["shape"]], spec["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: malformed entry for tensor {name!r}") from exc
        if not 0 <= a <= b <= len(data):
            raise FormatError(f"{where}: tensor {name!r} lies outside the file (offsets {a}..{b})")
        if tag == "BF16":
            arr = _bf16_values(np.frombuffer(data[a:b], dtype="<u2"))
        elif tag in _NUMPY:
            arr = np.frombuffer(data[a:b], dtype=_NUMPY[tag])
            arr = arr.astype(np.float32) if tag == "F16" else arr.astype(arr.dtype.newbyteorder("="))
        else:
            raise FormatError(f"{where}: tensor {name!r} has dtype {tag}; expected F32, F16 or BF16")
        if arr.size != int(np.prod(shape)):
            raise FormatError(f"{where}: tensor {name!r} holds {arr.size} values, shape {shape} needs {int(np.prod(shape))}")
        out[name] = arr.reshape(shape)
    return out, meta


def read_manifest(path: Path, *, calibrated: bool = False) -> ReadoutManifest:
    """Read a readout manifest (format, schema, some concepts and layers).

    ``calibrated`` also requires a calibration entry for every concept at every
    layer, which ``validate`` needs for z-scores; serving and ``readout`` work
    on raw projections and accept a manifest without one.
    """
    man = read_json(Path(path), ReadoutManifest, expect_format=READOUT_FORMATS)
    if not man.concepts or not man.layers:
        raise FormatError(f"{path} lists no concepts or no layers")
    if calibrated:
        for c in man.concepts:
            missing = [l for l in man.layers if str(l) not in man.calibration.get(c, {})]
            if missing:
                raise FormatError(f"{path}: calibration of {c!r} lacks layer(s) {missing}")
    return man


MEAN_DIFFERENCE = "mean-difference"
WHITENED = "whitened"
#: ``reduce --method`` -> what its vectors are (a projection keeps the kind of what it projects); a
#: version-1 manifest's ``method`` says it for every vector.
METHOD_KINDS = {"caa": MEAN_DIFFERENCE, "grand-mean": MEAN_DIFFERENCE, "lda": WHITENED, "mlda": WHITENED}


def vector_kind(manifest: ReadoutManifest, concept: str, layer: int) -> str:
    """``mean-difference`` or ``whitened``: what one vector is (a runtime that adds vectors to steer needs to know).

    Version 2 records it per vector; in version 1 the one ``method`` says it. Whitened
    directions (LDA, mlda) read better and may steer worse (docs/reduce.md).
    """
    recorded = manifest.vector_kind.get(concept, {}).get(str(layer))
    if recorded is not None:
        return recorded
    try:
        return METHOD_KINDS[manifest.method]
    except KeyError as exc:
        raise FormatError(f"manifest method {manifest.method!r} records no vector kind for {concept!r} at layer "
                          f"{layer}") from exc


def _check_pair(manifest: ReadoutManifest, tensors: dict[str, np.ndarray], meta: dict[str, str],
                vectors: Path, where: str) -> tuple[np.ndarray, ...]:
    """Keys, file metadata, shapes and finite values against the manifest; matrices in manifest layer order."""
    want = {tensor_key(l) for l in manifest.layers}
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
    out = []
    for layer in manifest.layers:
        t = tensors[tensor_key(layer)]
        if list(t.shape) != shape:
            raise FormatError(
                f"manifest mismatch between {where}: {tensor_key(layer)} has shape {list(t.shape)}, "
                f"expected {shape} (concepts x hidden_size)"
            )
        if not np.isfinite(t).all():
            raise FormatError(f"{vectors}: {tensor_key(layer)} holds NaN or Inf")
        t.flags.writeable = False  # shared by every reader in this process
        out.append(t)
    return tuple(out)


def check_model(manifest: ReadoutManifest, *, num_layers: int, hidden_size: int, model_fingerprint: str | None) -> None:
    """Refuse vectors made for another model: they would score without any error, and mean nothing."""
    if manifest.hidden_size != hidden_size:
        raise ModelError(f"vectors have hidden size {manifest.hidden_size} but the model's is {hidden_size}")
    bad = [i for i in manifest.layers if not 0 <= i < num_layers]
    if bad:
        raise ModelError(f"manifest hooks layers {bad} but the model has {num_layers} decoder layers")
    if model_fingerprint and manifest.model_fingerprint and manifest.model_fingerprint != model_fingerprint:
        raise ModelError(
            f"vectors were trained on model fingerprint {manifest.model_fingerprint} ({manifest.model}) "
            f"but this model's is {model_fingerprint}"
        )


@dataclass(frozen=True)
class ReadoutVectors:
    """A checked vectors file and its manifest; ``matrices`` are read-only [E, H] in manifest layer order."""

    manifest: ReadoutManifest
    matrices: tuple[np.ndarray, ...]
    vectors_path: Path
    manifest_path: Path

    def stacked(self) -> np.ndarray:
        """float64 ``[E, L, H]`` in manifest concept and layer order (a fresh array)."""
        return np.stack(self.matrices, axis=1).astype(np.float64)

    def torch(self) -> list[torch.Tensor]:
        """float32 torch tensors [E, H] in manifest layer order (torch imported here)."""
        import torch

        return [torch.from_numpy(np.array(m, dtype=np.float32)) for m in self.matrices]


def _identity(path: Path) -> tuple[str, int, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise FormatError(f"{path} does not exist") from exc
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror}") from exc
    return str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=4)
def _load_cached(vec_id: tuple[str, int, int, int], man_id: tuple[str, int, int, int],
                 vectors: Path, manifest: Path) -> ReadoutVectors:
    man = read_manifest(manifest)
    tensors, meta = parse_safetensors(read_input(vectors, what="vectors file"), str(vectors))
    matrices = _check_pair(man, tensors, meta, vectors, f"{vectors} and {manifest}")
    return ReadoutVectors(man, matrices, vectors, manifest)


def load(vectors: Path, manifest: Path | None = None, *, calibrated: bool = False) -> ReadoutVectors:
    """Read and check a vectors file against its manifest (default: ``NAME.manifest.json`` beside it).

    Every mismatch is a :class:`FormatError` naming both paths: scoring vectors
    against the wrong manifest would report numbers about other concepts.
    """
    vectors, manifest = pair_paths(vectors, manifest)
    if not vectors.is_file():
        raise FormatError(f"vectors file {vectors} does not exist")
    loaded = _load_cached(_identity(vectors), _identity(manifest), vectors, manifest)
    if calibrated:
        read_manifest(manifest, calibrated=True)
    return loaded


def load_torch(vectors: Path, manifest: Path, *, num_layers: int, hidden_size: int,
               model_fingerprint: str | None) -> tuple[ReadoutManifest, list[torch.Tensor]]:
    """Manifest and float32 ``[E, H]`` torch matrices in manifest layer order, checked against the model.

    The model is checked first: vectors made for another model are the likelier
    mistake, and the message then says so rather than naming a shape.
    """
    check_model(read_manifest(manifest), num_layers=num_layers, hidden_size=hidden_size,
                model_fingerprint=model_fingerprint)
    loaded = load(vectors, manifest)
    return loaded.manifest, loaded.torch()


# ------------------------------------------------------------------ environment


def readout_requested() -> bool:
    """Whether :data:`ENV_VECTORS` names a file: serving without it runs vLLM with readout refused."""
    return bool(os.environ.get(ENV_VECTORS))


def paths_from_env() -> tuple[Path, Path]:
    """The vectors and manifest paths named by :data:`ENV_VECTORS` and :data:`ENV_MANIFEST`."""
    vec, man = os.environ.get(ENV_VECTORS), os.environ.get(ENV_MANIFEST)
    if not vec or not man:
        half = f" ({ENV_VECTORS} is set but {ENV_MANIFEST} is not)" if vec else ""
        raise FormatError(f"readout needs both {ENV_VECTORS} and {ENV_MANIFEST} set{half}")
    return Path(vec), Path(man)


def env_values(vectors: Path, manifest: Path) -> dict[str, str]:
    """:data:`ENV_VECTORS` and :data:`ENV_MANIFEST` for a pair, as absolute paths (a child may run elsewhere)."""
    return {ENV_VECTORS: str(Path(vectors).resolve()), ENV_MANIFEST: str(Path(manifest).resolve())}


@contextlib.contextmanager
def readout_env(vectors: Path, manifest: Path) -> Iterator[None]:
    """Point :data:`ENV_VECTORS` / :data:`ENV_MANIFEST` at a pair (absolute paths); restore on exit.

    Workers spawned while it is active inherit the values (vLLM's worker
    processes read them at readout start, as serving does).
    """
    keys = env_values(vectors, manifest)
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
