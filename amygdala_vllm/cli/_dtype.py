"""``--dtype auto`` in the CLI: resolve once, print the choice in one line (stderr), pass the concrete dtype on."""

from __future__ import annotations

from ._app import err_console

__all__ = ["DTYPE_HELP", "MAX_MODEL_LEN_HELP", "announce_dtype"]

DTYPE_HELP = ("Model dtype: auto, bf16, fp16 or fp32. auto = bf16 on a GPU or a CPU with native bf16 "
              "(avx512_bf16/amx_bf16), else fp32 (bf16 is ~7x slower where the CPU emulates it).")
MAX_MODEL_LEN_HELP = "Context length handed to vLLM (default: the model's own, at most 4096)."


def announce_dtype(dtype: str) -> str:
    """The concrete dtype for ``dtype`` (``auto`` resolved for this machine), printed once to stderr."""
    from ..dtype_choice import resolve_dtype

    choice = resolve_dtype(dtype)
    err_console.print(choice.describe(), highlight=False)
    return choice.dtype
