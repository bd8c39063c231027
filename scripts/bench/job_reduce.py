"""Production-shaped synthetic shards and the ``reduce`` measurement: ``python -m bench.job_reduce JOB.json``.

``write_shards`` streams a dataset dir and an activations dir shard by shard
(never the whole array in memory): ``emotions`` concepts, each with
``per_class`` positives and ``per_class`` negatives drawn as distinct texts
uniformly from ``texts`` texts (a text can serve many concepts), 20 % of texts
held out (as ``pairs`` does, per text), activations ``N(0, 1)`` plus a shared
offset plus, for each positive text, a planted unit direction of one of its
concepts. The ``reduce`` kind runs the library's :func:`amygdala_vllm.reduce.reduce`
in this process so its peak RSS is the process's.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .common import RssSampler, read_job, rss_bytes, timed, write_result


def write_shards(root: Path, *, emotions: int, per_class: int, texts: int, layers: list[int], hidden: int,
                 shard_size: int = 256, seed: int = 0) -> tuple[Path, Path, int]:
    """(dataset dir, activations dir, bytes of shard files)."""
    from amygdala_vllm.dataset import dataset_sha256
    from amygdala_vllm.formats import (CAPTURE_FILE, CAPTURE_FORMAT, LAYER_SEMANTICS, CaptureInfo, ExampleRecord,
                                       TextRecord, write_json)
    from amygdala_vllm.shards import Shard, shard_name, write_shard

    from .corpus import write_dataset

    rng = np.random.default_rng(seed)
    heldout = rng.random(texts) < 0.2
    records = [TextRecord(id=i, key=f"syn/{i:06d}", text=f"synthetic text {i}",
                          sha256=hashlib.sha256(f"synthetic text {i}".encode()).hexdigest()) for i in range(texts)]
    examples = []
    plant_of = np.full(texts, -1, dtype=np.int64)
    for e in range(emotions):
        chosen = rng.choice(texts, size=2 * per_class, replace=False)
        for k, t in enumerate(chosen):
            pol = "positive" if k < per_class else "negative"
            if pol == "positive":
                plant_of[t] = e
            examples.append(ExampleRecord(emotion=f"emotion_{e:03d}", polarity=pol, text_id=int(t),
                                          score=9.0 if pol == "positive" else None,
                                          split="heldout" if heldout[t] else "train"))
    examples.sort(key=lambda x: (x.emotion, x.polarity != "positive", x.text_id))
    ds_dir = root / "dataset"
    write_dataset(ds_dir, records, examples, {"kind": "bench-synthetic", "texts": texts, "emotions": emotions})
    sha = dataset_sha256(ds_dir)
    L = len(layers)
    plants = rng.standard_normal((emotions, L, hidden), dtype=np.float32)
    plants /= np.linalg.norm(plants, axis=-1, keepdims=True)
    offset = 10.0 * rng.standard_normal((L, hidden), dtype=np.float32)
    acts = root / "acts"
    acts.mkdir(parents=True, exist_ok=True)
    shards, nbytes = [], 0
    for k, j0 in enumerate(range(0, texts, shard_size)):
        ids = np.arange(j0, min(texts, j0 + shard_size), dtype=np.int64)
        mean = rng.standard_normal((len(ids), L, hidden), dtype=np.float32)
        mean += offset
        has = plant_of[ids] >= 0
        mean[has] += 0.5 * plants[plant_of[ids][has]]
        last = rng.standard_normal((len(ids), L, hidden), dtype=np.float32)
        info = write_shard(acts / shard_name(k), Shard(ids, np.full(len(ids), 80, np.int32), mean, last))
        shards.append(info)
        nbytes += (acts / shard_name(k)).stat().st_size
    write_json(acts / CAPTURE_FILE, CaptureInfo(
        format=CAPTURE_FORMAT, model="synthetic/model", model_fingerprint="fp-synthetic", layers=list(layers),
        layer_semantics=LAYER_SEMANTICS, hidden_size=hidden, num_hidden_layers=max(layers) + 2, dtype="bfloat16",
        pooling=["mean", "last"], skip_first_tokens=1, dataset_sha256=sha, vllm_version="0.0.0-synthetic",
        split="all", num_shards=1, shard_index=0, max_model_len=2048, overlong="truncate", texts_planned=texts,
        overlong_truncated=[], overlong_skipped=[], shards=shards))
    return ds_dir, acts, nbytes


def main() -> None:
    from amygdala_vllm.reduce import ReduceOptions, reduce

    job = read_job()
    root = Path(job["root"])
    if job["kind"] == "write":
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        secs, (ds, acts, nbytes) = timed(lambda: write_shards(
            root, emotions=job["emotions"], per_class=job["per_class"], texts=job["texts"], layers=job["layers"],
            hidden=job["hidden"]))
        write_result(job, {"seconds": secs, "shard_bytes": nbytes})
        return
    out = root / f"vectors-{job['method']}.safetensors"
    before = rss_bytes()
    with RssSampler() as rss:
        secs, res = timed(lambda: reduce([root / "acts"], root / "dataset", out,
                                         ReduceOptions(method=job["method"], force=True)))
    write_result(job, {"seconds": secs, "rss_before": before, "rss_peak_during": rss.peak,
                       "concepts": len(res.summary.concepts)})


if __name__ == "__main__":
    main()
