"""Held-out figures of every ``reduce`` method variant and of ``--method auto``, offline, from one activations dir.

Each variant (``reduce/variants.py``) and ``auto`` is reduced from the train
split (the very ``reduce()`` the CLI runs), then its vectors project the
held-out texts of the same activations dir (``extract --split all``) and
``separation/specificity.py`` scores them per layer. Prints markdown tables:
per method the figures at its recommended layer (best held-out median sibling
AUROC; best one-vs-rest AUROC with a single concept) and at a fixed ``--layer``,
then ``auto``'s choice per layer with its cross-validated (train) and held-out
figures side by side. docs/reduce.md records the output.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python scripts/method_table.py \\
        --activations runs/activations --training-data-dir runs/dataset [--layer 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from amygdala_vllm.dataset import load_dataset
from amygdala_vllm.reduce import ReduceOptions, open_activations, reduce
from amygdala_vllm.reduce.variants import VARIANTS, project
from amygdala_vllm.validate.auto_check import auto_check
from amygdala_vllm.validate.evaluate import heldout_classes
from amygdala_vllm.separation.specificity import specificity
from amygdala_vllm.vectors_file import load


def _f(x, spec=".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--activations", type=Path, required=True)
    ap.add_argument("--training-data-dir", type=Path, required=True)
    ap.add_argument("--layer", type=int, default=None, help="also report every method at this layer")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    dataset = load_dataset(args.training_data_dir)
    runs = {"auto": {"method": "auto"}}
    runs.update({n: dict(method=m, neutral_variance=nv, remove_shared=k) for n, (m, nv, k) in VARIANTS.items()})
    results, specs, auto_man = {}, {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for name, fields in runs.items():
            out = Path(tmp) / f"{name}.safetensors"
            t0 = time.perf_counter()
            try:
                reduce([args.activations], args.training_data_dir, out, ReduceOptions(**fields))
            except Exception as exc:  # a variant the data cannot support (one concept: grand-mean, mlda)
                print(f"{name}: left out ({type(exc).__name__}: {exc})", file=sys.stderr)
                continue
            secs = time.perf_counter() - t0
            vec = load(out)
            man, v = vec.manifest, vec.stacked()
            if name == "auto":
                auto_man = man
            acts = open_activations([args.activations], dataset_sha256=dataset.sha256)
            held = heldout_classes(dataset, man.concepts)
            ids = np.unique(np.concatenate([a for p in held.values() for a in p]))
            ids = ids[acts.present(ids)]
            proj = project(acts, ids, man.pooling, {"v": v})["v"]
            acts.close()
            spec = specificity(man.concepts, man.layers, v, proj, ids, held)
            specs[name] = spec
            one = len(man.concepts) == 1
            key = (lambda l: l.median_one_vs_rest_auroc or 0.0) if one else (lambda l: l.median_sibling_auroc or 0.0)
            best = max(spec.layers, key=key)
            at = next((l for l in spec.layers if l.layer == args.layer), None)
            results[name] = {"seconds": secs, "best": best, "at": at}
    print(f"| method | recommended layer | 1-vs-rest AUROC | sibling AUROC | top-1 |"
          + (f" layer {args.layer}: 1-vs-rest / sibling / top-1 |" if args.layer is not None else "") + " reduce s |")
    print("|---|---|---|---|---|" + ("---|" if args.layer is not None else "") + "---|")
    for name, r in results.items():
        b, a = r["best"], r["at"]
        extra = (f" {_f(a.median_one_vs_rest_auroc)} / {_f(a.median_sibling_auroc)} / {_f(a.top1, '.2f')} |"
                 if a is not None else (" n/a |" if args.layer is not None else ""))
        print(f"| {name} | {b.layer} | {_f(b.median_one_vs_rest_auroc)} | {_f(b.median_sibling_auroc)} | "
              f"{_f(b.top1, '.2f')} |{extra} {r['seconds']:.1f} |")
    if auto_man is not None and "auto" in specs:
        print("\n`auto` per layer: cross-validated (train folds) vs held-out, merit = (sibling + top-1) / 2 "
              "(one-vs-rest with one concept)\n")
        print("| layer | chosen | kind | CV 1-vs-rest / sibling / top-1 | held-out 1-vs-rest / sibling / top-1 "
              "| CV merit | held-out merit | gap |")
        print("|---|---|---|---|---|---|---|---|")
        for row in auto_check(auto_man, specs["auto"]):
            print(f"| {row.layer} | {row.method} | {row.kind} | {_f(row.cv_one_vs_rest_auroc)} / "
                  f"{_f(row.cv_sibling_auroc)} / {_f(row.cv_top1, '.2f')} | {_f(row.heldout_one_vs_rest_auroc)} / "
                  f"{_f(row.heldout_sibling_auroc)} / {_f(row.heldout_top1, '.2f')} | {_f(row.cv_merit)} | "
                  f"{_f(row.heldout_merit)} | {_f(row.gap, '+.3f')}{' (!)' if row.warning else ''} |")
    if args.json:
        doc = {n: {"seconds": r["seconds"], "best_layer": r["best"].layer,
                   "layers": [{"layer": l.layer, "one_vs_rest": l.median_one_vs_rest_auroc,
                               "sibling": l.median_sibling_auroc, "top1": l.top1} for l in specs[n].layers]}
               for n, r in results.items()}
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
