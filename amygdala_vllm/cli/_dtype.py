"""``--dtype auto`` in the CLI: resolve once, print the choice in one line (stderr), pass the concrete dtype on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._app import err_console

if TYPE_CHECKING:
    from ..dtype_choice import DtypeChoice

__all__ = ["DTYPE_HELP", "MAX_MODEL_LEN_HELP", "announce_dtype", "choose_dtype"]

DTYPE_HELP = ("Model dtype: auto, bf16, fp16 or fp32. auto = bf16 on a GPU or a CPU with native bf16 "
              "(avx512_bf16/amx_bf16), else fp32 (bf16 is ~7x slower where the CPU emulates it).")
MAX_MODEL_LEN_HELP = "Context length handed to vLLM (default: the model's own, at most 4096)."


def choose_dtype(dtype: str) -> DtypeChoice:
    """``dtype`` with ``auto`` resolved for this machine (not printed yet: inputs are checked first)."""
    from ..dtype_choice import resolve_dtype

    return resolve_dtype(dtype)


def announce_dtype(choice: DtypeChoice) -> None:
    """Print the choice in one line on stderr, once, when the engine is about to start."""
    err_console.print(choice.describe(), highlight=False, soft_wrap=True)
