"""``--dtype auto``: CPU flag parsing and the choice, as pure functions of the machine's description."""

from __future__ import annotations

import pytest

from amygdala_vllm.dtype_choice import cpu_flags, cpu_has_native_bf16, resolve_dtype
from amygdala_vllm.errors import UsageError

# Trimmed from real /proc/cpuinfo texts of the two kinds of machine this project lands on.
AVX2_ONLY = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c rdrand avx2 bmi2 sha_ni
bugs\t\t: sysret_ss_attrs
"""
AVX512_BF16 = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 amx_tile
processor\t: 1
flags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 amx_tile
"""
AVX512_NO_BF16 = "flags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni\n"
AMX_ONLY = "flags\t: avx2 amx_bf16\n"


def test_cpu_flags_parsing() -> None:
    assert "avx2" in cpu_flags(AVX2_ONLY) and "avx512f" not in cpu_flags(AVX2_ONLY)
    assert "sysret_ss_attrs" not in cpu_flags(AVX2_ONLY)  # the bugs line is not flags
    assert cpu_flags("") == frozenset() and cpu_flags("model name: x\n") == frozenset()
    assert not cpu_has_native_bf16(AVX2_ONLY)
    assert not cpu_has_native_bf16(AVX512_NO_BF16)  # AVX-512 alone emulates bf16 too
    assert cpu_has_native_bf16(AVX512_BF16) and cpu_has_native_bf16(AMX_ONLY)
    assert not cpu_has_native_bf16("flags: avx512_bf16x\n")  # whole words only


@pytest.mark.parametrize("cpuinfo, gpu, want", [
    (AVX2_ONLY, None, "fp32"),
    (AVX512_NO_BF16, None, "fp32"),
    (AVX512_BF16, None, "bf16"),
    (AMX_ONLY, None, "bf16"),
    (AVX2_ONLY, True, "bf16"),  # a GPU decides, whatever the host CPU
    (AVX2_ONLY, False, "fp16"),  # a GPU without bf16 (V100, T4)
])
def test_auto(cpuinfo: str, gpu: bool | None, want: str) -> None:
    choice = resolve_dtype("auto", cuda_bf16=gpu, cpuinfo=cpuinfo)
    assert choice.dtype == want and choice.requested == "auto" and "auto" in choice.describe()


def test_explicit_dtype_wins_and_unknown_is_refused() -> None:
    for d in ("bf16", "fp16", "fp32"):
        assert resolve_dtype(d, cuda_bf16=None, cpuinfo=AVX2_ONLY).dtype == d
    assert resolve_dtype("bf16", cuda_bf16=None, cpuinfo=AVX2_ONLY).reason == "as requested"
    with pytest.raises(UsageError, match="unknown --dtype 'fp8'"):
        resolve_dtype("fp8")


def test_this_machine_resolves_to_a_concrete_dtype() -> None:
    assert resolve_dtype("auto").dtype in ("bf16", "fp16", "fp32")
