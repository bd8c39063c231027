"""The typer application and the one place where errors become exit codes.

Commands stay thin: parse flags, call one library function, print a summary.
Every command is wrapped by :func:`command`, which turns an
:class:`~amygdala_vllm.errors.AmygdalaError` into ``Type: message`` on stderr
and exit status 1 (and Ctrl-C into exit 130), so bad input never shows a
traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import AmygdalaError

__all__ = ["app", "model_app", "command", "console", "err_console", "QUIETED_VLLM_ENV"]

QUIETED_VLLM_ENV = "_AMYGDALA_VLLM_QUIETED"
"""Set when :func:`command` (not the user) set ``VLLM_LOGGING_LEVEL``."""

app = typer.Typer(
    name="amygdala-vllm",
    help=(
        "Train emotion readout vectors for a model served by vLLM.\n\n"
        "pairs (memory graph -> dataset) -> extract (vLLM capture -> activations) -> "
        "reduce (CAA/LDA -> vectors + manifest) -> validate (vLLM readout -> report)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
model_app = typer.Typer(help="Prepare models for offline use.", no_args_is_help=True)
app.add_typer(model_app, name="model")

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def command(fn: F) -> F:
    """Wrap a command so deliberate errors print one line and exit non-zero."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        # vLLM logs every engine step's housekeeping at INFO/WARNING; a CLI user wants the
        # progress bar and the summary. Set VLLM_LOGGING_LEVEL yourself to see them.
        if "VLLM_LOGGING_LEVEL" not in os.environ:
            os.environ["VLLM_LOGGING_LEVEL"] = "ERROR"
            os.environ[QUIETED_VLLM_ENV] = "1"  # `serve` hands vLLM its own logging back
            logging.getLogger("vllm").setLevel(logging.ERROR)  # it also propagates to our root handler
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\.")
        try:
            return fn(*args, **kwargs)
        except AmygdalaError as exc:
            err_console.print(f"[bold red]{type(exc).__name__}[/]: {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; completed output is kept, partial output was discarded")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
