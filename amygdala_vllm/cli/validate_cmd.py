"""``amygdala-vllm validate``: reload the vectors into vLLM, score held-out texts, write the report.

Thin: parse flags, call :func:`amygdala_vllm.validate.run_validate`, print a
compact summary. vLLM is imported only when the engine starts (inside the
driver), so ``--help`` and input errors are instant. ``--min-auroc`` and a
failed agreement check exit 1 through :class:`ValidationFailed`, after the
report has been written and the summary printed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..defaults import DATASET_DIR, REPORT_DIR, VECTORS_FILE
from ..errors import UsageError, ValidationFailed
from ..usage import Meter
from ..validate.run import ValidateOptions
from ._app import app, command, console
from ._defaults import defaults_of
from ._usage import finish_usage
from ._dtype import announce_dtype, choose_dtype
from ._engine_flags import (ENGINE_DEFAULTS, BatchSize, Compile, Dtype, KvCacheGb, MaxModelLen, PipelineParallel,
                            TensorParallel, engine_settings)
from .ray_options import RayActors, RayAddress, RayCpus, RayFlag, cluster_options
from .specificity_view import print_auto_choice, print_method_ranking, print_specificity

__all__ = ["validate_command"]


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


VALIDATE = defaults_of(ValidateOptions)


@app.command("validate")
@command
def validate_command(
    vectors: Annotated[Path, typer.Option("--vectors", help="NAME.safetensors from `reduce`; NAME.manifest.json beside it is the manifest.")] = VECTORS_FILE,
    training_data_dir: Annotated[Path, typer.Option("--training-data-dir", help="Dataset dir from `pairs`; its held-out split is scored.")] = DATASET_DIR,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="Readout manifest, if not NAME.manifest.json beside --vectors.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model to load (default: the manifest's model).")] = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Report dir: report.json, report.md, auroc.png, crosstalk.png, specificity.png.")] = REPORT_DIR,
    dtype: Dtype = ENGINE_DEFAULTS.dtype,
    max_model_len: MaxModelLen = ENGINE_DEFAULTS.max_model_len,
    tensor_parallel_size: TensorParallel = ENGINE_DEFAULTS.tensor_parallel_size,
    pipeline_parallel_size: PipelineParallel = ENGINE_DEFAULTS.pipeline_parallel_size,
    kv_cache_gb: KvCacheGb = ENGINE_DEFAULTS.kv_cache_gb,
    batch_size: BatchSize = ENGINE_DEFAULTS.batch_size,
    ood: Annotated[Path | None, typer.Option("--ood", help="Out-of-distribution texts: JSONL with \"text\" fields, or one text per line.")] = None,
    min_auroc: Annotated[float | None, typer.Option("--min-auroc", help="Exit 1 if a concept's best-layer AUROC (manifest pooling) is below this.")] = None,
    compare_methods: Annotated[bool, typer.Option("--compare-methods", help="Also rank every reduce method offline on the held-out texts: one-vs-rest, sibling AUROC, identification (needs --activations).")] = VALIDATE.compare_methods,
    activations: Annotated[list[Path] | None, typer.Option("--activations", help="Activations dir from `extract --split all`, for --compare-methods; repeatable.")] = None,
    shrinkage: Annotated[float, typer.Option("--shrinkage", help="--compare-methods: LDA shrinkage, as in `reduce`.")] = VALIDATE.shrinkage,
    max_texts: Annotated[int | None, typer.Option("--max-texts", help="Score at most N held-out texts (round-robin over classes) for a quick run.")] = None,
    taxonomy: Annotated[Path | None, typer.Option("--taxonomy", help="JSON {family: [concept, ...]}: family members count as siblings in the specificity figures.")] = None,
    compile_: Compile = ENGINE_DEFAULTS.compile,
    ray: RayFlag = False,
    ray_address: RayAddress = None,
    ray_actors: RayActors = None,
    ray_cpus_per_actor: RayCpus = 1.0,
) -> None:
    """Load the vectors into vLLM's readout, score held-out texts and report AUROC, d, accuracy, cross-talk."""
    from ..validate import run_validate
    from ..validate.schema import report_modes

    meter = Meter("validate")

    choice = choose_dtype(dtype)
    engine = engine_settings(model=model, dtype=choice.dtype, max_model_len=max_model_len, kv_cache_gb=kv_cache_gb,
                             batch_size=batch_size, tensor_parallel_size=tensor_parallel_size,
                             pipeline_parallel_size=pipeline_parallel_size, compile=compile_)
    opts = ValidateOptions(
        vectors=vectors, training_data_dir=training_data_dir, manifest=manifest, engine=engine, output_dir=output_dir,
        ood=ood, min_auroc=min_auroc, compare_methods=compare_methods, activations=tuple(activations or ()),
        max_texts=max_texts, shrinkage=shrinkage, taxonomy=taxonomy,
    )
    bar = Progress(TextColumn("[bold]validate {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("texts"), TimeElapsedColumn(), console=console, transient=False)

    def progress(label: str, total: int) -> Callable[[int], None]:
        if label == "held-out":
            announce_dtype(choice)
        bar.start()
        task = bar.add_task(label, total=total)
        return lambda n: bar.update(task, advance=n)

    open_readout = None
    if ray:
        from ..readout.ray_readout import ray_readout

        open_readout = ray_readout(cluster_options(ray_address, ray_actors, ray_cpus_per_actor))
    elif ray_address is not None or ray_actors is not None:
        raise UsageError("--ray-address and --ray-actors need --ray")
    try:
        result = run_validate(opts, progress, open_readout=open_readout)
    finally:
        bar.stop()
    r = result.report
    modes = report_modes(r)  # the manifest's pooling first; one AUROC column per mode (headed by its name: 80 columns)
    table = Table(title=f"held-out validation ({r.method} vectors, {r.heldout_texts} texts, model {r.model}); "
                        f"AUROC by pooling: {', '.join(modes)}")
    for name, just in (("concept", "left"), ("+/-", "right"), ("best layer", "right"),
                       *((m, "right") for m in modes), ("Cohen's d", "right"), ("accuracy", "right")):
        table.add_column(name, justify=just)  # type: ignore[arg-type]
    for c in r.concepts:
        m = next((l for l in c.layers if l.layer == c.best_layer), None)
        counts = f"{c.heldout_positive}/{c.heldout_negative}"
        if m is None:
            table.add_row(c.concept, counts, f"n/a ({c.reason})", *[""] * (len(modes) + 2))
            continue
        main = m.pooled[r.pooling]
        table.add_row(c.concept, counts, str(c.best_layer), *(_fmt(m.pooled[p].auroc) for p in modes),
                      _fmt(main.cohens_d, ".2f"), _fmt(main.accuracy))
    console.print(table)
    if r.specificity is not None:
        print_specificity(console, r.specificity)
    print_auto_choice(console, r.auto)
    if r.compare is not None:
        if r.compare.scores:
            print_method_ranking(console, r.compare)
        cmp = Table(title=f"CAA vs LDA, offline ({r.compare.pooling} pooling): best held-out AUROC")
        for name in ("concept", "CAA", "LDA"):
            cmp.add_column(name, justify="left" if name == "concept" else "right")
        for mc in r.compare.concepts:
            cmp.add_row(mc.concept, _fmt(mc.best_caa), _fmt(mc.best_lda))
        console.print(cmp)
    a = r.agreement
    if a.checked:
        verdict = "[green]pass[/]" if a.passed else "[bold red]FAIL[/]"
        console.print(f"agreement runtime vs offline: max |diff| {a.max_abs_diff:.3g} (bar {a.tolerance:.3g}, {a.dtype}) {verdict}")
    else:
        console.print("agreement runtime vs offline: [yellow]not checked[/]")
    console.print(f"report: [bold]{result.paths['report.md']}[/], plots: {result.paths['auroc.png']}, "
                  f"{result.paths['crosstalk.png']}, {result.paths['specificity.png']}", highlight=False)
    finish_usage(meter, Path(output_dir), {"texts": r.heldout_texts + (r.ood.texts if r.ood is not None else 0)})
    if result.failures:
        raise ValidationFailed("; ".join(result.failures))
