"""Serving over HTTP: plain ``vllm serve`` vs ``amygdala-vllm serve`` with readout on 0/50/100 % of requests.

``python -m bench.job_serve_http JOB.json``. Both servers get the same vLLM
flags (compiled unless the job says eager; prefix caching off, so a readout
request's fresh cache salt changes nothing and the rows measure the readout
alone); the workload is ``prompts`` concurrent completions of token-id
prompts, ``max_tokens`` greedy tokens each (``ignore_eos``), sent with the
official ``openai`` client. On our server the rounds rotate through 0, 50 and
100 % of requests asking for every concept at every layer, per token; each
readout response is checked to carry its scores.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from .common import read_job, write_result


def _flags(job: dict[str, Any], port: int) -> list[str]:
    flags = ["--host", "127.0.0.1", "--port", str(port), "--dtype", job["dtype"], "--max-model-len",
             str(job["max_model_len"]), "--kv-cache-memory-bytes", str(job["kv_cache_bytes"]),
             "--max-num-seqs", str(job["prompts"]), "--no-enable-prefix-caching", "--seed", "0"]
    return flags + (["--enforce-eager"] if job["eager"] else [])


async def _round(base: str, model: str, prompts: list[list[int]], max_tokens: int, readout_every: int) -> int:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=1800)

    async def one(i: int) -> int:
        extra: dict[str, Any] = {"ignore_eos": True}
        scored = readout_every > 0 and i % readout_every == 0
        if scored:
            extra["vllm_xargs"] = {"amygdala": "all"}
        r = await client.completions.create(model=model, prompt=prompts[i], max_tokens=max_tokens, temperature=0,
                                            extra_body=extra)
        choice = r.model_dump()["choices"][0]
        if scored and not choice.get("amygdala", {}).get("completion"):
            raise RuntimeError("a readout response came back without scores")
        return len(prompts[i]) + int(r.usage.completion_tokens)

    try:
        return sum(await asyncio.gather(*(one(i) for i in range(len(prompts)))))
    finally:
        await client.close()


def _time_modes(base: str, job: dict[str, Any], prompts: list[list[int]], modes: dict[str, int],
                rows: dict[str, list[float]], tokens: dict[str, int]) -> None:
    import httpx

    model = httpx.get(base + "/v1/models").json()["data"][0]["id"]
    names = list(modes)
    for name in names:  # warm-up, not counted
        asyncio.run(_round(base, model, prompts, job["max_tokens"], modes[name]))
    for r in range(job["repeats"]):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t = time.perf_counter()
            n = asyncio.run(_round(base, model, prompts, job["max_tokens"], modes[name]))
            secs = time.perf_counter() - t
            rows.setdefault(name, []).append(secs)
            tokens[name] = n
            print(f"  round {r}: {name} {secs:.2f} s ({len(prompts) / secs:.2f} req/s, {n / secs:.0f} tok/s)",
                  flush=True)


def main() -> None:
    from amygdala_vllm.dataset import load_dataset
    from amygdala_vllm.serve.launch import API_SERVER_MODULE
    from amygdala_vllm.serve.process import free_port, running_server, server_env
    from transformers import AutoTokenizer

    job = read_job()
    work = Path(job["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(Path(job["subset"]))
    tok = AutoTokenizer.from_pretrained(job["model"])
    prompts = [list(tok.encode(ds.texts[i].text))[: job["max_prompt_tokens"]] for i in ds.text_ids()][: job["prompts"]]
    rows: dict[str, list[float]] = {}
    tokens: dict[str, int] = {}
    starts: dict[str, float] = {}
    env = server_env()
    env.pop("VLLM_PLUGINS", None)
    port = free_port()
    plain = [sys.executable, "-m", API_SERVER_MODULE, "--model", job["model"], *_flags(job, port)]
    t = time.perf_counter()
    with running_server(plain, env, work / "plain.log", port, timeout=900) as base:
        starts["plain_server"] = time.perf_counter() - t
        _time_modes(base, job, prompts, {"plain_server": 0}, rows, tokens)
    port = free_port()
    ours = [sys.executable, "-m", "amygdala_vllm", "serve", job["model"], "--vectors", job["vectors"],
            *_flags(job, port)]
    t = time.perf_counter()
    with running_server(ours, env, work / "amygdala.log", port, timeout=900) as base:
        starts["amygdala_server"] = time.perf_counter() - t
        _time_modes(base, job, prompts, {"readout_0": 0, "readout_50": 2, "readout_100": 1}, rows, tokens)
    write_result(job, {"rows": rows, "tokens": tokens, "server_start_s": starts, "prompts": len(prompts),
                       "prompt_tokens": sum(len(p) for p in prompts), "pid_env_threads": os.environ.get("OMP_NUM_THREADS")})


if __name__ == "__main__":
    main()
