"""The engine flags every engine-starting command shares, declared once (``Annotated`` aliases).

``extract``, ``readout`` and ``validate`` each start a vLLM engine; their
``--dtype``, ``--max-model-len``, ``--kv-cache-gb``, parallel sizes and
``--compile/--eager`` used to be declared three times in two styles, and drifted
(help texts, defaults). A command takes one by annotating a parameter with the
alias and giving the default beside it, e.g. ``dtype: Dtype = "auto"``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ._dtype import DTYPE_HELP, MAX_MODEL_LEN_HELP

__all__ = ["Compile", "Dtype", "KvCacheGb", "MaxModelLen", "PipelineParallel", "TensorParallel"]

Dtype = Annotated[str, typer.Option("--dtype", help=DTYPE_HELP + " Pooling and projections accumulate in fp32.")]
MaxModelLen = Annotated[
    Optional[int], typer.Option("--max-model-len", help=MAX_MODEL_LEN_HELP + " Longer texts are truncated (extract: see --overlong).")
]
KvCacheGb = Annotated[
    float,
    typer.Option("--kv-cache-gb", help="KV cache size handed to vLLM, in GiB (always explicit: vLLM's CPU default takes most of RAM)."),
]
TensorParallel = Annotated[
    int, typer.Option("--tensor-parallel-size", help="Tensor-parallel ranks (GPUs, or CPU core groups); TP rank 0 reports.")
]
PipelineParallel = Annotated[
    int,
    typer.Option("--pipeline-parallel-size", help="Pipeline stages, each hooking the layers it owns; on CPU the cores are split across TP x PP ranks."),
]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile/--eager",
        help="Run vLLM's torch.compile graph with the layers tapped by a custom op (docs/compile.md) instead of "
        "eager mode with hooks (the default: on CPU compiling costs 1-2 min of start-up for a few % of speed).",
    ),
]
