"""The file formats that connect the stages, each a msgspec Struct, defined once.

These are the contract between ``pairs``, ``extract``, ``reduce`` and
``validate`` (and the vLLM ReadoutManager that loads the vectors). Every struct
forbids unknown fields so a typo or a file from another tool fails early, and
every top-level file carries a ``format`` string with a version; change a
format only together with its version.

Every format string of the tool and every upgrade of an old version lives
here, so "which versions exist and how does an old file read" is answered in
one file: the stage-connecting formats with their Structs, and the version
strings plus v1 -> v2 upgrades of the three formats a stage owns, whose
Structs stay beside that stage (``readout --json``: ``readout/render/_document.py``;
``report.json``: ``validate/schema.py``; ``usage.json``: ``usage.py``). Those
Structs stay there not for an import cycle (there would be none) but because
they describe one stage's output and ``report.json``'s tree alone is ~250
lines. The RPC reply frame's ``REPLY_VERSION`` stays with its codec in
``vllm_ext/rpc.py``: a frame between processes of one install, never a file.

Layer convention, everywhere: layer ``i`` (0-based) is the residual stream after
decoder layer ``i`` (``hidden_states + residual`` of ``layers[i]``'s output),
which equals HF transformers' ``hidden_states[i + 1]`` for ``i < L - 1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from . import atomic
from .errors import AmygdalaError, FormatError, UsageError

__all__ = [
    "PAIRS_FORMAT",
    "CAPTURE_FORMAT",
    "CAPTURE_FORMAT_V1",
    "READOUT_FORMAT",
    "READOUT_FORMAT_V1",
    "READOUT_FORMATS",
    "SCORES_FORMAT",
    "SCORES_FORMAT_V1",
    "VALIDATE_FORMAT",
    "VALIDATE_FORMAT_V1",
    "USAGE_FORMAT",
    "upgrade_scores_v1",
    "upgrade_validate_v1",
    "LAYER_SEMANTICS",
    "EmotionCounts",
    "DatasetStats",
    "DatasetInfo",
    "TextRecord",
    "ExampleRecord",
    "ShardInfo",
    "CaptureInfo",
    "ConceptCounts",
    "Calibration",
    "CvScore",
    "LayerChoice",
    "AutoChoice",
    "ReadoutManifestV1",
    "ReadoutManifest",
    "DATASET_FILE",
    "TEXTS_FILE",
    "EXAMPLES_FILE",
    "CAPTURE_FILE",
    "read_json",
    "read_capture_info",
    "write_json",
    "encode_json",
    "read_jsonl",
    "encode_jsonl",
    "manifest_path_for",
    "read_input",
]

PAIRS_FORMAT = "amygdala-pairs/1"
#: Version 2: ``pooling`` lists the modes of ``pooling_modes`` the shards hold (mean and last always,
#: any other mode on request), one shard tensor per mode named by the mode. Version 1 held exactly
#: mean and last under those names, so a version-1 dir reads as version 2 unchanged.
CAPTURE_FORMAT = "amygdala-capture/2"
CAPTURE_FORMAT_V1 = "amygdala-capture/1"
#: Version 2 adds what ``reduce --method auto`` chose (``auto``) and what each vector is (``vector_kind``).
#: A reduction with one fixed method has neither and is written as version 1, byte for byte as before;
#: readers take both (a version-1 file reads as a version 2 without those fields).
READOUT_FORMAT = "amygdala-readout/2"
READOUT_FORMAT_V1 = "amygdala-readout/1"
READOUT_FORMATS = (READOUT_FORMAT, READOUT_FORMAT_V1)
#: ``readout --json`` (``readout/render/_document.py``). Version 2 keys the pooled scores by pooling-mode name
#: (``pooled``) where version 1 had the fields ``mean`` and ``last`` (:func:`upgrade_scores_v1`).
SCORES_FORMAT = "amygdala-readout-scores/2"
SCORES_FORMAT_V1 = "amygdala-readout-scores/1"
#: ``validate``'s ``report.json`` (``validate/schema.py``). Version 2 keys per-layer metrics by pooling-mode
#: name (``pooled``) where version 1 had ``mean`` and ``last`` (:func:`upgrade_validate_v1`).
VALIDATE_FORMAT = "amygdala-validate/2"
VALIDATE_FORMAT_V1 = "amygdala-validate/1"
#: ``usage.json`` beside each stage's output (``usage.py``).
USAGE_FORMAT = "amygdala-usage/1"
LAYER_SEMANTICS = "residual_out"

DATASET_FILE = "dataset.json"
TEXTS_FILE = "texts.jsonl"
EXAMPLES_FILE = "examples.jsonl"
CAPTURE_FILE = "capture.json"

Polarity = Literal["positive", "negative"]
Split = Literal["train", "heldout"]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """Base for every format struct: unknown fields are an error."""


# ----------------------------------------------------------------- dataset dir


class EmotionCounts(_Strict):
    """How many examples of each kind one emotion has in the dataset."""

    positive: int
    negative: int
    heldout_positive: int
    heldout_negative: int


class DatasetStats(_Strict):
    """What happened to the source nodes: read, skipped (by reason), texts kept."""

    nodes_read: int
    nodes_skipped: dict[str, int]
    texts: int


class DatasetInfo(_Strict):
    """``dataset.json``: the dataset's header, written by ``pairs``."""

    format: str
    source: dict[str, Any]
    options: dict[str, Any]
    emotions: dict[str, EmotionCounts]
    stats: DatasetStats
    # Ids of texts given as neutral (``pairs --neutral-texts``): in texts.jsonl, in no example, always train.
    # Absent in older files (read as empty); ``reduce`` then derives the neutral set from the examples.
    neutral: list[int] = []


class TextRecord(_Strict):
    """One line of ``texts.jsonl``: a unique text the model will see (tags removed)."""

    id: int
    key: str
    text: str
    sha256: str


class ExampleRecord(_Strict):
    """One line of ``examples.jsonl``: the seed's (emotion, polarity, text)."""

    emotion: str
    polarity: Polarity
    text_id: int
    score: float | None
    split: Split


# ------------------------------------------------------------ activations dir


class ShardInfo(_Strict):
    """One complete shard of pooled activations listed in ``capture.json``."""

    file: str
    num_texts: int
    sha256: str


class CaptureInfo(_Strict):
    """``capture.json``: what an activations dir holds and how it was made.

    Shards are ``shard-NNNNN.safetensors`` with ``text_ids`` int64 [n],
    ``num_tokens`` int32 [n] and one float32 [n, L, H] per mode in ``pooling``.
    """

    format: str
    model: str
    model_fingerprint: str
    layers: list[int]
    layer_semantics: str
    hidden_size: int
    num_hidden_layers: int
    dtype: str
    pooling: list[str]
    skip_first_tokens: int
    dataset_sha256: str
    vllm_version: str
    split: str
    num_shards: int
    shard_index: int
    max_model_len: int
    overlong: str
    texts_planned: int
    overlong_truncated: list[int]
    overlong_skipped: list[int]
    shards: list[ShardInfo]


# -------------------------------------------------------------------- vectors


class ConceptCounts(_Strict):
    """Train examples behind one concept's vector."""

    positive: int
    negative: int


class Calibration(_Strict):
    """Projection statistics of one concept at one layer over its train texts.

    ``z = (projection - (pos_mean + neg_mean) / 2) / pooled_std`` centres a raw
    dot product, whose constant offset and scale differ at every layer.
    """

    pos_mean: float
    neg_mean: float
    pooled_std: float
    raw_norm: float
    # Per-token class means of the projection over the train texts (positions >= skip_first_tokens,
    # every token weighted alike); older manifests lack them. Per-token z = (score - mid) / half-gap.
    token_pos_mean: float | None = None
    token_neg_mean: float | None = None


class CvScore(_Strict):
    """One candidate method at one layer: its figures averaged over the cross-validation folds (train texts)."""

    method: str
    one_vs_rest_auroc: float | None  # median over concepts
    sibling_auroc: float | None  # median over concepts of the mean over nearest siblings
    top1: float | None  # identification among all concepts
    merit: float  # the ranking score (reduce/variants.py); -1 when nothing could be scored


class LayerChoice(_Strict):
    """What ``reduce --method auto`` chose at one layer, and every candidate's cross-validated figures."""

    method: str
    cv: list[CvScore]


class AutoChoice(_Strict):
    """``reduce --method auto``: how the method was chosen per layer (train split only, never held-out)."""

    folds: int
    seed: int
    rule: str  # the ranking rule in words
    layers: dict[str, LayerChoice]  # str(layer) -> choice
    fallback: dict[str, str] = {}  # concept -> why it is plain CAA at every layer (too few texts for the folds)


class ReadoutManifestV1(_Strict):
    """``NAME.manifest.json`` version 1: the file ``VLLM_READOUT_MANIFEST`` points at."""

    format: str
    concepts: list[str]
    layers: list[int]
    layer_semantics: str
    hidden_size: int
    model: str
    model_fingerprint: str
    pooling: str
    method: str
    counts: dict[str, ConceptCounts]
    calibration: dict[str, dict[str, Calibration]]
    skip_first_tokens: int = 1
    dropped: dict[str, str] = {}
    dataset_sha256: str = ""
    vllm_version: str = ""
    method_options: dict[str, float] = {}  # e.g. shrinkage, neutral_variance, remove_shared (docs/reduce.md)
    capture_dtype: str = ""  # the model dtype the activations were captured in (capture.json's dtype)


class ReadoutManifest(ReadoutManifestV1):
    """``NAME.manifest.json`` (version 2, or a version 1 read with these fields empty)."""

    # concept -> str(layer) -> "mean-difference" | "whitened" (reduce/variants.py KINDS); empty in version 1,
    # where ``method`` says it for every vector (``vectors_file.vector_kind`` answers for both).
    vector_kind: dict[str, dict[str, str]] = {}
    auto: AutoChoice | None = None


# -------------------------------------------------------------------- helpers


def manifest_path_for(vectors: Path, flag: str = "--vectors") -> Path:
    """``NAME.safetensors`` -> ``NAME.manifest.json`` beside it: where ``reduce`` writes it.

    The one naming rule shared by ``reduce``, ``validate``, ``readout`` and the
    ``Readout`` API; ``flag`` names the option in the error.
    """
    vectors = Path(vectors)
    if vectors.suffix != ".safetensors":
        raise UsageError(f"{flag} must name a .safetensors file (NAME.safetensors), got {vectors}")
    return vectors.with_suffix(".manifest.json")


T = TypeVar("T")

_encoder = msgspec.json.Encoder(order="deterministic")


def encode_json(obj: Any) -> bytes:
    """Deterministic, human-readable JSON (sorted keys of dicts, 2-space indent)."""
    return msgspec.json.format(_encoder.encode(obj), indent=2) + b"\n"


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as formatted JSON."""
    atomic.write_bytes(Path(path), encode_json(obj))


def read_input(path: Path, *, what: str = "", error: type[AmygdalaError] = FormatError) -> bytes:
    """The bytes of an input file; a missing or unreadable one becomes ``error`` naming it.

    ``what`` describes the file in the message ("memory file", "vectors file").
    """
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise error(f"{name} does not exist") from exc
    except OSError as exc:
        raise error(f"cannot read {name}: {exc.strerror}") from exc


def read_json(path: Path, type_: type[T], *, expect_format: str | tuple[str, ...] | None = None) -> T:
    """Read and validate a JSON file; any problem becomes a :class:`FormatError`.

    ``expect_format`` is the one ``format`` accepted, or a tuple of those accepted.
    """
    path = Path(path)
    data = read_input(path)
    if expect_format is not None:
        try:
            raw = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise FormatError(f"{path} is not valid JSON: {exc}") from exc
        found = raw.get("format") if isinstance(raw, dict) else None
        accepted = (expect_format,) if isinstance(expect_format, str) else expect_format
        if found not in accepted:
            want = " or ".join(repr(f) for f in accepted)
            raise FormatError(f"{path} has format {found!r}, expected {want}")
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.DecodeError as exc:  # includes ValidationError
        raise FormatError(f"{path} does not match the {type_.__name__} schema: {exc}") from exc


def _pooled_from_mean_last(entry: dict) -> dict:
    """A version-1 entry with fields ``mean``/``last`` as version 2's ``pooled`` mapping (mode -> value)."""
    rest = dict(entry)
    pooled = {k: rest.pop(k) for k in ("mean", "last") if k in rest}
    return {**rest, "pooled": pooled}


def upgrade_scores_v1(doc: dict) -> dict:
    """A decoded ``amygdala-readout-scores/1`` document as version 2: ``mean``/``last`` move into ``pooled``."""
    return {**_pooled_from_mean_last(doc), "format": SCORES_FORMAT}


def upgrade_validate_v1(doc: dict) -> dict:
    """A decoded ``amygdala-validate/1`` document as version 2: ``mean``/``last`` per layer move into ``pooled``."""
    concepts = [dict(c, layers=[_pooled_from_mean_last(l) for l in c.get("layers", [])]) for c in doc.get("concepts", [])]
    return dict(doc, format=VALIDATE_FORMAT, concepts=concepts)


def read_capture_info(path: Path) -> CaptureInfo:
    """Read ``capture.json`` of either version; a version-1 file comes back as the version 2 it equals."""
    info = read_json(path, CaptureInfo, expect_format=(CAPTURE_FORMAT, CAPTURE_FORMAT_V1))
    if info.format == CAPTURE_FORMAT_V1:
        if info.pooling != ["mean", "last"]:
            raise FormatError(f"{path}: a {CAPTURE_FORMAT_V1} capture must list pooling mean, last; got {info.pooling}")
        info.format = CAPTURE_FORMAT
    return info


def encode_jsonl(records: Iterable[Any]) -> bytes:
    """One compact JSON document per line, in the given order."""
    return b"".join(_encoder.encode(r) + b"\n" for r in records)


def read_jsonl(path: Path, type_: type[T]) -> Iterator[T]:
    """Yield validated records of a JSONL file, naming the line on error."""
    path = Path(path)
    decoder = msgspec.json.Decoder(type_)
    try:
        fh = open(path, "rb")
    except FileNotFoundError as exc:
        raise FormatError(f"{path} does not exist") from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise FormatError(f"{path}:{lineno}: {exc}") from exc
