"""vLLM jobs, one engine per process: ``python -m bench.job_vllm JOB.json``.

Kinds:
- ``rows``: on one engine, rounds of plain prefill-only ``generate`` (no hooks),
  ``extract`` of the default 4 layers and of all layers on the subset, the
  order rotated every round so drift hits every row alike; then the headline
  ``extract`` over the full corpus.
- ``extract``: ``repeats`` extracts of one dataset (threading rows, memory rows),
  with RSS read after the engine started and sampled while extracting.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from .common import RssSampler, read_job, rss_bytes, timed, write_result


def _engine(job: dict[str, Any]) -> Any:
    from amygdala_vllm.vllm_ext.engine import open_engine

    return open_engine(_settings(job))


def _settings(job: dict[str, Any]) -> Any:
    from amygdala_vllm.engine_settings import GIB, EngineSettings

    return EngineSettings(model=job["model"], dtype="bf16", max_model_len=job["max_model_len"],
                          kv_cache_gb=job["kv_cache_bytes"] / GIB, batch_size=job["batch_size"])


def _plain(llm: Any, texts: list[str], batch_size: int) -> int:
    """What ``extract`` does minus capture: tokenize, then prefill-only generate in the same batches."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, temperature=0.0, skip_reading_prefix_cache=True)
    tok = llm.get_tokenizer()
    prompts = [list(tok.encode(t)) for t in texts]
    for b in range(0, len(prompts), batch_size):
        llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts[b : b + batch_size]], params, use_tqdm=False)
    return sum(len(p) for p in prompts)


def _extract(llm: Any, job: dict[str, Any], dataset: str, layers: list[int], out: Path) -> int:
    from amygdala_vllm.extract.run import ExtractOptions, run_extract

    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    opts = ExtractOptions(dataset_dir=Path(dataset), output_dir=out, layers=layers, engine=_settings(job),
                          shard_size=job.get("shard_size", 256), force=True)
    return run_extract(opts, llm=llm).tokens


def _texts(dataset: str) -> list[str]:
    from amygdala_vllm.dataset import load_dataset

    ds = load_dataset(Path(dataset))
    return [ds.texts[i].text for i in ds.text_ids()]


def run_rows(job: dict[str, Any], llm: Any) -> dict[str, Any]:
    work = Path(job["work_dir"])
    subset = job["subset"]
    texts = _texts(subset)
    rows: dict[str, Any] = {"plain": [], "extract4": [], "extract_all": []}
    tokens: dict[str, int] = {}
    actions = {
        "plain": lambda: _plain(llm, texts, job["batch_size"]),
        "extract4": lambda: _extract(llm, job, subset, job["layers"], work / "acts4"),
        "extract_all": lambda: _extract(llm, job, subset, list(range(job["num_layers"])), work / "acts_all"),
    }
    names = list(actions)
    for name in names:  # warm-up, not counted
        actions[name]()
    for r in range(job["repeats"]):
        for name in names[r % 3:] + names[: r % 3]:
            secs, n = timed(actions[name])
            rows[name].append(secs)
            tokens[name] = n
            print(f"  round {r}: {name} {secs:.2f} s ({n / secs:.0f} tok/s)", flush=True)
    head = []
    for r in range(job["headline_repeats"]):
        secs, n = timed(lambda: _extract(llm, job, job["corpus"], job["layers"], work / "acts_full"))
        head.append(secs)
        tokens["headline"] = n
        print(f"  headline {r}: {secs:.1f} s ({n / secs:.0f} tok/s)", flush=True)
    return {"rows": rows, "headline": head, "tokens": tokens, "subset_texts": len(texts)}


def run_extract_job(job: dict[str, Any], llm: Any) -> dict[str, Any]:
    out = Path(job["work_dir"]) / "acts"
    before = rss_bytes()
    runs, peaks = [], []
    n = 0
    for r in range(job["repeats"]):
        with RssSampler() as rss:
            secs, n = timed(lambda: _extract(llm, job, job["dataset"], job["layers"], out))
        runs.append(secs)
        peaks.append(rss.peak)
        print(f"  extract {r}: {secs:.2f} s ({n / secs:.0f} tok/s), peak RSS {rss.peak / 2**20:.0f} MiB", flush=True)
    return {"runs": runs, "tokens": n, "rss_after_start": before, "rss_peak_during": peaks}


def main() -> None:
    import torch

    job = read_job()
    t0 = time.perf_counter()
    llm = _engine(job)
    start = time.perf_counter() - t0
    threads = torch.get_num_threads()
    print(f"  engine started in {start:.1f} s; torch threads {threads}", flush=True)
    result = run_rows(job, llm) if job["kind"] == "rows" else run_extract_job(job, llm)
    result.update(engine_start_s=start, torch_threads=threads)
    write_result(job, result)


if __name__ == "__main__":
    main()
