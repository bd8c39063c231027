"""``amygdala-vllm serve``: vLLM's own OpenAI server with per-request emotion readout.

Thin: check the vectors against the model (one line and exit 1 on a mismatch,
before vLLM loads anything), build the command line and environment
(``serve/launch.py``), then replace this process with the server, so signals
and the exit status are vLLM's own. Every flag this command does not know goes
to vLLM unchanged.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Optional

import typer

from ..defaults import VECTORS_FILE
from ._app import QUIETED_VLLM_ENV, app, command, console

__all__ = ["serve_command"]


@app.command("serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@command
def serve_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model to serve (HF folder or hub id; `smollm2` = the bundled offline model)."),
    vectors: Path = typer.Option(VECTORS_FILE, "--vectors", help="NAME.safetensors written by `reduce`."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Readout manifest (default: NAME.manifest.json beside --vectors)."),
    eager: bool = typer.Option(False, "--eager", help="Eager mode with forward hooks (adds --enforce-eager) instead of the compiled graph with tapped layers (the default)."),
    print_command: bool = typer.Option(False, "--print-command", help="Print the environment and command line (the plain form) instead of starting the server."),
) -> None:
    """Serve MODEL with vLLM's OpenAI API; requests opt in to scores with vllm_xargs {"amygdala": "all"}.

    Any other flag goes to vLLM (e.g. --port 8000 --max-model-len 4096 --kv-cache-memory-bytes 1G).
    """
    from ..models import resolve_model
    from ..serve.launch import check_vectors, check_vllm_install, own_env, serve_argv, serve_env, serve_settings

    vllm_args = list(ctx.args)
    check_vllm_install(vllm_args)
    model_path = resolve_model(model)
    man, manifest_path = check_vectors(model_path, vectors, manifest)
    settings = serve_settings(model_path, vllm_args, eager=eager)
    argv = serve_argv(settings, vllm_args, list(man.layers))
    env = serve_env(vectors, manifest_path, os.environ)
    if env.pop(QUIETED_VLLM_ENV, None):  # a server's log is its user interface: vLLM's own level
        env.pop("VLLM_LOGGING_LEVEL", None)
    if print_command:
        shown = {k: env[k] for k in own_env(vectors, manifest_path, os.environ)}
        console.print(" ".join(f"{k}={shlex.quote(v)}" for k, v in shown.items()) + " \\\n  "
                      + " ".join(shlex.quote(a) for a in argv), highlight=False, soft_wrap=True)
        return
    console.print(f"serving {model_path} with readout of {len(man.concepts)} concepts at layers {man.layers} "
                  f"({'compiled, tapped' if settings.compile else 'eager'})", highlight=False)
    os.execve(argv[0], argv, env)
