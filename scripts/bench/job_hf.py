"""HF transformers baselines, written fairly: ``python -m bench.job_hf JOB.json``.

Both variants load the same prepared SmolLM2 folder in bf16, run under
``torch.inference_mode``, read ``output_hidden_states`` and pool exactly as
``extract`` does (per captured layer ``i`` = ``hidden_states[i + 1]``: mean over
real tokens from position 1, and the last real token; float32 numpy out).

- ``seed``: the seed's loop. Per emotion, its positives then its negatives, in
  batches of 4, right-padded; a text used by several emotions is run again.
- ``best``: every unique text once, sorted by length, batches of ``best_batch``
  (little padding), and the decoder cut after the last captured layer (+1, so
  that layer's output is not the final-normed one).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import read_job, summary, timed, write_result
from .counting import seed_batches


def _pool(hidden: tuple[Any, ...], mask: Any, layers: list[int]) -> tuple[np.ndarray, np.ndarray]:
    import torch

    m = mask.clone()
    m[:, 0] = 0  # skip_first_tokens = 1
    m = m.unsqueeze(-1).float()
    last_idx = mask.sum(1) - 1
    rows = torch.arange(mask.shape[0])
    means, lasts = [], []
    for i in layers:
        h = hidden[i + 1].float()
        means.append((h * m).sum(1) / m.sum(1).clamp(min=1))
        lasts.append(h[rows, last_idx])
    return torch.stack(means, 1).numpy(), torch.stack(lasts, 1).numpy()


def _forward(model: Any, tok: Any, texts: list[str], layers: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True,
                use_cache=False)
    mean, last = _pool(out.hidden_states, enc["attention_mask"], layers)
    return mean, last, int(enc["attention_mask"].sum())


def run_seed(model: Any, tok: Any, ds: Any, layers: list[int]) -> int:
    tokens = 0
    results = []
    for batch in seed_batches(ds.examples, 4):
        mean, last, n = _forward(model, tok, [ds.texts[t].text for t in batch], layers)
        results.append((mean, last))
        tokens += n
    return tokens


def run_best(model: Any, tok: Any, ds: Any, layers: list[int], batch: int, lengths: dict[int, int]) -> int:
    ids = sorted(ds.text_ids(), key=lambda t: (lengths[t], t))
    tokens = 0
    for b in range(0, len(ids), batch):
        mean, last, n = _forward(model, tok, [ds.texts[t].text for t in ids[b : b + batch]], layers)
        tokens += n
    return tokens


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from amygdala_vllm.dataset import load_dataset

    job = read_job()
    torch.set_num_threads(job["threads"])
    ds = load_dataset(Path(job["subset"]))
    layers = job["layers"]
    tok = AutoTokenizer.from_pretrained(job["model"])
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    seed_model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.bfloat16).eval()
    best_model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.bfloat16).eval()
    keep = max(layers) + 2
    best_model.model.layers = best_model.model.layers[:keep]
    best_model.config.num_hidden_layers = keep
    lengths = {t: len(tok(ds.texts[t].text, add_special_tokens=False)["input_ids"]) for t in ds.text_ids()}
    rows: dict[str, list[float]] = {"hf_seed": [], "hf_best": []}
    tokens: dict[str, int] = {}
    with torch.inference_mode():
        actions = {"hf_seed": lambda: run_seed(seed_model, tok, ds, layers),
                   "hf_best": lambda: run_best(best_model, tok, ds, layers, job["best_batch"], lengths)}
        run_best(best_model, tok, ds, layers, job["best_batch"], lengths)  # warm-up
        for r in range(job["repeats"]):
            for name in (list(actions) if r % 2 == 0 else list(actions)[::-1]):
                secs, n = timed(actions[name])
                rows[name].append(secs)
                tokens[name] = n
                print(f"  round {r}: {name} {secs:.2f} s ({n / secs:.0f} real tok/s)", flush=True)
    write_result(job, {"rows": rows, "tokens": tokens, "threads": torch.get_num_threads(),
                       "summary": {k: summary(v) for k, v in rows.items()}})


if __name__ == "__main__":
    main()
