"""Check the compiled tap path under CUDA-graph replay, in plain torch (no vLLM needed).

vLLM on GPU compiles the decoder and replays CUDA graphs captured per padded
batch size; module hooks do not run on a replay. This script rebuilds that flow
around the project's own pieces and checks that nothing is lost or stale:

- the real tap op body and :class:`~amygdala_vllm.vllm_ext.ops.TappedLayer`,
  registered as ``torch.ops.vllm.amygdala_tap`` the way ``direct_register_custom_op``
  does (schema inferred, ``mutates_args=["out"]``, fake impl);
- a small vLLM-shaped decoder (layers return ``(hidden, residual)``), compiled by
  inductor and captured into one CUDA graph per padded size, inputs read from
  persistent ``input_ids`` / ``positions`` buffers as vLLM's runner does;
- a ``logits_processor`` module called eagerly after every replay, whose forward
  pre-hook builds the step layout from the runner-side buffers and feeds the real
  :class:`~amygdala_vllm.vllm_ext.pooling.PooledAccumulator` and
  :class:`~amygdala_vllm.vllm_ext.score_store.ScoreStore` on the GPU
  (what ``hooks.TapHooks`` does inside vLLM);
- prompts of many lengths, chunked across steps under a token budget, padded to
  the capture sizes.

Pooled means, last-token rows and per-token scores are compared with an eager,
uncompiled, one-prompt-at-a-time run of the same weights. Two controls show the
check can fail: a hook on the top-level model (it must not fire on replays) and
taps read with the previous step's layout (must differ). Timing tables compare
graph replays with and without taps at a production-like width, and give the
per-step cost of the hand-over (layout, pooling, projection onto 200 concepts).

Run: ``python scripts/cudagraph_check.py --out DIR`` on a CUDA machine (falls
back to compiled-without-graphs on CPU, for development). Writes
``DIR/cudagraph_check.json``; exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amygdala_vllm.vllm_ext import ops  # noqa: E402  (plain torch; no vLLM import)
from amygdala_vllm.vllm_ext.pooling import PooledAccumulator  # noqa: E402
from amygdala_vllm.vllm_ext.score_store import ScoreStore  # noqa: E402
from amygdala_vllm.vllm_ext.step import build_step_layout  # noqa: E402

_LIB: torch.library.Library | None = None


class _FedIds:
    """The one ``RunnerView`` method the score store reads when it scores every request: the step's input ids."""

    def __init__(self, ids: torch.Tensor | None = None) -> None:
        self.ids = ids

    def step_input_ids(self, num_rows: int) -> torch.Tensor:
        assert self.ids is not None
        return self.ids[:num_rows]


def register_tap_op_plain(dispatch_key: str) -> None:
    """``torch.ops.vllm.amygdala_tap`` as vLLM's ``direct_register_custom_op`` would define it."""
    global _LIB
    if hasattr(torch.ops.vllm, ops.OP_NAME):
        return
    _LIB = torch.library.Library("vllm", "FRAGMENT")
    schema = torch.library.infer_schema(ops._tap, mutates_args=["out"])
    _LIB.define(ops.OP_NAME + schema)
    _LIB.impl(ops.OP_NAME, ops._tap, dispatch_key)
    _LIB._register_fake(ops.OP_NAME, ops._tap_fake)


class RMSNorm(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + 1e-6)).to(x.dtype) * self.weight


class ToyLayer(nn.Module):
    """vLLM-shaped decoder layer: fused residual add, norm, MLP; returns ``(hidden, residual)``."""

    def __init__(self, hidden: int, ffn: int, max_pos: int):
        super().__init__()
        self.norm = RMSNorm(hidden)
        self.up = nn.Linear(hidden, ffn, bias=False)
        self.down = nn.Linear(ffn, hidden, bias=False)
        self.pos = nn.Embedding(max_pos, hidden)

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, residual: torch.Tensor | None):
        residual = hidden if residual is None else hidden + residual
        x = self.norm(residual) + 0.1 * self.pos(positions)
        return self.down(torch.nn.functional.silu(self.up(x))), residual


class ToyModel(nn.Module):
    """The compiled part (vLLM's ``@support_torch_compile`` inner model)."""

    def __init__(self, vocab: int, hidden: int, ffn: int, layers: int, max_pos: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(ToyLayer(hidden, ffn, max_pos) for _ in range(layers))
        self.norm = RMSNorm(hidden)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        hidden, residual = self.embed(input_ids), None
        for layer in self.layers:
            hidden, residual = layer(positions, hidden, residual)
        return self.norm(hidden + residual)


class LogitsProcessor(nn.Module):
    def forward(self, lm_head: nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
        return lm_head(hidden)


class ToyForCausalLM(nn.Module):
    """The top-level model the runner holds; vLLM wraps it for full CUDA graphs."""

    def __init__(self, model: ToyModel, vocab: int, hidden: int):
        super().__init__()
        self.model = model
        self.lm_head = nn.Linear(hidden, vocab, bias=False)
        self.logits_processor = LogitsProcessor()

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, positions)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.logits_processor(self.lm_head, hidden)


def install_taps(model: ToyModel, taps: list[int], rows: int) -> None:
    p = next(model.parameters())
    for i in taps:
        model.layers[i] = ops.TappedLayer(model.layers[i], i, rows, p.shape[-1], p.dtype, p.device)


class Runner:
    """What vLLM's runner keeps for replays: persistent inputs, one graph per padded size."""

    def __init__(self, top: ToyForCausalLM, sizes: list[int], max_tokens: int, device: torch.device, graphs: bool):
        self.top, self.sizes, self.graphs = top, sorted(sizes), graphs
        self.input_ids = torch.zeros(max_tokens, dtype=torch.long, device=device)
        self.positions = torch.zeros(max_tokens, dtype=torch.long, device=device)
        # like vLLM: the inner model is compiled, the top-level model stays eager, and a full CUDA
        # graph records the whole top-level call (so replays skip every module hook)
        top.model = torch.compile(top.model, dynamic=False)
        self.compiled = top
        self.entries: dict[int, tuple[torch.cuda.CUDAGraph | None, torch.Tensor | None]] = {}
        for s in self.sizes:
            self.compiled(self.input_ids[:s], self.positions[:s])  # compile / warm up this size
            if graphs:
                torch.cuda.synchronize()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    out = self.compiled(self.input_ids[:s], self.positions[:s])
                self.entries[s] = (g, out)
            else:
                self.entries[s] = (None, None)
        # runner-side step bookkeeping, filled before each step (like input_batch / query_start_loc)
        self.req_ids: list[str] = []
        self.query_start_loc: list[int] = [0]
        self.prompt_lens: list[int] = []

    def padded(self, n: int) -> int:
        for s in self.sizes:
            if s >= n:
                return s
        raise ValueError(f"{n} tokens exceed the largest capture size {self.sizes[-1]}")

    def step(self, ids: torch.Tensor, pos: torch.Tensor, req_ids: list[str], qsl: list[int],
             prompt_lens: list[int], last_rows: torch.Tensor) -> torch.Tensor:
        n = ids.shape[0]
        s = self.padded(n)
        self.req_ids, self.query_start_loc, self.prompt_lens = req_ids, qsl, prompt_lens
        self.input_ids[:n].copy_(ids)
        self.positions[:n].copy_(pos)
        self.input_ids[n:s].zero_()
        self.positions[n:s].zero_()
        graph, out = self.entries[s]
        if graph is not None:
            graph.replay()
        else:
            out = self.compiled(self.input_ids[:s], self.positions[:s])
        assert out is not None
        return self.top.compute_logits(out[:n][last_rows])


def schedule(prompts: list[list[int]], budget: int, max_batch: int) -> list[list[tuple[int, int, int]]]:
    """vLLM-like chunked prefill: each step takes (prompt, start, end) chunks until the token budget is spent."""
    done = [0] * len(prompts)
    steps: list[list[tuple[int, int, int]]] = []
    waiting = list(range(len(prompts)))
    while waiting:
        left, step = budget, []
        for i in list(waiting):
            if left == 0 or len(step) == max_batch:
                break
            take = min(left, len(prompts[i]) - done[i])
            step.append((i, done[i], done[i] + take))
            done[i] += take
            left -= take
            if done[i] == len(prompts[i]):
                waiting.remove(i)
        steps.append(step)
    return steps


def reference(model: ToyModel, prompts: list[list[int]], taps: list[int], device: torch.device) -> list[torch.Tensor]:
    """Eager, uncompiled, one prompt at a time: every token's residual stream at the tapped layers."""
    rows = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor(p, device=device)
            positions = torch.arange(len(p), device=device)
            hidden, residual, seen = model.embed(ids), None, {}
            for index, layer in enumerate(model.layers):
                inner = layer.inner if isinstance(layer, ops.TappedLayer) else layer
                hidden, residual = inner(positions, hidden, residual)
                seen[index] = (hidden + residual).float().cpu()
            rows.append(torch.stack([seen[i] for i in taps], dim=1))
    return rows


def correctness(device: torch.device, dtype: torch.dtype, graphs: bool, seed: int) -> dict:
    torch.manual_seed(seed)
    rnd = random.Random(seed)
    vocab, hidden, ffn, layers, taps = 512, 256, 512, 6, [0, 2, 5]
    budget, max_batch, sizes, skip = 96, 8, [8, 32, 96], 1
    with torch.device(device):
        model = ToyModel(vocab, hidden, ffn, layers, 1024).to(dtype=dtype).eval()
        install_taps(model, taps, rows=max(sizes))
        top = ToyForCausalLM(model, vocab, hidden).to(dtype=dtype).eval()
    vectors = [torch.nn.functional.normalize(torch.randn(5, hidden), dim=-1).to(device) for _ in taps]
    prompts = [[rnd.randrange(vocab) for _ in range(rnd.choice([1, 2, 3, 7, 20, 50, 95, 96, 97, 200, 300]))]
               for _ in range(40)]
    ref_rows = reference(model, prompts, taps, device)

    top_calls = {"n": 0}
    top.register_forward_pre_hook(lambda m, a: top_calls.__setitem__("n", top_calls["n"] + 1))
    with torch.inference_mode():
        runner = Runner(top, sizes, max(sizes), device, graphs)
    calls_at_capture = top_calls["n"]

    pooled = PooledAccumulator(len(taps), hidden, skip, device=device)
    fed = _FedIds()
    scored = ScoreStore(fed, [v.clone() for v in vectors], max_tokens_per_request=10_000)  # type: ignore[arg-type]
    tapped = ops.tapped_layers(model.layers)
    stale = {"prev": None, "worst_gap": 0.0}

    def after_forward(module: nn.Module, args: tuple) -> None:
        import numpy as np

        starts = np.asarray(runner.query_start_loc, dtype=np.int64)
        n = int(starts[-1])
        layout = build_step_layout(runner.req_ids, starts, runner.positions[:n], np.asarray(runner.prompt_lens))
        for consumer in (pooled, scored):
            consumer.begin_step(layout)
            for pos, i in enumerate(taps):
                consumer.add(pos, tapped[i].tap[:n])
            consumer.end_step()
        # control: this step's tap rows vs the rows the previous step left (what a stale read would see)
        cur = tapped[taps[-1]].tap[:n].float()
        if stale["prev"] is not None:
            m = min(n, stale["prev"].shape[0])
            stale["worst_gap"] = max(stale["worst_gap"], float((cur[:m] - stale["prev"][:m]).abs().max()) if m else 0.0)
        stale["prev"] = cur.clone()

    top.logits_processor.register_forward_pre_hook(after_forward)
    steps = schedule(prompts, budget, max_batch)
    with torch.inference_mode():
        for step in steps:
            ids, pos, qsl, req_ids, plens, lasts = [], [], [0], [], [], []
            for i, a, b in step:
                ids += prompts[i][a:b]
                pos += list(range(a, b))
                qsl.append(qsl[-1] + b - a)
                req_ids.append(f"req-{i}")
                plens.append(len(prompts[i]))
                lasts.append(qsl[-1] - 1)
            fed.ids = torch.tensor(ids, device=device)
            runner.step(fed.ids, torch.tensor(pos, device=device), req_ids, qsl, plens,
                        torch.tensor(lasts, device=device))
        if device.type == "cuda":
            torch.cuda.synchronize()

    worst = {"mean": 0.0, "last": 0.0, "scores": 0.0, "scale": 0.0}
    rows_ok = True
    for i, p in enumerate(prompts):
        got = pooled.pop(f"req-{i}")
        rows_ok &= got.rows_seen == len(p) and got.num_tokens == len(p)
        ref = ref_rows[i]  # [T, L, H]
        want_mean = ref[skip:].mean(0) if len(p) > skip else ref[-1]
        worst["mean"] = max(worst["mean"], float((got.mean - want_mean).abs().max()))
        worst["last"] = max(worst["last"], float((got.last - ref[-1]).abs().max()))
        worst["scale"] = max(worst["scale"], float(ref.abs().max()))
        (sc,) = scored.take([f"req-{i}"])
        rows_ok &= sc.positions.tolist() == list(range(len(p))) and sc.token_ids.tolist() == p
        want = torch.stack([ref[:, l] @ vectors[l].cpu().T for l in range(len(taps))], dim=1)
        worst["scores"] = max(worst["scores"], float((torch.from_numpy(sc.scores) - want).abs().max()))
    tol = (1e-4 if dtype == torch.float32 else 3e-2) * max(1.0, worst["scale"])
    result = {
        "dtype": str(dtype).replace("torch.", ""),
        "cuda_graphs": graphs,
        "prompts": len(prompts),
        "steps": len(steps),
        "capture_sizes": sizes,
        "max_abs_diff": {k: worst[k] for k in ("mean", "last", "scores")},
        "activation_scale": worst["scale"],
        "tolerance": tol,
        "rows_each_seen_once": bool(rows_ok),
        "top_level_hook_calls_during_steps": top_calls["n"] - calls_at_capture,
        "stale_read_control_gap": stale["worst_gap"],
    }
    result["passed"] = bool(
        rows_ok
        and max(worst["mean"], worst["last"], worst["scores"]) <= tol
        and (not graphs or result["top_level_hook_calls_during_steps"] == 0)
        and stale["worst_gap"] > 10 * tol
    )
    return result


def timing(device: torch.device, dtype: torch.dtype, repeats: int, hidden: int = 5120, ffn: int = 13824) -> list[dict]:
    """Graph replay time with and without taps at a 27B-like width (8 layers of hidden 5120, 4 tapped)."""
    rows = []
    layers, taps = 8, [1, 3, 5, 7]
    for n in (64, 1024, 4096):
        row = {"tokens": n}
        for label, with_taps in (("plain", False), ("tapped", True)):
            torch.manual_seed(0)
            with torch.device(device):
                model = ToyModel(1024, hidden, ffn, layers, 4096).to(dtype=dtype).eval()
                if with_taps:
                    install_taps(model, taps, rows=n)
                top = ToyForCausalLM(model, 1024, hidden).to(dtype=dtype).eval()
            with torch.inference_mode():
                runner = Runner(top, [n], n, device, graphs=device.type == "cuda")
                graph, _ = runner.entries[n]
                times = []
                for _ in range(repeats):
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                    for _ in range(20):
                        if graph is not None:
                            graph.replay()
                        else:
                            runner.compiled(runner.input_ids[:n], runner.positions[:n])
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times.append((time.perf_counter() - t) / 20 * 1e3)
            row[f"{label}_ms"] = min(times)
            print(f"timing: {n} tokens, {label}: {min(times):.3f} ms", flush=True)
            del runner, top, model
            if device.type == "cuda":
                torch.cuda.empty_cache()
        row["tap_overhead_pct"] = 100.0 * (row["tapped_ms"] / row["plain_ms"] - 1.0)
        rows.append(row)
    return rows


def consumer_timing(device: torch.device, dtype: torch.dtype, repeats: int, hidden: int = 5120,
                    concepts: int = 200) -> list[dict]:
    """Per-step cost of the host-side hand-over: step layout, pooling and projection of 4 tapped layers.

    This is everything the logits-processor hook does per step (including its
    host synchronisations), on buffers shaped like the taps of a 27B model.
    """
    import numpy as np

    rows = []
    layers = 4
    for n, reqs in ((64, 64), (2048, 8), (8192, 16)):
        taps = [torch.randn(n, hidden, device=device, dtype=dtype) for _ in range(layers)]
        vectors = [torch.nn.functional.normalize(torch.randn(concepts, hidden), dim=-1) for _ in range(layers)]
        starts = np.linspace(0, n, reqs + 1).astype(np.int64)
        positions = torch.from_numpy(np.concatenate([np.arange(c) for c in np.diff(starts)])).to(device)
        req_ids = [f"r{i}" for i in range(reqs)]
        plens = np.diff(starts) + 1  # every request still has one prompt token to go: nothing finishes
        row = {"tokens": n, "requests": reqs}
        for label in ("pool", "project"):
            times = []
            for _ in range(repeats):
                fed = _FedIds(torch.zeros(n, dtype=torch.int64, device=device))
                consumer = (PooledAccumulator(layers, hidden, 1, device=device) if label == "pool"
                            else ScoreStore(fed, vectors, max_tokens_per_request=1 << 20))  # type: ignore[arg-type]
                with torch.inference_mode():
                    for step in range(6):  # first step warms up; mean of the other five
                        if device.type == "cuda":
                            torch.cuda.synchronize()
                        t = time.perf_counter()
                        layout = build_step_layout(req_ids, starts, positions, plens)
                        consumer.begin_step(layout)
                        for k in range(layers):
                            consumer.add(k, taps[k][:n])
                        consumer.end_step()
                        if device.type == "cuda":
                            torch.cuda.synchronize()
                        if step:
                            times.append((time.perf_counter() - t) * 1e3)
            row[f"{label}_ms"] = float(np.median(times))
            print(f"consumer timing: {n} tokens, {label}: {row[f'{label}_ms']:.3f} ms", flush=True)
        if device.type == "cuda":  # where the projection's time goes: its one device-to-host copy per step
            block = torch.randn(n, layers, concepts, device=device)
            pinned = torch.empty(block.shape, dtype=block.dtype, pin_memory=True)
            for label, fn in (("d2h_pageable", lambda: block.to("cpu")),
                              ("d2h_pinned_then_clone", lambda: pinned.copy_(block).clone())):
                times = []
                for _ in range(repeats + 1):
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    fn()
                    times.append((time.perf_counter() - t) * 1e3)
                row[f"{label}_ms"] = float(np.median(times[1:]))
                print(f"consumer timing: {n} tokens, {label}: {row[f'{label}_ms']:.3f} ms", flush=True)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/cudagraph_check"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    register_tap_op_plain("CUDA" if cuda else "CPU")
    torch._dynamo.config.recompile_limit = 64  # one compile per (model, padded size); all must stay compiled
    report = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "correctness": [],
    }
    for dt in (torch.float32, torch.bfloat16):
        report["correctness"].append(correctness(device, dt, graphs=cuda, seed=0))
        print(f"correctness {dt}: {json.dumps(report['correctness'][-1])}", flush=True)
    if not args.no_timing:
        report["timing"] = timing(device, torch.bfloat16 if cuda else torch.float32, args.repeats)
        report["consumer_timing"] = consumer_timing(device, torch.bfloat16 if cuda else torch.float32, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cudagraph_check.json").write_text(json.dumps(report, indent=2))
    print(f"torch {report['torch']} on {report['device']}")
    print("| dtype | graphs | steps | max|d| mean | max|d| last | max|d| scores | tol | rows once | top hook calls | stale gap | pass |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in report["correctness"]:
        d = c["max_abs_diff"]
        print(f"| {c['dtype']} | {c['cuda_graphs']} | {c['steps']} | {d['mean']:.2e} | {d['last']:.2e} | "
              f"{d['scores']:.2e} | {c['tolerance']:.1e} | {c['rows_each_seen_once']} | "
              f"{c['top_level_hook_calls_during_steps']} | {c['stale_read_control_gap']:.2e} | {c['passed']} |")
    for t in report.get("timing", []):
        print(f"| {t['tokens']} tokens | plain {t['plain_ms']:.3f} ms | tapped {t['tapped_ms']:.3f} ms | "
              f"{t['tap_overhead_pct']:+.1f} % |")
    for t in report.get("consumer_timing", []):
        print(f"| hand-over, {t['tokens']} tokens / {t['requests']} requests | pool {t['pool_ms']:.3f} ms | "
              f"project {t['project_ms']:.3f} ms |")
    ok = all(c["passed"] for c in report["correctness"])
    print("PASSED" if ok else "FAILED")
    return 0 if ok and all(math.isfinite(t["tap_overhead_pct"]) for t in report.get("timing", [])) else 1


if __name__ == "__main__":
    sys.exit(main())
