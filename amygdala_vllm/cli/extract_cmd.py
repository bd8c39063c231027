"""``amygdala-vllm extract``: dataset dir -> activations dir, inside vLLM."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..defaults import ACTIVATIONS_DIR as DEFAULT_ACTIVATIONS
from ..defaults import DATASET_DIR as DEFAULT_DATASET
from ..defaults import DEFAULT_MODEL, auto_layers
from ..errors import UsageError
from ..extract.run import ExtractOptions, parse_layers
from ..pooling_modes import DEFAULT_MODES, MODES
from ..usage import Meter
from ._app import app, command, console
from ._defaults import defaults_of
from ._usage import finish_usage
from ._dtype import announce_dtype, choose_dtype
from ._engine_flags import (ENGINE_DEFAULTS, BatchSize, Compile, Dtype, KvCacheGb, MaxModelLen, MaxNumBatchedTokens,
                            PipelineParallel, TensorParallel, engine_settings)
from .ray_options import RayActors, RayAddress, RayCpus, RayFlag, cluster_options

POOLING_HELP = (f"Pooling modes to record, comma-separated, including {','.join(DEFAULT_MODES)}; known: "
                f"{', '.join(MODES)} (each mode's rule: docs/reduce.md).")


def _layers(target_layers: Optional[str], manifest: Optional[Path], model: str) -> list[int]:

    if target_layers and manifest:
        raise UsageError("give --target-layers or --manifest, not both")
    if manifest:
        from ..vectors_file import read_manifest

        return list(read_manifest(manifest).layers)
    if target_layers:
        return parse_layers(target_layers)
    from ..model_config import read_decoder_shape
    from ..models import resolve_model

    return auto_layers(read_decoder_shape(resolve_model(model)).num_layers)


def _source(ray: bool, address: Optional[str], actors: Optional[int], cpus: float, backend: Optional[str]):
    """Where the shards run: one engine here (vLLM's executor of choice), or Ray actors; plus the Ray stats."""
    if backend not in (None, "mp", "ray"):
        raise UsageError(f"unknown --distributed-executor-backend {backend!r}; choose mp or ray")
    if not ray and actors is not None:
        raise UsageError("--ray-actors needs --ray")
    if not ray and address is not None and backend != "ray":
        raise UsageError("--ray-address needs --ray or --distributed-executor-backend ray")
    if ray:
        from ..extract.ray_shards import RunStats, ray_shards

        stats = RunStats()
        announce = lambda line: console.print(line, highlight=False)  # noqa: E731
        return ray_shards(cluster_options(address, actors, cpus), stats, announce), stats
    if backend == "ray":
        from ..extract.ray_executor import ray_executor_shards

        return ray_executor_shards(address), None
    return None, None


EXTRACT = defaults_of(ExtractOptions)


@app.command("extract")
@command
def extract(
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="HF model folder or hub name; 'smollm2' = the bundled offline SmolLM2-135M-Instruct (prepared on first use)."),
    training_data_dir: Path = typer.Option(DEFAULT_DATASET, "--training-data-dir", help="Dataset dir written by `amygdala-vllm pairs`."),
    output_dir: Path = typer.Option(DEFAULT_ACTIVATIONS, "--output-dir", help="Activations dir to write (resumed if it holds a compatible partial run)."),
    target_layers: Optional[str] = typer.Option(None, "--target-layers", help="Decoder layers to capture, 0-based, e.g. 3,18,33,36 or 10-14. Layer i = residual stream after decoder layer i = HF hidden_states[i+1]. Default: 4 layers at 25/50/70/85% depth."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Take the layers from an existing readout manifest instead."),
    dtype: Dtype = ENGINE_DEFAULTS.dtype,
    batch_size: BatchSize = ENGINE_DEFAULTS.batch_size,
    shard_size: int = typer.Option(EXTRACT.shard_size, "--shard-size", help="Texts per shard file; the unit of resume."),
    max_model_len: MaxModelLen = ENGINE_DEFAULTS.max_model_len,
    kv_cache_gb: KvCacheGb = ENGINE_DEFAULTS.kv_cache_gb,
    max_num_batched_tokens: MaxNumBatchedTokens = ENGINE_DEFAULTS.max_num_batched_tokens,
    tensor_parallel_size: TensorParallel = ENGINE_DEFAULTS.tensor_parallel_size,
    pipeline_parallel_size: PipelineParallel = ENGINE_DEFAULTS.pipeline_parallel_size,
    split: str = typer.Option(EXTRACT.split, "--split", help="Which texts: train, heldout or all (validate needs heldout; reduce uses train)."),
    num_shards: int = typer.Option(EXTRACT.num_shards, "--num-shards", help="Split the work across N machines..."),
    shard_index: int = typer.Option(EXTRACT.shard_index, "--shard-index", help="...and run slice K (0-based) here; `reduce` merges the dirs."),
    overlong: str = typer.Option(EXTRACT.overlong, "--overlong", help="Texts over the context: truncate (keep the start), skip, or error."),
    skip_first_tokens: int = typer.Option(EXTRACT.skip_first_tokens, "--skip-first-tokens", help="Leave the first K positions out of the mean (position 0 is an attention sink; BOS counts)."),
    pooling: str = typer.Option(",".join(EXTRACT.pooling), "--pooling", help=POOLING_HELP),
    force: bool = typer.Option(EXTRACT.force, "--force", help="Start over in an existing output dir instead of resuming or refusing."),
    compile_: Compile = ENGINE_DEFAULTS.compile,
    distributed_executor_backend: Optional[str] = typer.Option(None, "--distributed-executor-backend", help="vLLM's executor for --tensor-parallel-size > 1: mp (processes on this machine) or ray (workers placed across a Ray cluster; GPUs only). Default: vLLM's choice."),
    ray: RayFlag = False,
    ray_address: RayAddress = None,
    ray_actors: RayActors = None,
    ray_cpus_per_actor: RayCpus = 1.0,
) -> None:
    """Run the model inside vLLM over every unique text once and save pooled residual activations."""
    meter = Meter("extract")
    from ..extract.run import ExtractOptions, run_extract
    from ..pooling_modes import parse_modes

    source, stats = _source(ray, ray_address, ray_actors, ray_cpus_per_actor, distributed_executor_backend)
    layers = _layers(target_layers, manifest, model)
    choice = choose_dtype(dtype)
    engine = engine_settings(
        model=model, dtype=choice.dtype, max_model_len=max_model_len, kv_cache_gb=kv_cache_gb, batch_size=batch_size,
        tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size, compile=compile_,
        max_num_batched_tokens=max_num_batched_tokens,
        extra={"distributed_executor_backend": distributed_executor_backend} if distributed_executor_backend else None,
    )
    opts = ExtractOptions(
        dataset_dir=training_data_dir, output_dir=output_dir, layers=layers, engine=engine, shard_size=shard_size,
        split=split, num_shards=num_shards, shard_index=shard_index, overlong=overlong,
        skip_first_tokens=skip_first_tokens, force=force, pooling=parse_modes(pooling),
    )
    progress = Progress(
        TextColumn("[bold]extract"), BarColumn(), MofNCompleteColumn(), TextColumn("texts"),
        TextColumn("{task.fields[tokens]:,} tokens"), TextColumn("{task.fields[rate]:,.0f} tok/s"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )
    import time

    def start(total: int, done: int, tokens: int):
        announce_dtype(choice)
        progress.start()
        task = progress.add_task("extract", total=total, completed=done, tokens=tokens, rate=0.0)
        t0 = time.perf_counter()
        state = {"tokens": tokens, "run": 0}

        def on_batch(n_texts: int, n_tokens: int) -> None:
            state["tokens"] += n_tokens
            state["run"] += n_tokens
            rate = state["run"] / max(time.perf_counter() - t0, 1e-9)
            progress.update(task, advance=n_texts, tokens=state["tokens"], rate=rate)

        return on_batch

    try:
        summary = run_extract(opts, progress=start, source=source)
    finally:
        progress.stop()
    if stats is not None and stats.actors:
        console.print(f"Ray: {stats.actors}; {stats.retried} shard(s) retried after a lost actor, "
                      f"{stats.restarts} actor(s) replaced", highlight=False)
    console.print(
        f"[green]wrote[/] {summary.output_dir}: {summary.texts_planned} texts planned, {summary.texts_run} run now, "
        f"{summary.texts_resumed} resumed from earlier shards, {summary.tokens:,} tokens in {summary.seconds:.1f} s; "
        f"layers {layers}; {summary.shards} shard(s); overlong: {summary.truncated} truncated, {summary.skipped} skipped"
    )
    finish_usage(meter, summary.output_dir, {"texts": summary.texts_run, "tokens": summary.tokens})
