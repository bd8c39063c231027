"""``amygdala-vllm reduce``: activations dirs + dataset -> vectors.safetensors + manifest.

Thin: parse flags, call :func:`amygdala_vllm.reduce.reduce`, print the summary.
No vLLM or torch import, so it runs on any machine holding the activations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..defaults import ACTIVATIONS_DIR, DATASET_DIR, VECTORS_FILE
from ..formats import write_json
from ..pooling_modes import MODES
from ..reduce import ReduceOptions
from ..usage import Meter
from ._app import app, command, console
from ._defaults import defaults_of
from ._usage import finish_usage

REDUCE_POOLING_HELP = f"Pooled activation to use: {'|'.join(MODES)} (extract must have recorded it: --pooling)."

__all__ = ["reduce_command"]


REDUCE = defaults_of(ReduceOptions)

@app.command("reduce")
@command
def reduce_command(
    activations: Annotated[list[Path], typer.Option("--activations", help="Activations dir from `extract`; repeat once per machine.")] = [ACTIVATIONS_DIR],  # noqa: B006
    training_data_dir: Annotated[Path, typer.Option("--training-data-dir", help="Dataset dir from `pairs`.")] = DATASET_DIR,
    output: Annotated[Path, typer.Option("--output", "-o", help="NAME.safetensors; NAME.manifest.json is written beside it.")] = VECTORS_FILE,
    pooling: Annotated[str, typer.Option(help=REDUCE_POOLING_HELP)] = REDUCE.pooling,
    method: Annotated[str, typer.Option(help="auto (per layer, the method that cross-validates best on the train split), caa (mean difference), lda (shrinkage LDA), grand-mean (positive mean minus the mean over all concepts) or mlda (multi-class shrinkage LDA); docs/reduce.md.")] = REDUCE.method,
    shrinkage: Annotated[float, typer.Option(help="LDA: lambda = SHRINKAGE x mean within-class variance, added to the diagonal.")] = REDUCE.shrinkage,
    min_examples: Annotated[int, typer.Option(help="Drop concepts with fewer train positives or negatives.")] = REDUCE.min_examples,
    emotions: Annotated[str | None, typer.Option(help="Comma-separated subset, in manifest order (default: all, sorted).")] = None,
    dtype: Annotated[str, typer.Option(help="Vector dtype: float32|float16|bfloat16.")] = REDUCE.dtype,
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Warn (not fail) when train texts are in no shard.")] = REDUCE.allow_missing,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")] = REDUCE.force,
    json_summary: Annotated[Path | None, typer.Option("--json-summary", help="Also write the summary (incl. cross-talk) as JSON.")] = None,
    top_pairs: Annotated[int, typer.Option(help="Most similar concept pairs to list per layer.")] = REDUCE.top_pairs,
    neutral_variance: Annotated[float, typer.Option(help="Project out the top principal components of the neutral train texts (positive for no concept) holding this share of their variance; 0 = off, 0.5 = Anthropic's recipe.")] = REDUCE.neutral_variance,
    remove_shared: Annotated[int, typer.Option(help="Project out the top K shared axes of the concept vectors (valence, arousal); the full vectors go to NAME.full.safetensors.")] = REDUCE.remove_shared,
    folds: Annotated[int, typer.Option(help="--method auto: cross-validation folds over the train texts.")] = REDUCE.folds,
    seed: Annotated[int, typer.Option(help="--method auto: seed of the fold order.")] = REDUCE.seed,
) -> None:
    """Compute CAA/LDA readout vectors per concept and hooked layer, with calibration."""
    from ..reduce import reduce

    meter = Meter("reduce")

    names = [e.strip() for e in emotions.split(",") if e.strip()] if emotions is not None else None
    opts = ReduceOptions(
        pooling=pooling, method=method, shrinkage=shrinkage, min_examples=min_examples, emotions=names,
        dtype=dtype, allow_missing=allow_missing, force=force, top_pairs=top_pairs,
        neutral_variance=neutral_variance, remove_shared=remove_shared, folds=folds, seed=seed,
    )
    result = reduce(activations, training_data_dir, output, opts)
    s = result.summary
    if json_summary is not None:
        write_json(json_summary, s)

    console.print(f"wrote [bold]{s.output}[/] and [bold]{s.manifest}[/] ({s.method}, {s.pooling} pooling)")
    if s.method_options:
        console.print("method options: " + ", ".join(f"{k} {v:g}" for k, v in sorted(s.method_options.items())),
                      highlight=False)
    if s.auto is not None:
        _print_auto(s.auto)
    if s.full_output:
        console.print(f"full vectors (shared axes kept): [bold]{s.full_output}[/]")
    console.print(f"concepts: {len(s.concepts)} kept, {len(s.dropped)} dropped")
    for name, reason in sorted(s.dropped.items()):
        console.print(f"  dropped {name}: {reason}", highlight=False)
    if s.missing_texts:
        console.print(f"[yellow]{s.missing_texts} train texts were in no shard and left out[/]")

    norms = Table(title="raw difference norm |mu_pos - mu_neg| (before unit-normalising)")
    norms.add_column("concept")
    norms.add_column("pos", justify="right")
    norms.add_column("neg", justify="right")
    for layer in s.layers:
        norms.add_column(f"L{layer}", justify="right")
    for size in s.smallest:
        norms.add_row(size.concept, str(size.positive), str(size.negative),
                      *(f"{s.raw_norms[size.concept][str(layer)]:.3g}" for layer in s.layers))
    console.print(norms)

    if len(s.concepts) > 1:
        talk = Table(title="cross-talk: most similar concept vectors (cosine)")
        talk.add_column("layer", justify="right")
        talk.add_column("pairs")
        for layer in s.cross_talk:
            talk.add_row(str(layer.layer), ", ".join(f"{p.a}~{p.b} {p.cosine:+.2f}" for p in layer.top_pairs))
        console.print(talk)
    examples = sum(c.positive + c.negative for c in result.manifest.counts.values())
    finish_usage(meter, Path(s.output), {"concepts": len(s.concepts), "examples": examples})


def _print_auto(choice) -> None:
    """Which method won at each layer, with its cross-validated figures, and any concept left at CAA."""
    def f(v: float | None, spec: str = ".2f") -> str:
        return "n/a" if v is None else format(v, spec)

    t = Table(title=f"--method auto: method per layer, {choice.folds}-fold cross-validation on the train split",
              caption="merit = (median sibling AUROC + top-1) / 2, among methods keeping 1-vs-rest >= 0.9")
    for name in ("layer", "method", "CV 1vr/sib/top1", "merit", "next best"):
        t.add_column(name, justify="left" if name in ("method", "next best") else "right", no_wrap=True)
    for layer, c in choice.layers.items():
        won = next((x for x in c.cv if x.method == c.method), None)
        rest = sorted((x for x in c.cv if x.method != c.method), key=lambda x: -x.merit)
        figs = "n/a" if won is None else f"{f(won.one_vs_rest_auroc)}/{f(won.sibling_auroc)}/{f(won.top1)}"
        t.add_row(layer, c.method, figs, "n/a" if won is None else f"{won.merit:.3f}",
                  f"{rest[0].method} {rest[0].merit:.3f}" if rest else "")
    console.print(t)
    for name, why in sorted(choice.fallback.items()):
        console.print(f"  {name}: {why}", highlight=False)
