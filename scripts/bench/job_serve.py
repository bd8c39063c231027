"""A generate (serving) workload with and without readout, one engine per process.

``python -m bench.job_serve JOB.json``. The job names the engine (compiled or
eager, tapped layers or none) and the modes to time on it, alternated in
rotating order each round so drift hits every mode alike:

- ``plain``: ``LLM.generate`` of ``prompts`` prompts x ``max_tokens`` greedy
  tokens (``ignore_eos``), readout off;
- ``readout``: the same with readout on (vectors over ``layers``), every prompt
  and generated token scored, and the scores drained after each round (the
  drain is part of the cost a server pays).

Readout vectors are random unit vectors, ``concepts`` per layer, written once
by the driver (their values do not change the cost).
"""

from __future__ import annotations

import time
from typing import Any

from .common import read_job, timed, write_result


def _engine(job: dict[str, Any]) -> Any:
    from amygdala_vllm.engine_settings import GIB, EngineSettings
    from amygdala_vllm.vllm_ext.engine import open_engine

    return open_engine(EngineSettings(model=job["model"], dtype="bf16", max_model_len=job["max_model_len"],
                                      kv_cache_gb=job["kv_cache_bytes"] / GIB, batch_size=job["prompts"],
                                      compile=not job["eager"]), job.get("taps") or [])


def _generate(llm: Any, prompts: list[list[int]], max_tokens: int) -> int:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, skip_reading_prefix_cache=True)
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    return sum(len(p) for p in prompts) + sum(len(o.outputs[0].token_ids) for o in outs)


def _readout_round(llm: Any, prompts: list[list[int]], max_tokens: int) -> int:
    n = _generate(llm, prompts, max_tokens)
    blobs = llm.collective_rpc("amygdala_readout_drain")
    if not any(blobs):
        raise RuntimeError("readout returned no scores")
    return n


def main() -> None:
    from amygdala_vllm.dataset import load_dataset
    from pathlib import Path

    job = read_job()
    t0 = time.perf_counter()
    llm = _engine(job)
    start = time.perf_counter() - t0
    print(f"  engine started in {start:.1f} s ({'eager' if job['eager'] else 'compiled'}, taps {job.get('taps')})",
          flush=True)
    ds = load_dataset(Path(job["subset"]))
    tok = llm.get_tokenizer()
    prompts = [list(tok.encode(ds.texts[i].text))[: job["max_prompt_tokens"]] for i in ds.text_ids()][: job["prompts"]]
    modes = list(job["modes"])
    if "readout" in modes:
        llm.collective_rpc("amygdala_readout_start", args=(job["vectors"], job["manifest"]))
    actions = {"plain": lambda: _generate(llm, prompts, job["max_tokens"]),
               "readout": lambda: _readout_round(llm, prompts, job["max_tokens"])}
    rows: dict[str, list[float]] = {m: [] for m in modes}
    tokens: dict[str, int] = {}
    for m in modes:  # warm-up, not counted
        actions[m]()
    for r in range(job["repeats"]):
        for m in modes[r % len(modes):] + modes[: r % len(modes)]:
            if m == "plain" and "readout" in modes:
                llm.collective_rpc("amygdala_readout_stop")
            if m == "readout":
                llm.collective_rpc("amygdala_readout_start", args=(job["vectors"], job["manifest"]))
            secs, n = timed(actions[m])
            rows[m].append(secs)
            tokens[m] = n
            print(f"  round {r}: {m} {secs:.2f} s ({n / secs:.0f} tok/s)", flush=True)
    write_result(job, {"rows": rows, "tokens": tokens, "engine_start_s": start,
                       "prompt_tokens": sum(len(p) for p in prompts), "prompts": len(prompts)})


if __name__ == "__main__":
    main()
