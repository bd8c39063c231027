#!/usr/bin/env bash
# The main job on the bundled default data, from a fresh machine:
#   set up .venv/, then pairs -> extract -> reduce -> validate on SmolLM2-135M-Instruct (offline).
# Outputs land in runs/ (dataset/, activations/, amygdala.safetensors + .manifest.json, report/).
# reduce (--method auto, the default) prints the method cross-validation chose per layer on the train split;
# validate prints held-out AUROC, the specificity summary (sibling AUROC, identification, valence
# dominance, recommended layers), that choice beside its held-out figures (a large gap warns) and,
# with --compare-methods, every reduce method ranked per layer.
# Extra arguments are passed to `validate` (e.g. --min-auroc 0.7).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
cli="$root/.venv/bin/amygdala-vllm"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

"$cli" pairs --output-dir runs/dataset
# Resumes when runs/activations already holds this dataset's capture; starts over when the dataset changed.
"$cli" extract --model smollm2 --training-data-dir runs/dataset --output-dir runs/activations \
  || "$cli" extract --model smollm2 --training-data-dir runs/dataset --output-dir runs/activations --force
"$cli" reduce --activations runs/activations --training-data-dir runs/dataset \
  --output runs/amygdala.safetensors --force
"$cli" validate --vectors runs/amygdala.safetensors --training-data-dir runs/dataset \
  --output-dir runs/report --compare-methods --activations runs/activations "$@"
