"""``--dtype auto``: the model dtype that runs fast and right on this machine.

bf16 only pays where the hardware computes in it. On a CPU without native bf16
(AVX2-only, or AVX-512 without ``avx512_bf16``) torch emulates it: measured on
an AVX2-only machine of this project's kind, a bf16 matmul ran at ~7 GFLOP/s
against ~69 GFLOP/s in fp32 on one thread, and ``extract`` of the bundled
sample took 595 s in bf16 against 92 s in fp32 (../shared/FACTS.md). So:

- a CUDA GPU: bf16 (fp16 on a GPU without bf16 support, e.g. V100/T4);
- a CPU with ``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``: bf16;
- any other CPU: fp32.

An explicit ``bf16``/``fp16``/``fp32`` always wins. The resolved dtype (never
``auto``) is what every file records. This module imports neither torch nor
vLLM at import time, so the CLI and ``setup.sh`` can call it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

__all__ = ["DTYPE_CHOICES", "DtypeChoice", "NATIVE_BF16_FLAGS", "check_dtype", "cpu_flags", "cpu_has_native_bf16",
           "resolve_dtype"]

DTYPE_CHOICES = ("auto", "bf16", "fp16", "fp32")

#: CPU flags (as ``/proc/cpuinfo`` spells them) that mean bf16 matmuls run in hardware.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a run uses and why, for the one line the CLI prints."""

    dtype: str  # bf16 | fp16 | fp32, never auto
    requested: str
    reason: str

    def describe(self) -> str:
        """``"dtype fp32 (auto: CPU has no native bf16 ...)"``, or ``"dtype bf16 (as requested)"``."""
        return f"dtype {self.dtype} ({self.reason})"


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first CPU listed in a ``/proc/cpuinfo`` text (``flags`` line on x86)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_has_native_bf16(cpuinfo: str) -> bool:
    """True if a ``/proc/cpuinfo`` text lists ``avx512_bf16`` or ``amx_bf16``."""
    return bool(cpu_flags(cpuinfo) & NATIVE_BF16_FLAGS)


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cuda_bf16() -> bool | None:
    """None without a CUDA GPU; else whether it supports bf16."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return bool(torch.cuda.is_bf16_supported())


def check_dtype(requested: str) -> None:
    """One line for a dtype that is not one of :data:`DTYPE_CHOICES` (the ``--dtype`` flag's)."""
    if requested not in DTYPE_CHOICES:
        raise UsageError(f"unknown --dtype {requested!r}; choose one of {', '.join(DTYPE_CHOICES)}")


def resolve_dtype(requested: str = "auto", *, cuda_bf16: bool | None | str = "detect",
                  cpuinfo: str | None = None) -> DtypeChoice:
    """Resolve ``auto`` for this machine; pass an explicit dtype through.

    ``cuda_bf16`` and ``cpuinfo`` describe the machine (detected when left out):
    ``cuda_bf16`` is None without a CUDA GPU, else whether the GPU does bf16.
    """
    check_dtype(requested)
    if requested != "auto":
        return DtypeChoice(requested, requested, "as requested")
    gpu = _cuda_bf16() if cuda_bf16 == "detect" else cuda_bf16
    if gpu is True:
        return DtypeChoice("bf16", "auto", "auto: CUDA GPU with bf16")
    if gpu is False:
        return DtypeChoice("fp16", "auto", "auto: CUDA GPU without bf16")
    flags = cpu_flags(_read_cpuinfo() if cpuinfo is None else cpuinfo)
    native = sorted(flags & NATIVE_BF16_FLAGS)
    if native:
        return DtypeChoice("bf16", "auto", f"auto: CPU has native bf16 ({', '.join(native)})")
    return DtypeChoice("fp32", "auto", "auto: CPU has no native bf16 (no avx512_bf16/amx_bf16), where fp32 is ~7x faster")
