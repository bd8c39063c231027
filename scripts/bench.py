#!/usr/bin/env python
"""Benchmarks: extract vs plain vLLM prefill vs HF transformers, memory, reduce, threading, serving with readout.

    .venv/bin/python scripts/bench.py            # full run (~25-35 min on 2 native-bf16 cores), writes docs/
    .venv/bin/python scripts/bench.py --quick    # smoke run at tiny sizes (~6 min with native bf16)

The engine rows run SmolLM2 in bf16, as the published table does; on an AVX2-only CPU (no
avx512_bf16) bf16 is emulated and every row is several times slower: ``--quick`` took over 17 min
there (2026-12-05, with OMP_NUM_THREADS=1, beside other work).
    .venv/bin/python scripts/bench.py --serve-only   # only the serving rows, merged into docs/benchmarks.json

Every measured configuration runs in a subprocess of its own (vLLM keeps
process-global state; peak RSS is per process), one at a time. Prints a rich
table and writes ``OUT/benchmarks.md`` and ``OUT/benchmarks.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench import counting, corpus, hand_section, report  # noqa: E402

ENGINE_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
              "TOKENIZERS_PARALLELISM": "false"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (~6 min with native bf16, over 17 min on an AVX2-only CPU); writes .cache/bench-quick/ unless --out")
    p.add_argument("--out", type=Path, default=None, help="where benchmarks.md/.json go (default docs/; --quick: work dir)")
    p.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir, removed at the end)")
    p.add_argument("--render-only", action="store_true", help="rewrite OUT/benchmarks.md from OUT/benchmarks.json")
    p.add_argument("--corpus-texts", type=int, default=2000, help="minimum texts of the main corpus")
    p.add_argument("--subset", type=int, default=48, help="texts of the fixed subset for the repeated side-by-side rows")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--headline-repeats", type=int, default=3, help="full-corpus extract runs (fewer if over budget)")
    p.add_argument("--budget-min", type=float, default=33.0, help="wall-clock budget; headline repeats shrink to fit")
    p.add_argument("--memory-sizes", default="1000,4000,16000", help="texts of the short-text memory corpora")
    p.add_argument("--reduce-texts", type=int, default=20000)
    p.add_argument("--reduce-emotions", type=int, default=200)
    p.add_argument("--reduce-per-class", type=int, default=500)
    p.add_argument("--reduce-hidden", type=int, default=5120)
    p.add_argument("--batch-size", type=int, default=16, help="extract's --batch-size (its default)")
    p.add_argument("--best-batch", type=int, default=32, help="HF best-effort batch size")
    p.add_argument("--serve-only", action="store_true",
                   help="run only the serving rows (compiled/eager generate with and without readout) and merge "
                        "them into an existing OUT/benchmarks.json")
    p.add_argument("--serve-prompts", type=int, default=32, help="prompts per serving round (all in one batch)")
    p.add_argument("--serve-tokens", type=int, default=64, help="greedy tokens generated per prompt")
    p.add_argument("--serve-prompt-tokens", type=int, default=256, help="prompts are cut to this many tokens")
    p.add_argument("--serve-concepts", type=int, default=200, help="readout vectors per layer")
    p.add_argument("--serve-repeats", type=int, default=5)
    p.add_argument("--serve-http-only", action="store_true",
                   help="only the real-server rows (plain vLLM vs amygdala-vllm serve), merged into OUT/benchmarks.json")
    p.add_argument("--serve-http-eager", action="store_true",
                   help="HTTP serving rows with --enforce-eager (default: compiled, as `amygdala-vllm serve` serves)")
    args = p.parse_args(argv)
    if args.quick:
        args.corpus_texts, args.subset, args.repeats, args.headline_repeats = 60, 8, 1, 1
        args.memory_sizes, args.reduce_texts, args.reduce_emotions, args.reduce_per_class = "100,400", 400, 20, 50
        args.reduce_hidden = 512
        args.serve_prompts, args.serve_tokens, args.serve_repeats, args.serve_concepts = 4, 4, 1, 8
    args.subset = max(args.subset, args.serve_prompts)
    return args


class Runner:
    """Runs job subprocesses one at a time, logging them and reading their rusage."""

    def __init__(self, work: Path, started: float):
        self.work = work
        self.started = started
        self.count = 0
        self.loads: list[tuple[str, float]] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def run(self, module: str, job: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
        self.count += 1
        name = f"{self.count:02d}-{module.split('_')[-1]}-{job.get('label', job.get('kind', ''))}"
        job = dict(job, result=str(self.work / f"{name}.result.json"))
        job_file = self.work / f"{name}.job.json"
        job_file.write_text(json.dumps(job))
        full_env = dict(os.environ, PYTHONPATH=str(ROOT / "scripts"), **ENGINE_ENV, **(env or {}))
        print(f"[{self.elapsed() / 60:5.1f} min] {name}", flush=True)
        self.loads.append((name, os.getloadavg()[0]))
        log_path = self.work / f"{name}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", f"bench.{module}", str(job_file)], cwd=ROOT,
                                    env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if line.startswith(("  round", "  extract", "  headline", "  engine")):
                    print(line.rstrip(), flush=True)
            _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
            raise SystemExit(f"job {name} failed (exit {os.waitstatus_to_exitcode(status)}); log {log_path}:\n{tail}")
        result = json.loads(Path(job["result"]).read_text())
        result["wait4_max_rss_bytes"] = usage.ru_maxrss * 1024
        return result


def token_lengths(model: str, texts: list[str]) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]


def work_counts(model: str, work: Path, main: Any, sub: Any) -> dict[str, Any]:
    from amygdala_vllm.dataset import load_dataset
    from amygdala_vllm.pairs.build import PairsOptions, build_dataset
    from amygdala_vllm.pairs.sources import SourceSpec

    build_dataset(SourceSpec(), work / "sample", PairsOptions(), force=True)
    sample = load_dataset(work / "sample")
    out: dict[str, Any] = {}
    for label, ds in (("sample", sample), ("corpus", main), ("subset", sub)):
        lengths = token_lengths(model, [t.text for t in ds.texts])
        seed = counting.seed_work(ds.examples, lengths)
        out[label] = {"texts": len(ds.text_ids()), "examples": len(ds.examples), "emotions": len(ds.info.emotions),
                      "seed": seed.as_dict(), "extract": counting.dedup_work(ds.text_ids(), lengths, 16).as_dict(),
                      "hf_best": counting.dedup_work(ds.text_ids(), lengths, 32, sort_by_length=True).as_dict(),
                      "token_quantiles": corpus.length_quantiles(lengths),
                      "char_quantiles": corpus.length_quantiles([len(t.text) for t in ds.texts])}
    c = out["corpus"]
    mean_tokens = c["extract"]["tokens"] / c["extract"]["sequences"]
    padding = c["seed"]["padded_tokens"] / c["seed"]["tokens"]
    out["production"] = [counting.production_estimate(n, mean_tokens=mean_tokens, seed_padding=padding)
                         for n in (20_000, 50_000, 200_000)]
    return out


def write_random_vectors(model: str, layers: list[int], concepts: int, out: Path) -> tuple[Path, Path]:
    """Random unit readout vectors for ``model`` (their values do not change what readout costs)."""
    import numpy as np

    from amygdala_vllm import vectors_file
    from amygdala_vllm.formats import LAYER_SEMANTICS, READOUT_FORMAT, ReadoutManifest
    from amygdala_vllm.models import model_fingerprint

    hidden = int(json.loads((Path(model) / "config.json").read_text())["hidden_size"])
    rng = np.random.default_rng(0)
    mats = rng.standard_normal((concepts, len(layers), hidden)).astype(np.float32)
    mats /= np.linalg.norm(mats, axis=-1, keepdims=True)
    out.mkdir(parents=True, exist_ok=True)
    vec = out / "serve.safetensors"
    manifest = ReadoutManifest(format=READOUT_FORMAT, concepts=[f"c{k}" for k in range(concepts)],
                               layers=list(layers), layer_semantics=LAYER_SEMANTICS, hidden_size=hidden,
                               model=model, model_fingerprint=model_fingerprint(model), pooling="mean",
                               method="caa", counts={}, calibration={})
    stored, _ = vectors_file.cast(mats, "float32")
    man = vectors_file.write_pair(vec, vectors_file.encode_vectors(manifest, stored, "float32"), manifest, force=True)
    return vec, man


def run_serve(args: argparse.Namespace, runner: Runner, base: dict[str, Any], subset: Path, work: Path,
              env: dict[str, str]) -> dict[str, Any]:
    """Generate workload: plain compiled vLLM vs compiled with taps (readout off / on) vs eager (off / on)."""
    vec, man = write_random_vectors(base["model"], base["layers"], args.serve_concepts, work / "serve")
    job = dict(base, subset=str(subset), prompts=args.serve_prompts, max_tokens=args.serve_tokens,
               max_prompt_tokens=args.serve_prompt_tokens, repeats=args.serve_repeats, vectors=str(vec),
               manifest=str(man), concepts=args.serve_concepts)
    engines = {
        "compiled_plain": dict(eager=False, taps=None, modes=["plain"]),
        "compiled_tapped": dict(eager=False, taps=base["layers"], modes=["plain", "readout"]),
        "eager": dict(eager=True, taps=None, modes=["plain", "readout"]),
    }
    out = {name: runner.run("job_serve", dict(job, label=name, **spec), env) for name, spec in engines.items()}
    out["http"] = run_serve_http(args, runner, base, subset, work, env, vec)
    out["settings"] = {"prompts": args.serve_prompts, "max_tokens": args.serve_tokens,
                       "max_prompt_tokens": args.serve_prompt_tokens, "concepts": args.serve_concepts,
                       "layers": base["layers"], "repeats": args.serve_repeats}
    return out


def run_serve_http(args: argparse.Namespace, runner: Runner, base: dict[str, Any], subset: Path, work: Path,
                   env: dict[str, str], vectors: Path) -> dict[str, Any]:
    """Real servers: plain vLLM vs `amygdala-vllm serve` with readout on 0/50/100 % of requests, same workload."""
    job = dict(base, subset=str(subset), prompts=args.serve_prompts, max_tokens=args.serve_tokens,
               max_prompt_tokens=args.serve_prompt_tokens, repeats=args.serve_repeats, vectors=str(vectors),
               dtype="bfloat16", eager=args.serve_http_eager, work_dir=str(work / "serve_http"))
    out = runner.run("job_serve_http", dict(job, label="serve_http"), env)
    out["settings"] = {"prompts": args.serve_prompts, "max_tokens": args.serve_tokens, "eager": args.serve_http_eager,
                       "max_prompt_tokens": args.serve_prompt_tokens, "concepts": args.serve_concepts,
                       "layers": base["layers"], "repeats": args.serve_repeats}
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render_only:
        out_dir = args.out or ROOT / "docs"
        doc = json.loads((out_dir / "benchmarks.json").read_text())
        if doc.get("memory"):
            doc["targets"]["memory_flat"] = report.memory_target(doc["memory"])
            (out_dir / "benchmarks.json").write_text(json.dumps(doc, indent=2) + "\n")
        hand_section.write_markdown(out_dir / "benchmarks.md", report.markdown(doc))
        report.print_tables(doc)
        return
    started = time.perf_counter()
    from amygdala_vllm.models import prepare_smollm2

    model = str(prepare_smollm2())
    work = args.work or Path(tempfile.mkdtemp(prefix="amygdala-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    out_dir = args.out or (ROOT / ".cache" / "bench-quick" if args.quick else ROOT / "docs")
    cache = ROOT / ".cache" / "bench-vllm"
    cache.mkdir(parents=True, exist_ok=True)
    env_base = {"VLLM_CACHE_ROOT": str(cache), "AMYGDALA_VLLM_HOME": str(Path(model).parent.parent)}
    runner = Runner(work, started)
    machine = report.machine(load_before=os.getloadavg())
    num_layers, layers = 30, [7, 15, 21, 25]  # extract's default for SmolLM2: 25/50/70/85 % depth
    base = {"model": model, "layers": layers, "num_layers": num_layers, "batch_size": args.batch_size,
            "max_model_len": 2048, "kv_cache_bytes": 1 << 30}

    print("building corpora and counting work ...", flush=True)
    full, rounds = corpus.build_corpus(work / "corpus", args.corpus_texts)
    main_ds = corpus.subset_dataset(full, work / "main", args.corpus_texts) if len(full.text_ids()) > args.corpus_texts else full
    sub = corpus.subset_dataset(main_ds, work / "subset", args.subset)
    if args.serve_http_only:
        doc_path = out_dir / "benchmarks.json"
        doc = json.loads(doc_path.read_text())
        vec, _ = write_random_vectors(base["model"], base["layers"], args.serve_concepts, work / "serve")
        http = run_serve_http(args, runner, base, sub.path, work, env_base, vec)
        doc.setdefault("serve", {})["http"] = report.serve_http_section(http)
        doc_path.write_text(json.dumps(doc, indent=2) + "\n")
        hand_section.write_markdown(out_dir / "benchmarks.md", report.markdown(doc))
        print("\n".join(report.serve_http_lines(doc["serve"])))
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.serve_only:
        doc_path = out_dir / "benchmarks.json"
        if not doc_path.is_file():
            raise SystemExit(f"--serve-only merges into {doc_path}, which does not exist; run the full benchmark first")
        doc = json.loads(doc_path.read_text())
        serve = run_serve(args, runner, base, sub.path, work, env_base)
        machine["load_after"] = list(os.getloadavg())
        doc["serve"] = report.serve_section(serve, machine)
        doc_path.write_text(json.dumps(doc, indent=2) + "\n")
        hand_section.write_markdown(out_dir / "benchmarks.md", report.markdown(doc))
        report.print_serve(doc)
        print(f"merged the serving rows into {doc_path} in {runner.elapsed() / 60:.1f} min")
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
        return
    counts = work_counts(model, work, main_ds, sub)
    counts["corpus"]["rounds"] = rounds
    results: dict[str, Any] = {"counts": counts}

    # reduce: production-shaped synthetic shards, written once, reduced in fresh processes.
    rjob = {"root": str(work / "reduce"), "emotions": args.reduce_emotions, "per_class": args.reduce_per_class,
            "texts": args.reduce_texts, "layers": layers, "hidden": args.reduce_hidden}
    results["reduce_write"] = runner.run("job_reduce", dict(rjob, kind="write"), env_base)
    results["reduce"] = [runner.run("job_reduce", dict(rjob, kind="reduce", method="caa", label=f"caa{r}"), env_base)
                         for r in range(args.repeats)]
    shutil.rmtree(work / "reduce")

    # memory: extract over short-text corpora of growing size, each in a fresh process, default threads.
    results["memory"] = []
    for n in [int(x) for x in args.memory_sizes.split(",")]:
        ds = corpus.short_dataset(work / f"short{n}", n)
        res = runner.run("job_vllm", dict(base, kind="extract", dataset=str(ds.path), batch_size=64, repeats=1,
                                          work_dir=str(work / f"mem{n}"), label=f"mem{n}"), env_base)
        res["texts"] = n
        results["memory"].append(res)

    # threading: the same extract of the subset with 1 thread and with every core.
    cores = len(os.sched_getaffinity(0))
    results["threads"] = {}
    for t in sorted({1, cores}):
        results["threads"][str(t)] = runner.run(
            "job_vllm", dict(base, kind="extract", dataset=str(sub.path), repeats=args.repeats,
                             work_dir=str(work / f"threads{t}"), label=f"omp{t}"), dict(env_base, OMP_NUM_THREADS=str(t)))

    # HF baselines on the subset, with the thread count extract uses by default.
    default_threads = results["memory"][0]["torch_threads"]
    results["hf"] = runner.run("job_hf", dict(base, subset=str(sub.path), threads=default_threads,
                                              best_batch=args.best_batch, repeats=args.repeats, label="hf"),
                               dict(env_base, OMP_NUM_THREADS=str(default_threads)))

    # Side-by-side rows on one engine, then the headline; headline repeats shrink to fit the budget.
    same = results["threads"].get(str(default_threads)) or next(iter(results["threads"].values()))
    per_token = max(same["runs"]) / same["tokens"]
    est = per_token * counts["corpus"]["extract"]["tokens"] * 1.1
    rows_est = 3 * (args.repeats + 1) * per_token * counts["subset"]["extract"]["tokens"] * 1.3 + 30
    left = args.budget_min * 60 - runner.elapsed() - rows_est - 30
    headline = max(1, min(args.headline_repeats, int(left // est)))
    print(f"headline: ~{est:.0f} s a run, {left:.0f} s left in the budget -> {headline} run(s)", flush=True)
    results["rows"] = runner.run("job_vllm", dict(base, kind="rows", subset=str(sub.path), corpus=str(main_ds.path),
                                                  repeats=args.repeats, headline_repeats=headline,
                                                  work_dir=str(work / "rows"), label="rows"), env_base)
    results["serve"] = run_serve(args, runner, base, sub.path, work, env_base)
    machine["load_after"] = list(os.getloadavg())
    machine["load_during"] = runner.loads
    machine["threads_default"] = results["rows"]["torch_threads"]
    command = "python scripts/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    doc = report.build(results, machine, args, command.strip(), runner.elapsed())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmarks.json").write_text(json.dumps(doc, indent=2) + "\n")
    hand_section.write_markdown(out_dir / "benchmarks.md", report.markdown(doc))
    report.print_tables(doc)
    print(f"wrote {out_dir / 'benchmarks.md'} and {out_dir / 'benchmarks.json'} in {runner.elapsed() / 60:.1f} min")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
