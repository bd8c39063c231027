#!/usr/bin/env bash
# The GPU check (docs/gpu.md): capture vs HF parity (fp32, bf16), batch / chunked-prefill invariance,
# CUDA graphs vs --enforce-eager, and an `amygdala-vllm serve` round trip with the openai client,
# on a tiny random Llama built on the spot. Needs a CUDA GPU and vLLM (0.34: Model Runner V2).
#
#   pip install 'amygdala-vllm[gpu,test]'    # or, in a checkout: pip install -e '.[gpu,test]'
#   scripts/gpu_check.sh                     # uses the python on PATH (or $PYTHON); extra flags pass through
#
# Prints a pass/fail table; exit status 1 on any failure. Logs and results: ./gpu_check_work/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
"$python" -c "import vllm, transformers, openai" 2>/dev/null || {
  echo "UsageError: this Python lacks vllm, transformers or openai; run: pip install 'amygdala-vllm[gpu,test]'" >&2
  exit 1
}
export PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$here/gpu_check.py" "$@"
