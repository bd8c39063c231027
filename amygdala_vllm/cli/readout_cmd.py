"""``amygdala-vllm readout``: score one text (or chat) with the vectors loaded inside vLLM.

Thin: read the input, check every flag against the manifest *before* the
engine starts (a typo must not cost a model load), score through
:class:`amygdala_vllm.readout.scorer.Readout`, hand the scores to
:mod:`amygdala_vllm.readout.render`. vLLM is imported only when scoring starts.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from .. import atomic
from ..defaults import VECTORS_FILE
from ..errors import StoreError, UsageError
from ..vectors_file import pair_paths, read_manifest
from ._app import app, command, console, err_console
from ._dtype import announce_dtype, choose_dtype
from ._engine_flags import (ENGINE_DEFAULTS, Compile, Dtype, KvCacheGb, MaxModelLen, PipelineParallel, TensorParallel,
                            engine_settings)

if TYPE_CHECKING:
    from ..formats import ReadoutManifest
    from ..readout.render import ChatMessage, ScoredText

__all__ = ["readout_command", "read_input"]

TERMINAL_CONCEPTS = 4
TABLE_MAX_TOKENS = 48


def read_input(text: Optional[str], file: Optional[Path], stdin: io.TextIOBase) -> str:
    """The text to score: TEXT, ``--file``, or stdin (TEXT ``-``, or no TEXT and a piped stdin)."""
    if file is not None and text not in (None, "-"):
        raise UsageError("give TEXT or --file, not both")
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"--file {file} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --file {file}: {exc}") from None
    elif text == "-" or (text is None and not stdin.isatty()):
        value = stdin.read()
    elif text is None:
        raise UsageError("no text given: pass TEXT, --file FILE, or pipe text on stdin")
    else:
        value = text
    if not value.strip():
        raise UsageError("no text given: the input is empty")
    return value


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """While the engine runs, send everything written to stdout to stderr instead.

    With ``--json`` stdout belongs to the document, but vLLM logs to stdout,
    also from its engine process; pointing file descriptor 1 at stderr (not
    just ``sys.stdout``) covers the child processes started meanwhile.
    """
    if not active:
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        try:
            fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else -1
            err = sys.__stderr__.fileno() if sys.__stderr__ is not None else -1
        except (OSError, ValueError, io.UnsupportedOperation):
            fd = err = -1
        if fd >= 0 and err >= 0:
            sys.__stdout__.flush()
            saved = os.dup(fd)
            os.dup2(err, fd)

            def restore() -> None:
                sys.__stderr__.flush()
                os.dup2(saved, fd)
                os.close(saved)

            stack.callback(restore)
        yield


@app.command("readout")
@command
def readout_command(
    text: Optional[str] = typer.Argument(None, help="Text to score. '-' (or nothing, with piped input) reads stdin."),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Read the text from FILE (UTF-8)."),
    chat: bool = typer.Option(False, "--chat", help='Input is a JSON list of {"role", "content"} messages, rendered with the model\'s chat template.'),
    vectors: Path = typer.Option(VECTORS_FILE, "--vectors", help="NAME.safetensors written by `reduce`."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Readout manifest (default: NAME.manifest.json beside --vectors)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model to run (default: the manifest's model)."),
    concepts: Optional[str] = typer.Option(None, "--concepts", help=f"Comma-separated concepts to show (default: terminal the {TERMINAL_CONCEPTS} with the largest |mean z|; --json/--html all, strongest first)."),
    layer: Optional[str] = typer.Option(None, "--layer", help="Hooked layer to show, or 'all' (default: the middle hooked layer)."),
    view: str = typer.Option("auto", "--view", help=f"Terminal view: table, strip, or auto (table up to {TABLE_MAX_TOKENS} tokens)."),
    json_out: bool = typer.Option(False, "--json", help="Print the scores as one JSON document (format: docs/readout.md) on stdout, and nothing else."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained HTML heat map to FILE."),
    dtype: Dtype = ENGINE_DEFAULTS.dtype,
    max_model_len: MaxModelLen = ENGINE_DEFAULTS.max_model_len,
    tensor_parallel_size: TensorParallel = ENGINE_DEFAULTS.tensor_parallel_size,
    pipeline_parallel_size: PipelineParallel = ENGINE_DEFAULTS.pipeline_parallel_size,
    kv_cache_gb: KvCacheGb = ENGINE_DEFAULTS.kv_cache_gb,
    compile_: Compile = ENGINE_DEFAULTS.compile,
) -> None:
    """Score a text with the readout vectors inside vLLM and show z per token and concept."""
    from ..readout.render import check_concepts, parse_chat, resolve_layers

    if view not in ("auto", "table", "strip"):
        raise UsageError(f"--view must be auto, table or strip, got {view!r}")
    vectors, manifest_path = pair_paths(vectors, manifest)
    if not vectors.is_file():
        raise UsageError(f"--vectors {vectors} does not exist (run `amygdala-vllm reduce`, or pass --vectors)")
    if not manifest_path.is_file():
        raise UsageError(f"manifest {manifest_path} does not exist (pass --manifest)")
    man = read_manifest(manifest_path)
    choice = choose_dtype(dtype)
    # one text, one engine call: batch 1
    engine_opts = engine_settings(model=model or man.model, dtype=choice.dtype, max_model_len=max_model_len,
                                  kv_cache_gb=kv_cache_gb, batch_size=1, tensor_parallel_size=tensor_parallel_size,
                                  pipeline_parallel_size=pipeline_parallel_size, compile=compile_)
    layers = resolve_layers(man, layer)
    wanted = None
    if concepts is not None:
        wanted = check_concepts(man, [c.strip() for c in concepts.split(",") if c.strip()])
    if html_out is not None and not html_out.parent.is_dir():
        raise StoreError(f"cannot write {html_out}: directory {html_out.parent} does not exist")

    source = str(file) if file is not None else "input"
    raw_input = read_input(text, file, sys.stdin)
    messages = parse_chat(raw_input, source=source) if chat else None

    from ..readout.scorer import Readout

    announce_dtype(choice)
    err_console.print(f"scoring with [bold]{model or man.model}[/] in vLLM ...", highlight=False)
    with _stdout_to_stderr(json_out):
        with Readout(vectors, manifest_path, engine=engine_opts) as engine:
            if messages is not None:
                ids = engine.chat_token_ids([{"role": m.role, "content": m.content} for m in messages])
                scored = engine.score_token_ids([ids])[0]
            else:
                scored = engine.score_texts([raw_input])[0]
    shown_text = "".join(scored.tokens) if messages is not None else raw_input
    _show(scored, man, layers, wanted, model or man.model, shown_text, messages, view, json_out, html_out)


def _show(
    scored: ScoredText, man: ReadoutManifest, layers: list[int], wanted: list[str] | None, model: str,
    shown_text: str, messages: list[ChatMessage] | None, view: str, json_out: bool, html_out: Path | None,
) -> None:
    """Render the outputs asked for: terminal view unless --json, then JSON and HTML."""
    from ..readout.render import build_view, colour_strip, encode_scores, render_html, score_table, to_document

    if not json_out:
        term = build_view(scored, man, layers=layers, concepts=wanted, top_k=TERMINAL_CONCEPTS, model=model)
        use_table = view == "table" or (view == "auto" and len(term.tokens) <= TABLE_MAX_TOKENS)
        console.print(score_table(term) if use_table else colour_strip(term))
    full = build_view(scored, man, layers=layers, concepts=wanted, model=model)
    if html_out is not None:
        atomic.write_text(html_out, render_html(full, title=f"amygdala readout: {model}"))
        (err_console if json_out else console).print(f"wrote [bold]{html_out}[/]", highlight=False)
    if json_out:
        typer.echo(encode_scores(to_document(full, shown_text, messages)).decode("utf-8"), nl=False)
