#!/usr/bin/env python
"""Scale benchmark: production-shaped graphs through pairs -> extract -> reduce -> validate, and the real width.

    .venv/bin/python scripts/bench_scale.py --sizes 2000,20000            # graph sizes (nodes)
    .venv/bin/python scripts/bench_scale.py --sizes 2000 --baseline /work/main   # also time main's code
    .venv/bin/python scripts/bench_scale.py --width                      # reduce + validate at hidden 5120

Graphs: ``bench/scale_graph.py`` (200 emotions, 2-6 tags per node, 40-120
words). Model: the tiny random Llama of tests/tiny_models.py (4 layers,
fp32). Every stage is the CLI in a child process of its own, so the peak RSS
(``ru_maxrss`` of that child, read with ``os.wait4``) is the stage's own.
``--baseline ROOT`` runs pairs and validate again with the code at ROOT
(same inputs), for a before/after table. ``--width`` writes synthetic
activations at the real model's shapes in the capture format (hidden 5120,
4 layers, 200 concepts) and runs ``reduce`` (the CLI) and validate's driver
(bench/scale_width.py, a stand-in readout returning per-token series) on them.
Writes ``OUT/benchmarks-scale.json`` and ``OUT/benchmarks-scale.md``
(default OUT: docs/); the projection for the real job is computed from the
formats by :func:`projection`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
ENGINE = ["--dtype", "fp32", "--kv-cache-gb", "0.25", "--max-model-len", "512"]


def run_child(args: list[str], root: Path, log: Path) -> dict[str, float]:
    """Run ``python ARGS`` with ``root`` first on the path; wall seconds and the child's own peak RSS.

    Linux carries the peak RSS of the process image a child replaces at exec into the child's
    ``ru_maxrss``, so this process must stay small (no torch, no model): it only spawns and reads JSON.
    """
    env = {**os.environ, **ENV, "PYTHONPATH": f"{root}:{ROOT / 'scripts'}"}
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, *args], env=env, stdout=f, stderr=subprocess.STDOUT, cwd=log.parent)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args[:4])} failed; see {log}:\n{log.read_text()[-3000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def stage_args(stage: str, work: Path, graph: Path, model: Path, tag: str) -> list[str]:
    ds, act, vec = work / "dataset", work / "acts", work / "vectors" / "amygdala.safetensors"
    return {
        "pairs": ["-m", "amygdala_vllm", "pairs", "--memory-file", str(graph), "--top-emotions", "200",
                  "--max-examples-per-emotion", "500", "--output-dir", str(work / f"dataset{tag}")],
        "extract": ["-m", "amygdala_vllm", "extract", "--model", str(model), "--training-data-dir", str(ds),
                    "--output-dir", str(act), "--shard-size", "512", *ENGINE],
        "reduce": ["-m", "amygdala_vllm", "reduce", "--activations", str(act), "--training-data-dir", str(ds),
                   "--output", str(vec)],
        "validate": ["-m", "amygdala_vllm", "validate", "--vectors", str(vec), "--training-data-dir", str(ds),
                     "--output-dir", str(work / f"report{tag}"), *ENGINE],
    }[stage]


def run_size(nodes: int, work: Path, model: Path, baseline: Path | None, skip_extract: bool = False) -> dict[str, Any]:
    from bench.scale_graph import write_graph

    work.mkdir(parents=True, exist_ok=True)
    (work / "vectors").mkdir(exist_ok=True)
    graph = write_graph(work / "graph.jsonl", nodes)
    row: dict[str, Any] = {"nodes": nodes, "stages": {}, "baseline": {}}
    row["skip_extract"] = skip_extract
    for stage in ("pairs", "extract", "reduce", "validate"):
        if skip_extract and stage == "extract":
            continue
        if skip_extract and stage == "reduce":  # random calibrated vectors for every emotion instead
            run_child(["-m", "bench.scale_width", "random-vectors", str(work / "dataset"), str(model),
                       str(work / "vectors" / "amygdala.safetensors")], ROOT, work / "vectors.log")
            continue
        print(f"[{nodes} nodes] {stage} ...", flush=True)
        row["stages"][stage] = run_child(stage_args(stage, work, graph, model, ""), ROOT, work / f"{stage}.log")
        usage = json.loads((work / {"pairs": "dataset/usage.json", "extract": "acts/usage.json",
                                    "reduce": "vectors/amygdala.usage.json",
                                    "validate": "report/usage.json"}[stage]).read_text())
        row["stages"][stage]["counts"] = usage["counts"]
        print(f"  {row['stages'][stage]}", flush=True)
        if baseline is not None and stage in ("pairs", "validate"):
            print(f"[{nodes} nodes] {stage} with {baseline} ...", flush=True)
            row["baseline"][stage] = run_child(stage_args(stage, work, graph, model, "-baseline"), baseline,
                                               work / f"{stage}-baseline.log")
            print(f"  {row['baseline'][stage]}", flush=True)
    if baseline is not None:
        row["same_dataset"] = all((work / "dataset" / f).read_bytes() == (work / "dataset-baseline" / f).read_bytes()
                                  for f in ("texts.jsonl", "examples.jsonl"))
        new = json.loads((work / "report" / "report.json").read_text())
        old = json.loads((work / "report-baseline" / "report.json").read_text().replace("report-baseline", "report"))
        row["report_differs_in"] = sorted(k for k in set(new) | set(old) if new.get(k) != old.get(k))
    ds = json.loads((work / "dataset" / "dataset.json").read_text())
    row["heldout_texts"] = json.loads((work / "report" / "report.json").read_text())["heldout_texts"]
    row["concepts"] = len(ds["emotions"])
    return row


def run_width(work: Path, per_class: int, tokens: int, hidden: int, concepts: int) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"hidden": hidden, "concepts": concepts, "layers": 4, "tokens_per_text": tokens}
    print(f"[width {hidden}] writing synthetic activations ...", flush=True)
    out["write"] = run_child(["-m", "bench.scale_width", "write", str(work), str(per_class), str(hidden),
                              str(concepts)], ROOT, work / "write.log")
    out["texts"] = sum(1 for _ in open(work / "dataset" / "texts.jsonl"))
    out["activations_bytes"] = sum(p.stat().st_size for p in (work / "acts").iterdir())
    print(f"[width {hidden}] reduce ...", flush=True)
    # --method caa, as the published width row measured: the default (auto) refits seven candidates in five
    # folds and did not finish in 15 min at this width on 2 cores (docs/reduce.md, "--method auto").
    out["reduce"] = run_child(["-m", "amygdala_vllm", "reduce", "--activations", str(work / "acts"),
                               "--training-data-dir", str(work / "dataset"), "--output",
                               str(work / "vectors.safetensors"), "--method", "caa"], ROOT, work / "reduce.log")
    print(f"[width {hidden}] validate ...", flush=True)
    out["validate"] = run_child(["-m", "bench.scale_width", "validate", str(work), str(tokens)], ROOT,
                                work / "validate.log")
    out["heldout_texts"] = json.loads((work / "report" / "report.json").read_text())["heldout_texts"]
    print(f"  {out}", flush=True)
    return out


def projection(texts: int, heldout: int, hidden: int = 5120, layers: int = 4, concepts: int = 200,
               tokens: int = 512, batch: int = 16, batches_per_call: int = 4) -> dict[str, float]:
    """Output sizes and driver-side memory of the real job, in MiB, from the formats (not measured).

    capture shard: ``mean`` + ``last`` float32 [n, L, H] + ``text_ids`` int64 + ``num_tokens`` int32 per text;
    vectors: float32 [E, H] per layer; reduce holds one pooled mode [N, L, H] float32 of the train texts plus
    an [H, H] float64 scatter per layer for LDA; validate's driver holds [N, L, E] float64 per pooling mode (3)
    plus one call's per-token series [texts per call, T, L, E] float32 (before this branch: every text's).
    """
    mib = 2.0 ** 20
    per_text = 2 * layers * hidden * 4 + 8 + 4
    return {
        "activations_mib": texts * per_text / mib,
        "vectors_mib": concepts * layers * hidden * 4 / mib,
        "reduce_pooled_mib": texts * layers * hidden * 4 / mib,
        "reduce_lda_scatter_mib": layers * hidden * hidden * 8 / mib,
        "validate_pooled_mib": heldout * layers * concepts * 8 * 3 / mib,
        "validate_call_series_mib": batch * batches_per_call * tokens * layers * concepts * 4 / mib,
        "validate_series_all_texts_mib": heldout * tokens * layers * concepts * 4 / mib,
    }


def _cpu(m: dict[str, Any]) -> float | None:
    return None if m.get("cpu_s") is None else round(m["cpu_s"], 1)


def _differs(row: dict[str, Any]) -> str:
    if "report_differs_in" not in row:
        return "not compared"
    return ", ".join(row["report_differs_in"]) or "none"


def render(res: dict[str, Any]) -> str:
    lines = ["# Scale benchmark", "",
             "Generated by `scripts/bench_scale.py`; do not edit by hand (rerun it). Raw numbers: "
             "`benchmarks-scale.json`.", "",
             f"Command: `{res['command']}` ({res['date']}). Machine: {res['machine']}. "
             f"Load average before/after: {res['load_before']} / {res['load_after']}. "
             "This machine is shared with other jobs: wall times are upper bounds; peak RSS is per process "
             "and does not depend on load.", ""]
    sizes = res.get("sizes", [])
    if sizes:
        lines += ["## Pipeline on production-shaped graphs (tiny random Llama, 4 layers, fp32, 1 thread)", "",
                  "| nodes | stage | work | wall s | CPU s | peak RSS MiB | CPU x prev size | RSS x prev size |",
                  "|---:|---|---|---:|---:|---:|---:|---:|"]
        prev: dict[str, Any] | None = None
        for row in sizes:
            for stage, m in row["stages"].items():
                work = ", ".join(f"{v:,} {k}" for k, v in m.get("counts", {}).items())
                g_wall = g_rss = ""
                if prev is not None and stage in prev["stages"]:
                    p = prev["stages"][stage]
                    g_wall = f"{_cpu(m) / max(_cpu(p), 1e-9):.2f}x" if _cpu(m) and _cpu(p) else ""
                    g_rss = f"{m['peak_rss_mib'] / max(p['peak_rss_mib'], 1e-9):.2f}x"
                if stage == "validate" and row.get("skip_extract"):
                    work += " (random vectors: extract and reduce skipped)"
                lines.append(f"| {row['nodes']:,} | {stage} | {work} | {m['wall_s']:.1f} | {_cpu(m) or 'n/a'} "
                             f"| {m['peak_rss_mib']:,.0f} "
                             f"| {g_wall} | {g_rss} |")
            prev = row
        base = [r for r in sizes if r.get("baseline")]
        if base:
            lines += ["", f"## Before / after (before: the code at `{res.get('baseline')}`, same inputs)", "",
                      "| nodes | stage | before wall s | after wall s | before CPU s | after CPU s "
                      "| before peak RSS MiB | after peak RSS MiB |",
                      "|---:|---|---:|---:|---:|---:|---:|---:|"]
            for row in base:
                for stage, b in row["baseline"].items():
                    a = row["stages"][stage]
                    lines.append(f"| {row['nodes']:,} | {stage} | {b['wall_s']:.1f} | {a['wall_s']:.1f} | "
                                 f"{_cpu(b) or 'n/a'} | {_cpu(a) or 'n/a'} | "
                                 f"{b['peak_rss_mib']:,.0f} | {a['peak_rss_mib']:,.0f} |")
                lines.append(f"| {row['nodes']:,} | outputs | dataset identical: {row.get('same_dataset')} | "
                             f"report.json fields that differ: {_differs(row)} "
                             "| | | | |")
    w = res.get("width")
    if res.get("notes"):
        lines += ["", *res["notes"]]
    if w:
        lines += ["", f"## reduce and validate at the real width (synthetic activations, hidden {w['hidden']}, "
                  f"{w['layers']} layers, {w['concepts']} concepts)", "",
                  f"{w['texts']:,} texts ({w['heldout_texts']:,} held out), activations "
                  f"{w['activations_bytes'] / 2**20:,.0f} MiB on disk; validate's stand-in readout returns "
                  f"{w['tokens_per_text']} token rows per text, as the engine does.", "",
                  "| job | wall s | peak RSS MiB |", "|---|---:|---:|"]
        for job in ("write", "reduce", "validate"):
            lines.append(f"| {job} | {w[job]['wall_s']:.1f} | {w[job]['peak_rss_mib']:,.0f} |")
    lines += ["", "## Projection for the real job (computed from the formats, not measured)", "",
              "Qwen3.5-27B shapes: hidden 5120, 64 layers of which 4 hooked, 200 concepts x 500 positives "
              "(+ as many negatives); validate with 512-token texts, batch 16, 4 batches per call.", "",
              "| texts (held out) | activations MiB | vectors MiB | reduce: pooled MiB | reduce: LDA scatter MiB "
              "| validate: pooled MiB | validate: one call's token scores MiB | before: all texts' token scores MiB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for texts in (20_000, 50_000, 130_000):
        held = texts // 5
        p = projection(texts, held)
        lines.append(f"| {texts:,} ({held:,}) | {p['activations_mib']:,.0f} | {p['vectors_mib']:,.1f} | "
                     f"{p['reduce_pooled_mib']:,.0f} | {p['reduce_lda_scatter_mib']:,.0f} | "
                     f"{p['validate_pooled_mib']:,.0f} | {p['validate_call_series_mib']:,.0f} | "
                     f"{p['validate_series_all_texts_mib']:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="", help="comma-separated node counts, e.g. 2000,20000,50000")
    p.add_argument("--baseline", type=Path, default=None, help="a checkout whose pairs and validate to time too")
    p.add_argument("--skip-extract", action="store_true",
                   help="validate random calibrated vectors instead of extract + reduce (validate's cost is the same)")
    p.add_argument("--width", action="store_true", help="reduce + validate at hidden 5120 on synthetic activations")
    p.add_argument("--width-per-class", type=int, default=6, help="train texts per (concept, polarity); held out: half")
    p.add_argument("--width-tokens", type=int, default=256, help="token rows per text in the width validate")
    p.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir, kept)")
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    out_json = args.out / "benchmarks-scale.json"
    res: dict[str, Any] = json.loads(out_json.read_text()) if out_json.is_file() else {}
    res.update(command="python scripts/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_before=os.getloadavg(),
               machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                       f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB, "
                       f"Python {platform.python_version()}")
    if args.sizes:
        model = work / "tiny-llama"
        if not (model / "config.json").is_file():  # in a child: this process stays small (see run_child)
            run_child(["-c", f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); from tiny_models import "
                             f"build_tiny_llama; build_tiny_llama(__import__('pathlib').Path({str(model)!r}))"],
                      ROOT, work / "model.log")
        rows = {r["nodes"]: r for r in res.get("sizes", [])}  # sizes run before and not now are kept
        for n in args.sizes.split(","):
            rows[int(n)] = run_size(int(n), work / f"n{n}", model, args.baseline, args.skip_extract)
        res["sizes"] = [rows[n] for n in sorted(rows)]
        if args.baseline:
            res["baseline"] = str(args.baseline)
    if args.width:
        res["width"] = run_width(work / "width", args.width_per_class, args.width_tokens, 5120, 200)
    res["load_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "benchmarks-scale.md").write_text(render(res))
    print(render(res))


if __name__ == "__main__":
    main()
