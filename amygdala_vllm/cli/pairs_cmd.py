"""``amygdala-vllm pairs``: memory graph -> deduplicated emotion training set.

Thin on purpose: parse flags, call :func:`amygdala_vllm.pairs.build.build_dataset`,
print a summary table. Semantics live in ``amygdala_vllm/pairs/`` and docs/pairs.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..defaults import DATASET_DIR
from ..pairs.build import PairsOptions, PairsSummary, build_dataset
from ..pairs.mcp.client import DEFAULT_CONCURRENCY
from ..pairs.mcp.mapping import parse_json_args
from ..pairs.mcp.target import DEFAULT_TRANSPORT, ServerTarget
from ..pairs.select import Rules
from ..pairs.sources import SourceSpec
from ..usage import Meter
from ._app import app, command, console
from ._defaults import defaults_of
from ._usage import finish_usage

__all__ = ["pairs", "summary_table"]

_SRC = "Source (at most one; none = the bundled sample graph)"
_SRV = "MCP server (with --memory-mcp-url or --memory-mcp-command)"
_MCP = "MCP mapping (with --memory-mcp-url or --memory-mcp-command)"
_SEL = "Selection"
_EMO = "Emotions"
_OUT = "Output"


def summary_table(summary: PairsSummary) -> Table:
    """Per emotion: train/held-out positives and negatives; then skipped nodes and left-out emotions."""
    info = summary.info
    table = Table(title=f"dataset {summary.output_dir}", show_footer=True)
    table.add_column("emotion", footer="total")
    cols = ("positive", "negative", "heldout_positive", "heldout_negative")
    totals = [sum(getattr(c, col) for c in info.emotions.values()) for col in cols]
    for title, total in zip(("positives", "negatives", "held-out pos", "held-out neg"), totals):
        table.add_column(title, justify="right", footer=str(total))
    for name, c in info.emotions.items():
        table.add_row(name, *(str(getattr(c, col)) for col in cols))
    return table


def _print_summary(summary: PairsSummary) -> None:
    info = summary.info
    console.print(summary_table(summary))
    skipped = ", ".join(f"{k} {v}" for k, v in info.stats.nodes_skipped.items()) or "none"
    console.print(
        f"nodes read {info.stats.nodes_read}; skipped: {skipped}; "
        f"texts {info.stats.texts}; examples {summary.examples}"
        + (f"; neutral texts {len(info.neutral)}" if info.neutral else ""),
        highlight=False,
    )
    if summary.dropped:
        left = "; ".join(f"{k} ({v})" for k, v in summary.dropped.items())
        console.print(f"emotions left out: {left}", highlight=False, soft_wrap=True)


@contextmanager
def _fetch_bar() -> Iterator[Callable[[int, int], None]]:
    """A progress bar of nodes fetched from an MCP server, shown once the listing is known."""
    bar = Progress(
        TextColumn("[bold]pairs[/] fetch"), BarColumn(), MofNCompleteColumn(), TextColumn("nodes"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )
    task: list[int] = []

    def update(done: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task("fetch", total=total))
        bar.update(task[0], completed=done)

    try:
        yield update
    except BaseException:
        bar.live.transient = True  # the error, not a half bar, is the one line left
        raise
    finally:
        bar.stop()


RULES = defaults_of(Rules)
PAIRS = defaults_of(PairsOptions)
SERVER = defaults_of(ServerTarget)


@app.command("pairs")
@command
def pairs(
    memory_mcp_url: Annotated[Optional[str], typer.Option(
        help="MCP memory server over HTTP: a Streamable HTTP endpoint (http://localhost:7777/mcp) "
        "or a legacy SSE one (.../sse).",
        rich_help_panel=_SRC)] = None,
    memory_mcp_command: Annotated[Optional[str], typer.Option(
        help="MCP memory server run as a child process speaking stdio, e.g. \"/path/to/memory-server ARGS\" "
        "(split like a shell; stopped when done).",
        rich_help_panel=_SRC)] = None,
    memory_file: Annotated[Optional[Path], typer.Option(
        help="Exported graph: JSONL, one node per line with key, content, optional type/category.",
        rich_help_panel=_SRC)] = None,
    stories_dir: Annotated[Optional[Path], typer.Option(
        help="Folder of stories (*.txt, *.md, recursive); each file's trailing tag lines are its tags.",
        rich_help_panel=_SRC)] = None,
    mcp_transport: Annotated[str, typer.Option(
        help="HTTP transport: auto (SSE if the URL path ends in /sse, else Streamable HTTP), http or sse.",
        rich_help_panel=_SRV)] = DEFAULT_TRANSPORT,
    mcp_header: Annotated[Optional[list[str]], typer.Option(
        help="HTTP header 'Name: value' (repeatable); also read from AMYGDALA_MCP_HEADERS, one per line, "
        "to keep tokens out of shell history. Never logged.",
        rich_help_panel=_SRV)] = None,
    mcp_timeout: Annotated[float, typer.Option(
        help="Seconds to wait for each MCP request.", rich_help_panel=_SRV)] = SERVER.timeout,
    mcp_concurrency: Annotated[int, typer.Option(
        help="Fetch-tool calls in flight at once.", rich_help_panel=_SRV)] = DEFAULT_CONCURRENCY,
    mcp_preset: Annotated[Optional[str], typer.Option(
        help="Mapping preset: 'upstream' (memory_query \"all\" as text + memory_render) or 'server-memory' "
        "(read_graph). Default: the config file's preset, else upstream.",
        rich_help_panel=_MCP)] = None,
    mcp_config: Annotated[Optional[Path], typer.Option(
        help="TOML file with mapping fields, applied over the preset.", rich_help_panel=_MCP)] = None,
    mcp_list_tool: Annotated[Optional[str], typer.Option(
        help="Tool that lists nodes.", rich_help_panel=_MCP)] = None,
    mcp_list_args: Annotated[Optional[str], typer.Option(
        help="Arguments of the list tool as a JSON object, e.g. '{\"query\": \"all\"}'.",
        rich_help_panel=_MCP)] = None,
    mcp_list_format: Annotated[Optional[str], typer.Option(
        help="What the list tool returns: json (items) or text (one key per line).",
        rich_help_panel=_MCP)] = None,
    mcp_fetch_tool: Annotated[Optional[str], typer.Option(
        help="Optional per-node tool whose text replaces the listed content (called with the key).",
        rich_help_panel=_MCP)] = None,
    mcp_items_path: Annotated[Optional[str], typer.Option(
        help="Dotted path to the list of nodes in the list tool's result ('' = the result itself).",
        rich_help_panel=_MCP)] = None,
    mcp_key_field: Annotated[Optional[str], typer.Option(
        help="Field of a listed item holding the node key.", rich_help_panel=_MCP)] = None,
    mcp_content_field: Annotated[Optional[str], typer.Option(
        help="Field of a listed item holding the node text.", rich_help_panel=_MCP)] = None,
    mcp_paging: Annotated[Optional[str], typer.Option(
        help="Paging of the list tool: none, cursor, page, or offset (the query's offset/limit).",
        rich_help_panel=_MCP)] = None,
    mcp_links_pattern: Annotated[Optional[str], typer.Option(
        help="Regex for one line of the links block cut from fetched text ('' keeps it).",
        rich_help_panel=_MCP)] = None,
    min_positive_score: Annotated[float, typer.Option(
        help="A node is a positive for an emotion tagged at least this score (0-10).",
        rich_help_panel=_SEL)] = RULES.min_positive_score,
    max_negative_score: Annotated[Optional[float], typer.Option(
        help="Also use nodes tagged at most this score as negatives (default: only untagged nodes).",
        rich_help_panel=_SEL)] = None,
    max_negative_mentions: Annotated[int, typer.Option(
        help="A negative may name the emotion (any spelling) at most this many times.",
        rich_help_panel=_SEL)] = RULES.max_negative_mentions,
    min_content_chars: Annotated[int, typer.Option(
        help="Skip nodes shorter than this many characters once tag lines are removed.",
        rich_help_panel=_SEL)] = PAIRS.min_content_chars,
    max_examples_per_emotion: Annotated[int, typer.Option(
        help="At most this many positives per emotion (seeded sample); negatives follow the ratio.",
        rich_help_panel=_SEL)] = RULES.max_examples_per_emotion,
    negatives_per_positive: Annotated[float, typer.Option(
        help="Negatives per positive, matched by text length, in train and held-out separately.",
        rich_help_panel=_SEL)] = RULES.negatives_per_positive,
    heldout_fraction: Annotated[float, typer.Option(
        help="Fraction of nodes held out for validation (by node: same side for every emotion).",
        rich_help_panel=_SEL)] = PAIRS.heldout_fraction,
    seed: Annotated[int, typer.Option(
        help="Seed of the held-out split and of every sample.", rich_help_panel=_SEL)] = RULES.seed,
    emotions: Annotated[Optional[Path], typer.Option(
        help="Curated emotions file: one name per line, # comments. Combined with --top-emotions as a union.",
        rich_help_panel=_EMO)] = None,
    top_emotions: Annotated[Optional[int], typer.Option(
        help="Add the N emotions with the most positives (data-driven).", rich_help_panel=_EMO)] = None,
    min_examples: Annotated[int, typer.Option(
        help="Leave out emotions with fewer positives than this (train + held-out, before the cap).",
        rich_help_panel=_EMO)] = RULES.min_examples,
    neutral_texts: Annotated[Optional[Path], typer.Option(
        help="Texts that express no emotion, for reduce --neutral-variance / --method mlda: JSONL objects with "
        "\"text\" (first line starts with '{') or one text per line. Added as train texts in no example.",
        rich_help_panel=_SEL)] = None,
    output_dir: Annotated[Path, typer.Option(
        help="Dataset dir to write (replaced atomically if it holds a dataset).", rich_help_panel=_OUT)
    ] = DATASET_DIR,
    strict: Annotated[bool, typer.Option(
        help="Fail on the first unreadable JSONL line or refused MCP fetch instead of skipping and counting it.",
        rich_help_panel=_OUT)] = PAIRS.strict,
    force: Annotated[bool, typer.Option(
        help="Replace --output-dir even if it exists and is not a dataset dir.", rich_help_panel=_OUT)] = False,
) -> None:
    """Turn a memory graph into a deduplicated (emotion, polarity, text) training set."""
    meter = Meter("pairs")
    overrides = {
        "list_tool": mcp_list_tool,
        "list_args": parse_json_args(mcp_list_args, "--mcp-list-args"),
        "list_format": mcp_list_format,
        "fetch_tool": mcp_fetch_tool,
        "items_path": mcp_items_path,
        "key_field": mcp_key_field,
        "content_field": mcp_content_field,
        "paging": mcp_paging,
        "links_pattern": mcp_links_pattern,
    }
    source = SourceSpec(
        memory_mcp_url=memory_mcp_url,
        memory_file=memory_file,
        stories_dir=stories_dir,
        mcp_preset=mcp_preset,
        mcp_config=mcp_config,
        mcp_overrides={k: v for k, v in overrides.items() if v is not None},
        mcp_timeout=mcp_timeout,
        memory_mcp_command=memory_mcp_command,
        mcp_transport=mcp_transport,
        mcp_headers=tuple(mcp_header or ()),
        mcp_concurrency=mcp_concurrency,
    )
    rules = Rules(
        min_positive_score=min_positive_score,
        max_negative_score=max_negative_score,
        max_negative_mentions=max_negative_mentions,
        max_examples_per_emotion=max_examples_per_emotion,
        negatives_per_positive=negatives_per_positive,
        min_examples=min_examples,
        seed=seed,
    )
    options = PairsOptions(
        rules=rules,
        min_content_chars=min_content_chars,
        heldout_fraction=heldout_fraction,
        emotions_file=emotions,
        top_emotions=top_emotions,
        strict=strict,
        neutral_texts=neutral_texts,
    )
    with _fetch_bar() as progress:
        summary = build_dataset(source, output_dir, options, force=force, progress=progress)
    _print_summary(summary)
    info = summary.info
    finish_usage(meter, summary.output_dir, {"nodes": info.stats.nodes_read, "texts": info.stats.texts,
                                             "examples": summary.examples})
