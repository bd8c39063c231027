"""The GPU check users run: capture, readout and serving on a tiny random Llama, against HF and against each other.

Run ``scripts/gpu_check.sh`` (docs/gpu.md). Each engine runs in a child
process of its own (vLLM keeps distributed state in process globals, and a
torn-down engine breaks the next one in the same process), through the
project's public API only: ``vllm_ext.engine.open_engine`` +
``CaptureSession`` (what ``extract`` runs), ``readout.Readout`` (what
``readout``/``validate`` run), and ``amygdala-vllm serve`` driven by the
official ``openai`` client. The parent compares and prints a pass/fail table;
exit status 1 on any failure.

Engines (``--device cuda``; ``--quick`` keeps only the first):
- ``fp32-eager``: fp32, eager hooks, ``max_num_batched_tokens`` 64 so long
  prompts arrive in chunks; every prompt alone, then all in one batch;
- ``bf16-eager``: the same in bf16;
- ``fp32-graphs``: fp32, compiled with the tap op, CUDA graphs on (vLLM's default);
- ``serve``: ``amygdala-vllm serve`` (compiled, CUDA graphs) with random unit vectors.

Rows: capture vs HF transformers (fp32: max |diff| <= 1e-4 x max |HF|, the
~1e-6 rounding of reordered fp32 sums with a 100x margin; bf16: cosine >= 0.999
and max |diff| <= 5e-2 x max |HF|, bf16 keeping 8 mantissa bits, i.e. ~4e-3
per rounding, measured 0.9997 / 5e-2 against HF fp32 on CPU); batch 1 vs one
batch with chunked prefill (same engine; fp32 only: bf16 kernels are not batch
invariant); CUDA graphs vs eager (fp32, 1e-4 relative); served per-token scores
vs offline ``Readout`` scores (fp32, 1e-4 relative).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the package and the tiny-model builder / HF reference of a checkout

LAYERS = [0, 1, 2, 3]
SKIP = 1
BUDGET = 64  # max_num_batched_tokens of the eager engines: prompts above it are chunked
CONCEPTS = ["joy", "anger", "fear"]
FP32_REL, BF16_REL, BF16_COS = 1e-4, 5e-2, 0.999


def _prompts(model_dir: Path, n: int) -> list[list[int]]:
    """Token ids of ``n`` texts of 10 to ~200 tokens (with BOS), made of the builder's own sentences."""
    from tiny_models import TRAINING_TEXT
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    lines = [ln for ln in TRAINING_TEXT.splitlines() if ln.strip()]
    texts = [" ".join(lines[i % len(lines): i % len(lines) + 1 + (i * 3) % 6]) for i in range(n)]
    return [list(tok(t)["input_ids"]) for t in texts]


# -- child: one engine -------------------------------------------------------------------------------------


def run_engine(model_dir: Path, vectors: Path, out: Path, dtype: str, eager: bool, n: int) -> None:
    """Capture every prompt alone and all together, and score them with readout; save everything to ``out``."""
    from amygdala_vllm.readout.scorer import Readout
    from amygdala_vllm.engine_settings import EngineSettings
    from amygdala_vllm.vllm_ext.engine import CaptureSession, open_engine, runner_info

    prompts = _prompts(model_dir, n)
    settings = EngineSettings(model=str(model_dir), dtype=dtype, max_model_len=512, kv_cache_gb=0.25, batch_size=n,
                              compile=not eager, max_num_batched_tokens=BUDGET)
    llm = open_engine(settings, LAYERS)
    capture = CaptureSession(llm, LAYERS, SKIP)
    alone = [capture.run([p])[0] for p in prompts]
    together = capture.run(prompts)
    capture.close()
    with Readout(vectors, engine=settings, llm=llm) as readout:
        scores = [t.scores for t in readout.score_token_ids(prompts)]
    arrays = {"info": np.frombuffer(json.dumps(runner_info(llm)).encode(), np.uint8)}
    for k, (a, t, s) in enumerate(zip(alone, together, scores)):
        arrays.update({f"alone_mean_{k}": a.mean, f"alone_last_{k}": a.last, f"mean_{k}": t.mean,
                       f"last_{k}": t.last, f"scores_{k}": s})
    np.savez(out, **arrays)


def run_serve(model_dir: Path, vectors: Path, out: Path, n: int, device: str) -> None:
    """``amygdala-vllm serve`` (compiled, fp32) and the official client: each prompt's per-token raw scores."""
    from openai import OpenAI

    from amygdala_vllm.serve.process import free_port, running_server, server_env

    prompts = _prompts(model_dir, n)
    port = free_port()
    argv = [sys.executable, "-m", "amygdala_vllm", "serve", str(model_dir), "--vectors", str(vectors), "--host",
            "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "512",
            "--kv-cache-memory-bytes", str(256 << 20), "--max-num-batched-tokens", str(BUDGET), "--seed", "0"]
    if device == "cpu":
        argv.append("--eager")
    with running_server(argv, server_env(), out.with_suffix(".log"), port) as base:
        client = OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=120)
        name = client.models.list().data[0].id
        arrays = {}
        for k, ids in enumerate(prompts):
            resp = client.completions.create(model=name, prompt=ids, max_tokens=1, temperature=0.0,
                                             extra_body={"vllm_xargs": {"amygdala": "all", "amygdala_raw": 1}})
            am = resp.model_dump()["choices"][0]["amygdala"]
            arrays[f"scores_{k}"] = np.asarray(am["prompt"]["raw"], np.float32)
            arrays[f"positions_{k}"] = np.asarray(am["prompt"]["positions"], np.int64)
    np.savez(out, **arrays)


# -- parent ------------------------------------------------------------------------------------------------


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: a scale-free error that does not blow up on entries near zero."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest row cosine of two ``[..., H]`` arrays."""
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)).min())


class Table:
    """Rows of (check, measured, bound, pass)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, bool]] = []

    def add(self, check: str, value: float, bound: float, ok: bool | None = None, fmt: str = ".2e", op: str = "<=") -> None:
        ok = (value <= bound if op == "<=" else value >= bound) if ok is None else ok
        self.rows.append((check, format(value, fmt), f"{op} {format(bound, fmt)}", bool(ok)))

    def fail(self, check: str, why: str) -> None:
        self.rows.append((check, why, "", False))

    def render(self) -> str:
        w = max(len(r[0]) for r in self.rows)
        lines = [f"{'check':<{w}}  {'measured':>12}  {'bound':>12}  result", "-" * (w + 38)]
        lines += [f"{c:<{w}}  {v:>12}  {b:>12}  {'PASS' if ok else 'FAIL'}" for c, v, b, ok in self.rows]
        failed = sum(not r[3] for r in self.rows)
        lines.append(f"{len(self.rows) - failed} passed, {failed} failed")
        return "\n".join(lines)


def _child(args: argparse.Namespace, case: str, work: Path, log: Path, timeout: float) -> Path | str:
    """Run one case in a child process; its npz path, or why it failed (the log's last line)."""
    out = work / f"{case}.npz"
    cmd = [sys.executable, __file__, "--child", case, "--model", str(args.model), "--work", str(work),
           "--prompts", str(args.prompts), "--device", args.device]
    with open(log, "wb") as fh:
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout:.0f} s (log: {log})"
    if rc != 0 or not out.exists():
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        return f"exit {rc}: {lines[-1][:160] if lines else 'no output'} (log: {log})"
    return out


def _write_vectors(model_dir: Path, work: Path) -> Path:
    """Random unit vectors for the tiny model, written with the project's vectors-file writer."""
    from amygdala_vllm.formats import LAYER_SEMANTICS, READOUT_FORMAT, ReadoutManifest
    from amygdala_vllm.models import model_fingerprint
    from amygdala_vllm.vectors_file import encode_vectors, write_pair

    rng = np.random.default_rng(0)
    stored = rng.standard_normal((len(CONCEPTS), len(LAYERS), 128)).astype(np.float32)  # [E, L, H]
    stored /= np.linalg.norm(stored, axis=-1, keepdims=True)
    manifest = ReadoutManifest(format=READOUT_FORMAT, concepts=CONCEPTS, layers=LAYERS, layer_semantics=LAYER_SEMANTICS,
                               hidden_size=128, model=str(model_dir), model_fingerprint=model_fingerprint(str(model_dir)),
                               pooling="mean", method="caa", counts={}, calibration={})
    vec = work / "gpu_check.safetensors"
    write_pair(vec, encode_vectors(manifest, stored, "float32"), manifest, force=True)
    return vec


def _parity(table: Table, name: str, got: dict, hf: list[tuple[np.ndarray, np.ndarray]], bf16: bool) -> None:
    for mode, idx in (("mean", 0), ("last", 1)):
        a = np.stack([got[f"{mode}_{k}"] for k in range(len(hf))])
        b = np.stack([h[idx] for h in hf])
        if bf16:
            table.add(f"{name}: capture {mode} vs HF fp32, min cosine", _cos(a, b), BF16_COS, op=">=", fmt=".5f")
            table.add(f"{name}: capture {mode} vs HF fp32, rel max diff", _rel(a, b), BF16_REL)
        else:
            table.add(f"{name}: capture {mode} vs HF, rel max diff", _rel(a, b), FP32_REL)


def parent(args: argparse.Namespace) -> int:
    from hf_reference import HFReference

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.model is None:
        from tiny_models import build_tiny_llama

        args.model = build_tiny_llama(work / "tiny-llama")
    args.model = Path(args.model)
    vec = _write_vectors(args.model, work)
    prompts = _prompts(args.model, args.prompts)
    ref = HFReference(args.model)
    hf = [ref.pooled(p, LAYERS, SKIP) for p in prompts]
    hf_scores = None
    cases = ["fp32-eager"] if args.quick else ["fp32-eager", "bf16-eager", "fp32-graphs", "serve"]
    if args.device == "cpu" and not args.quick:
        cases = ["fp32-eager", "serve"]  # no CUDA graphs, and bf16 on CPU is another test (docs/gpu.md)
    table, results, started = Table(), {}, time.monotonic()
    for case in cases:
        t0 = time.monotonic()
        got = _child(args, case, work, work / f"{case}.log", args.case_timeout)
        print(f"{case}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        if isinstance(got, str):
            table.fail(f"{case}: ran", got)
            continue
        results[case] = dict(np.load(got))
    if "fp32-eager" in results:
        r = results["fp32-eager"]
        info = json.loads(bytes(r["info"]).decode())
        print(f"runner: {info.get('kind')} ({info.get('class')})", file=sys.stderr)
        _parity(table, "fp32-eager", r, hf, bf16=False)
        for mode in ("mean", "last"):
            a = np.stack([r[f"alone_{mode}_{k}"] for k in range(len(prompts))])
            b = np.stack([r[f"{mode}_{k}"] for k in range(len(prompts))])
            table.add(f"fp32-eager: batch 1 vs chunked batch of {len(prompts)}, {mode}", _rel(b, a), FP32_REL)
        hf_scores = [np.stack([ref.rows(p, LAYERS)[:, j] @ _matrix(vec, i).T for j, i in enumerate(LAYERS)], axis=1)
                     for p in prompts]
        table.add("fp32-eager: readout scores vs HF . vectors", max(_rel(r[f"scores_{k}"], s) for k, s in
                                                                    enumerate(hf_scores)), FP32_REL)
    if "bf16-eager" in results:
        _parity(table, "bf16-eager", results["bf16-eager"], hf, bf16=True)
    if "fp32-graphs" in results:
        g = results["fp32-graphs"]
        _parity(table, "fp32-graphs", g, hf, bf16=False)
        if "fp32-eager" in results:
            e = results["fp32-eager"]
            worst = max(_rel(g[f"{m}_{k}"], e[f"{m}_{k}"]) for m in ("mean", "last") for k in range(len(prompts)))
            table.add("CUDA graphs + compiled taps vs eager hooks, capture", worst, FP32_REL)
            worst = max(_rel(g[f"scores_{k}"], e[f"scores_{k}"]) for k in range(len(prompts)))
            table.add("CUDA graphs + compiled taps vs eager hooks, readout", worst, FP32_REL)
    if "serve" in results and "fp32-eager" in results:
        s, e = results["serve"], results["fp32-eager"]
        whole = all(np.array_equal(s[f"positions_{k}"], np.arange(len(p))) for k, p in enumerate(prompts))
        table.add("serve: every prompt position scored", float(whole), 1.0, ok=whole, fmt=".0f", op=">=")
        if whole:
            worst = max(_rel(s[f"scores_{k}"], e[f"scores_{k}"]) for k in range(len(prompts)))
            table.add("serve (openai client) vs offline readout scores", worst, FP32_REL)
    print(table.render())
    print(f"total {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0 if all(r[3] for r in table.rows) and table.rows else 1


def _matrix(vec: Path, layer: int) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(str(vec))[f"layer_{layer}.vectors"].astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--quick", action="store_true", help="fp32 eager engine only (capture parity and invariance)")
    p.add_argument("--model", type=Path, default=None, help="a tiny Llama folder (default: built on the spot)")
    p.add_argument("--work", type=Path, default=Path("gpu_check_work"), help="logs, vectors, results")
    p.add_argument("--prompts", type=int, default=12)
    p.add_argument("--case-timeout", type=float, default=420.0)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is None:
        if args.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                print("UsageError: no CUDA device here; this check needs a GPU (docs/gpu.md; --device cpu --quick "
                      "runs the reduced CPU mode)", file=sys.stderr)
                return 1
        return parent(args)
    work = Path(args.work)
    vec = work / "gpu_check.safetensors"
    out = work / f"{args.child}.npz"
    if args.child == "serve":
        run_serve(args.model, vec, out, args.prompts, args.device)
    else:
        dtype, mode = args.child.split("-")
        run_engine(args.model, vec, out, dtype, eager=(mode == "eager"), n=args.prompts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
