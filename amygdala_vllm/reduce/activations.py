"""Open one or more activations dirs as a single, checked, random-access store.

``extract`` may run on several machines, each writing its own activations dir.
``reduce`` treats them as one: every dir must describe the same capture (model
fingerprint, layers, hidden size, dtype, skip_first_tokens, layer semantics,
dataset), every text id may live in only one shard, and rows are read by text
id. Reading by id (not shard by shard) is what lets ``reduce`` visit texts in a
canonical order, so the float64 sums, and therefore the output bytes, do not
depend on how the texts were split into shards or dirs.

Only ``text_ids`` of every shard is read up front (an index of a few bytes per
text); the pooled rows are read through ``safe_open`` slices, opened and closed
per block, so memory (mapped pages included) holds the rows of one block and the
shards it touches, never a whole run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from ..errors import CaptureError, FormatError
from ..formats import CAPTURE_FILE, CaptureInfo, read_capture_info
from ..pooling_modes import DEFAULT_MODES

__all__ = ["Activations", "open_activations", "MUST_AGREE"]

log = logging.getLogger(__name__)

#: capture.json fields that every merged activations dir must share.
MUST_AGREE = (
    "model_fingerprint",
    "layers",
    "layer_semantics",
    "hidden_size",
    "skip_first_tokens",
    "dtype",
    "dataset_sha256",
)


@dataclass
class Activations:
    """Merged view over activations dirs: an id-sorted index into their shards."""

    dirs: tuple[Path, ...]
    info: CaptureInfo
    infos: tuple[CaptureInfo, ...]
    shard_paths: tuple[Path, ...]
    ids: np.ndarray  # int64 [M], ascending, every text id held by some shard
    shard_of: np.ndarray  # int32 [M], index into shard_paths
    row_of: np.ndarray  # int64 [M], row inside that shard

    def check_pooling(self, pooling: str) -> None:
        """Refuse a pooling that some dir did not capture."""
        for d, info in zip(self.dirs, self.infos):
            if pooling not in info.pooling:
                raise CaptureError(f"activations dir {d} holds pooling {info.pooling}, not {pooling!r}")

    @property
    def layers(self) -> list[int]:
        return list(self.info.layers)

    @property
    def hidden_size(self) -> int:
        return int(self.info.hidden_size)

    def present(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``ids`` some shard holds."""
        pos = np.searchsorted(self.ids, ids)
        pos = np.minimum(pos, max(len(self.ids) - 1, 0))
        return (self.ids[pos] == ids) if len(self.ids) else np.zeros(len(ids), dtype=bool)

    def read(self, ids: np.ndarray, pooling: str) -> np.ndarray:
        """Rows for ``ids`` (all present) as float64 [len(ids), L, H], checked finite."""
        pos = np.searchsorted(self.ids, ids)
        out = np.empty((len(ids), len(self.info.layers), self.hidden_size), dtype=np.float64)
        shards = self.shard_of[pos]
        for s in np.unique(shards):
            sel = np.flatnonzero(shards == s)
            rows = self.row_of[pos[sel]]
            lo, hi = int(rows.min()), int(rows.max()) + 1
            try:
                with safe_open(str(self.shard_paths[s]), framework="numpy") as f:
                    span = f.get_slice(pooling)[lo:hi]
            except (SafetensorError, OSError, ValueError) as exc:
                raise CaptureError(f"shard {self.shard_paths[s]}: cannot read {pooling!r}: {exc}") from exc
            got = span[rows - lo]
            bad = ~np.isfinite(got).reshape(len(sel), -1).all(axis=1)
            if bad.any():
                tid = int(ids[sel[np.flatnonzero(bad)[0]]])
                raise CaptureError(
                    f"shard {self.shard_paths[s]}: non-finite value (NaN or Inf) in {pooling!r} for text id {tid}"
                )
            out[sel] = got
        return out

    def read_num_tokens(self, ids: np.ndarray) -> np.ndarray:
        """Prompt lengths (``num_tokens``) of ``ids`` (all present) as int64 [len(ids)]."""
        pos = np.searchsorted(self.ids, ids)
        out = np.empty(len(ids), dtype=np.int64)
        shards = self.shard_of[pos]
        for s in np.unique(shards):
            sel = np.flatnonzero(shards == s)
            try:
                with safe_open(str(self.shard_paths[s]), framework="numpy") as f:
                    counts = f.get_tensor("num_tokens")
            except (SafetensorError, OSError, ValueError) as exc:
                raise CaptureError(f"shard {self.shard_paths[s]}: cannot read num_tokens: {exc}") from exc
            out[sel] = counts[self.row_of[pos[sel]]]
        return out

    def close(self) -> None:
        """Nothing to release: each read opens and closes its shards (kept for callers' symmetry)."""


def _load_info(d: Path) -> CaptureInfo:
    if not d.is_dir():
        raise CaptureError(f"activations dir {d} does not exist")
    if not (d / CAPTURE_FILE).is_file():
        raise CaptureError(f"activations dir {d} has no {CAPTURE_FILE} (run `amygdala-vllm extract` first)")
    try:
        info = read_capture_info(d / CAPTURE_FILE)
    except FormatError as exc:
        raise CaptureError(str(exc)) from exc
    if not info.shards:
        raise CaptureError(f"activations dir {d} holds no shards")
    return info


def _check_agree(dirs: Sequence[Path], infos: Sequence[CaptureInfo]) -> None:
    first = infos[0]
    for d, info in zip(dirs[1:], infos[1:]):
        for name in MUST_AGREE:
            a, b = getattr(first, name), getattr(info, name)
            if a != b:
                raise CaptureError(f"activations dirs disagree on {name}: {dirs[0]} has {a!r}, {d} has {b!r}")


def _shard_ids(path: Path, info: CaptureInfo, listed: int) -> np.ndarray:
    """Read a shard's text ids and check its shapes against capture.json."""
    if not path.is_file():
        raise CaptureError(f"shard {path} is listed in {CAPTURE_FILE} but does not exist")
    want = [len(info.layers), info.hidden_size]
    try:
        with safe_open(str(path), framework="numpy") as f:
            keys = set(f.keys())
            modes = list(dict.fromkeys([*DEFAULT_MODES, *info.pooling]))
            missing = sorted({"text_ids", *modes} - keys)
            if missing:
                raise CaptureError(f"shard {path}: missing key(s) {missing}")
            ids = np.asarray(f.get_tensor("text_ids"), dtype=np.int64)
            for key in modes:
                shape = list(f.get_slice(key).get_shape())
                if shape != [len(ids), *want]:
                    raise CaptureError(f"shard {path}: {key} has shape {shape}, expected {[len(ids), *want]}")
    except (SafetensorError, OSError) as exc:
        raise CaptureError(f"shard {path} is not a readable safetensors file: {exc}") from exc
    if len(ids) != listed:
        raise CaptureError(f"shard {path} holds {len(ids)} texts but {CAPTURE_FILE} lists {listed}")
    return ids


def _duplicates(ids: np.ndarray, shard_of: np.ndarray, paths: Sequence[Path]) -> None:
    order = np.argsort(ids, kind="stable")
    s_ids = ids[order]
    dup = np.flatnonzero(s_ids[1:] == s_ids[:-1])
    if len(dup):
        tid = int(s_ids[dup[0]])
        where = sorted({str(paths[shard_of[i]]) for i in order[np.flatnonzero(ids[order] == tid)]})
        few = sorted({int(s_ids[i]) for i in dup})[:5]
        raise CaptureError(
            f"{len(np.unique(s_ids[dup]))} text id(s) occur in more than one shard, e.g. {few}; "
            f"text id {tid} is in {', '.join(where)}"
        )


def open_activations(dirs: Sequence[Path], *, dataset_sha256: str | None = None) -> Activations:
    """Open and cross-check activations dirs; every inconsistency is a :class:`CaptureError`."""
    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise CaptureError("no activations dir given (pass --activations DIR, once per machine)")
    infos = [_load_info(d) for d in dirs]
    _check_agree(dirs, infos)
    info = infos[0]
    if dataset_sha256 is not None and info.dataset_sha256 != dataset_sha256:
        raise CaptureError(
            f"activations in {dirs[0]} were captured from dataset sha256 {info.dataset_sha256[:12]}..., "
            f"but the training data dir has {dataset_sha256[:12]}... (a different dataset)"
        )
    paths: list[Path] = []
    id_parts, shard_parts, row_parts = [], [], []
    for d, inf in zip(dirs, infos):
        for sh in inf.shards:
            p = d / sh.file
            ids = _shard_ids(p, info, sh.num_texts)
            id_parts.append(ids)
            shard_parts.append(np.full(len(ids), len(paths), dtype=np.int32))
            row_parts.append(np.arange(len(ids), dtype=np.int64))
            paths.append(p)
    ids = np.concatenate(id_parts)
    shard_of = np.concatenate(shard_parts)
    _duplicates(ids, shard_of, paths)
    order = np.argsort(ids, kind="stable")
    log.info("opened %d activations dir(s): %d shards, %d texts", len(dirs), len(paths), len(ids))
    return Activations(
        dirs=tuple(dirs),
        info=info,
        infos=tuple(infos),
        shard_paths=tuple(paths),
        ids=ids[order],
        shard_of=shard_of[order],
        row_of=np.concatenate(row_parts)[order],
    )
