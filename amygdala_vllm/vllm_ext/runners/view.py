"""What the hooks, the worker extension and serving read from a vLLM model runner: one small interface.

Model runners keep their per-step state differently (V1 holds a persistent
``input_batch`` and ``query_start_loc`` on the runner; Model Runner V2 builds a
per-step ``InputBatch`` and keeps no sampling params per request), so nothing
outside ``runners/`` touches a runner: the callers hold a :class:`RunnerView`
and call these methods. Each implementation raises
:class:`~amygdala_vllm.errors.IncompatibleVLLMError` (through
``probes.missing``) naming the vLLM version and the missing piece when an
internal it reads is not there.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from ..internals import Internal, Minor

__all__ = ["RunnerView"]


class RunnerView(Protocol):
    """One worker's model runner, as this project reads it."""

    #: The runner kind this view reads (``"v1"``); the key of ``runners.VIEWS``.
    kind: ClassVar[str]
    #: Every runner internal the view reads, one record each: what ``scripts/check_vllm.py`` checks.
    READS: ClassVar[tuple[Internal, ...]]
    #: The vLLM minors whose releases have this runner (the check skips the view elsewhere).
    VERSIONS: ClassVar[tuple[Minor, ...]]

    def runner_class(self) -> str:
        """The runner's qualified class name (``module.Class``), for logs and ``amygdala_runner_info``."""
        ...

    def model(self) -> torch.nn.Module:
        """The top-level model module, with any CUDA-graph wrapper taken off (module hooks attach here)."""
        ...

    def device(self) -> torch.device:
        """Where the model's weights (and so its activations) live."""
        ...

    def model_config(self) -> Any:
        """vLLM's ``ModelConfig`` of this engine (``get_hidden_size()``, ``max_model_len``, ``model``)."""
        ...

    def graph_wrapped(self) -> bool:
        """True if the runner calls its model through a CUDA-graph wrapper (replays run no module hooks)."""
        ...

    def compiles(self) -> bool:
        """True if vLLM compiles the model (per-layer forward hooks would never fire)."""
        ...

    def step_bookkeeping(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """This step's internal request ids (row order), row offsets ``[R+1]`` int64 and prompt lengths ``[R]`` int64."""
        ...

    def step_positions(self, num_rows: int) -> torch.Tensor:
        """Positions of this step's first ``num_rows`` rows from buffers that outlive the forward.

        ``[N]``, or ``[3, N]`` for M-RoPE models; readable after a forward whose
        module hooks never ran (a compiled graph or a CUDA-graph replay).
        """
        ...

    def step_input_ids(self, num_rows: int) -> torch.Tensor:
        """The token ids fed to the model for this step's first ``num_rows`` rows (on the model's device)."""
        ...

    def live_request_ids(self) -> set[str]:
        """Internal ids of the requests the runner still holds (running or preempted; finished ones are gone)."""
        ...

    def request_extra_args(self, req_id: str) -> dict[str, Any]:
        """A live request's ``SamplingParams.extra_args`` (a served request's ``vllm_xargs``); ``{}`` if none."""
        ...

    def ensure_pipeline_buffers(self) -> bool:
        """Allocate a later pipeline stage's receive buffers if vLLM has not; True if this call did."""
        ...
