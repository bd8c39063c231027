"""runners/v2.py: the Model Runner V2 view, driven by real vLLM scheduler objects and a stand-in V2 runner.

Model Runner V2 cannot start on this CPU (no Triton for CPU; pinned UVA
buffers), so the runner is ``tests/v2_standin.py``: vLLM's real
``SchedulerOutput`` / ``NewRequestData`` / ``CachedRequestData`` /
``InputBuffers`` / ``InputBatch`` / ``sort_batch_req_ids``, and methods that
mirror ``GPUModelRunner.execute_model``, ``prepare_inputs``, ``sample_tokens``
and ``_dummy_run`` (named there, function by function). The facts are checked
where they are used: the real hooks (``LayerHooks``, ``TapHooks`` on tapped
layers) feed the real consumers (capture's ``PooledAccumulator``, readout's
``ScoreStore`` of every request, serving's ``ScoreStore`` of tagged ones), and the tiny model's
residual stream encodes each row's token id and position, so a row given to the
wrong request or position changes a number the test compares.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("vllm")

from v2_standin import HIDDEN, TinyModel, V2Runner, new_request, run_step, sampled_token, step, stream_of  # noqa: E402

from amygdala_vllm.errors import IncompatibleVLLMError  # noqa: E402
from amygdala_vllm.vllm_ext import probes  # noqa: E402
from amygdala_vllm.vllm_ext.hooks import LayerHooks, TapHooks  # noqa: E402
from amygdala_vllm.vllm_ext.layers import resolve_decoder_layers  # noqa: E402
from amygdala_vllm.vllm_ext.ops import TappedLayer, register_tap_op  # noqa: E402
from amygdala_vllm.vllm_ext.pooling import PooledAccumulator  # noqa: E402
from amygdala_vllm.vllm_ext.rpc import TAG_KEY  # noqa: E402
from amygdala_vllm.vllm_ext.runners import VIEWS, V2RunnerView, runner_kind, runner_view  # noqa: E402
from amygdala_vllm.vllm_ext.score_store import ScoreStore  # noqa: E402
from amygdala_vllm.vllm_ext.step import StepLayout  # noqa: E402

LAYERS = [0, 2]
#: Readout vectors per hooked layer: concept 0 reads the token id, concept 1 the position (stream_of).
VECTORS = [torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]) for _ in LAYERS]

A = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1]  # 10-token prompt, chunked 6 + 4
B = [4, 5, 6]
C = [7, 7, 8, 9, 2]


class Steps:
    """A consumer that records every step it is handed (for counting and for the exact layout)."""

    def __init__(self) -> None:
        self.layouts: list[StepLayout] = []
        self.rows: list[dict[int, torch.Tensor]] = []

    def begin_step(self, layout: StepLayout) -> None:
        self.layouts.append(layout)
        self.rows.append({})

    def add(self, layer_pos: int, stream: torch.Tensor) -> None:
        self.rows[-1][layer_pos] = stream[: self.layouts[-1].num_rows].clone()

    def end_step(self) -> None:
        pass


class Fanout:
    def __init__(self, *consumers: object) -> None:
        self.consumers = consumers

    def begin_step(self, layout: StepLayout) -> None:
        for c in self.consumers:
            c.begin_step(layout)  # type: ignore[attr-defined]

    def add(self, layer_pos: int, stream: torch.Tensor) -> None:
        for c in self.consumers:
            c.add(layer_pos, stream)  # type: ignore[attr-defined]

    def end_step(self) -> None:
        for c in self.consumers:
            c.end_step()  # type: ignore[attr-defined]


def _engine(tapped: bool, **runner_kw: object) -> tuple[V2Runner, V2RunnerView, Steps, PooledAccumulator,
                                                            ScoreStore, ScoreStore]:
    model = TinyModel()
    if tapped:  # what plugin.py does at load: TappedLayer around the tap layers (the compile-safe custom op)
        register_tap_op()
        for i in LAYERS:
            model.model.layers[i] = TappedLayer(model.model.layers[i], i, 64, HIDDEN, torch.float32,
                                                torch.device("cpu"))
    runner = V2Runner(model, **runner_kw)  # type: ignore[arg-type]
    view = runner_view(type("Worker", (), {"model_runner": runner})())
    assert isinstance(view, V2RunnerView)
    steps = Steps()
    pooled = PooledAccumulator(len(LAYERS), HIDDEN, skip_first_tokens=1)
    projected = ScoreStore(view, VECTORS, max_tokens_per_request=64)  # readout: every request
    served = ScoreStore(view, VECTORS, tag_key=TAG_KEY)  # serving: opted-in requests only
    decoder = resolve_decoder_layers(view.model())
    hooks = TapHooks if tapped else LayerHooks
    hooks(view, decoder, LAYERS, Fanout(steps, pooled, projected, served))
    return runner, view, steps, pooled, projected, served


def _drain(served: ScoreStore, tags: set[str]) -> dict:
    """Serving's drain (``take_tagged``), by engine request id."""
    return {r.req_id: r for r in served.take_tagged(tags, set())}


def _expected_mean(prompt: list[int], layer: int, skip: int = 1) -> torch.Tensor:
    return torch.tensor([stream_of(t, p, layer) for p, t in enumerate(prompt) if p >= skip]).mean(0)


def _check_pooled(pooled: PooledAccumulator, req_id: str, prompt: list[int]) -> None:
    got = pooled.pop(req_id)
    assert got.rows_seen == len(prompt) and got.num_tokens == len(prompt)
    for k, layer in enumerate(LAYERS):
        assert torch.allclose(got.mean[k], _expected_mean(prompt, layer))
        assert got.last[k].tolist() == stream_of(prompt[-1], len(prompt) - 1, layer)


def _check_projected(projected: ScoreStore, req_id: str, tokens: list[int]) -> None:
    (got,) = projected.take([req_id])
    assert got.positions.tolist() == list(range(len(tokens)))
    for k in range(len(LAYERS)):
        assert got.scores[:, k, 0].tolist() == [float(t) for t in tokens]
        assert got.scores[:, k, 1].tolist() == [float(p) for p in range(len(tokens))]


def _mixed_batch(runner: V2Runner) -> None:
    """Step 1: new A (chunk 6 of 10, opted in), new B (3, plain). Step 2: B decodes, A's last 4, new C (5)."""
    run_step(runner, step(new=[new_request("A", A, extra_args={TAG_KEY: "t1"}), new_request("B", B)],
                          scheduled={"A": 6, "B": 3}))
    run_step(runner, step(new=[new_request("C", C, extra_args={TAG_KEY: "t2", "other": 1})],
                          cached={"A": 6, "B": 3}, scheduled={"B": 1, "A": 4, "C": 5}))


@pytest.mark.parametrize(("tapped", "graphs"), [(False, "NONE"), (True, "NONE"), (True, "FULL")],
                         ids=["eager-hooks", "taps", "taps-full-graphs"])
def test_rows_of_a_mixed_chunked_batch_go_to_their_requests(tapped: bool, graphs: str) -> None:
    """FULL CUDA graphs pad the request count: query_start_loc_np has entries past num_reqs."""
    runner, view, steps, pooled, projected, served = _engine(tapped, cudagraph_mode=graphs)
    _mixed_batch(runner)
    assert len(steps.layouts) == 2
    second = steps.layouts[1]
    assert second.req_ids == ["B", "A", "C"]  # sort_batch_req_ids: the decode first, then by length
    assert second.starts.tolist() == [0, 1, 5, 10] and second.prompt_lens.tolist() == [3, 10, 5]
    assert second.positions.tolist() == [3, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    assert steps.rows[1][0][:, 0].tolist() == [sampled_token(3), *A[6:], *C]  # the tokens each row was fed
    _check_pooled(pooled, "A", A)
    _check_pooled(pooled, "C", C)
    _check_pooled(pooled, "B", B)  # its decode row (position 3) is past the prompt: ignored
    _check_projected(projected, "A", A)
    _check_projected(projected, "C", C)
    assert projected.take(["B"])[0].positions.tolist() == [0, 1, 2, 3]
    drained = _drain(served, {"t1", "t2"})
    assert sorted(drained) == ["A", "C"]  # B opted out: never scored
    a = drained["A"]
    assert a.prompt_len == 10 and a.positions.tolist() == list(range(10))
    assert a.token_ids.tolist() == A
    assert a.scores[:, 1, 0].tolist() == [float(t) for t in A]


def test_extra_args_of_opted_in_and_plain_requests() -> None:
    runner, view, *_ = _engine(False)
    _mixed_batch(runner)
    assert view.request_extra_args("A") == {TAG_KEY: "t1"}
    assert view.request_extra_args("C") == {TAG_KEY: "t2", "other": 1}
    assert view.request_extra_args("B") == {} and view.request_extra_args("never") == {}
    assert view.live_request_ids() == {"A", "B", "C"}


def test_n_greater_than_one_children_are_separate_requests() -> None:
    """n > 1: the engine sends each child ``{k}_{parent}`` with its own copy of the sampling params."""
    runner, view, steps, pooled, projected, served = _engine(True)
    kids = [f"{k}_cmpl-x-0-abcd1234" for k in range(3)]
    run_step(runner, step(new=[new_request(k, B, extra_args={TAG_KEY: "n3"}) for k in kids],
                          scheduled={k: 3 for k in kids}))
    run_step(runner, step(cached={k: 3 for k in kids}, scheduled={k: 1 for k in kids}))
    assert steps.layouts[1].req_ids == kids and steps.layouts[1].positions.tolist() == [3, 3, 3]
    drained = _drain(served, {"n3"})
    assert sorted(drained) == kids
    for kid in kids:
        _check_pooled(pooled, kid, B)
        assert drained[kid].positions.tolist() == [0, 1, 2, 3]
        assert drained[kid].token_ids.tolist() == [*B, sampled_token(3)]


def test_preemption_then_re_add_replaces_the_earlier_rows() -> None:
    """V2 removes a preempted request and re-sends it as new: its positions are recomputed from 0.

    B had generated a token before it was preempted, so it comes back with
    ``prefill_token_ids`` = prompt + that token: its prompt length stays 3
    (``req_states.prompt_len``), while ``prefill_len`` is 4.
    """
    runner, view, steps, pooled, projected, served = _engine(True)
    run_step(runner, step(new=[new_request("A", A, extra_args={TAG_KEY: "t"}), new_request("B", B)],
                          scheduled={"A": 6, "B": 3}))
    run_step(runner, step(cached={"B": 3}, scheduled={"B": 1}, preempted={"A"}))
    assert view.live_request_ids() == {"B"} and view.request_extra_args("A") == {}
    run_step(runner, step(new=[new_request("A", A, extra_args={TAG_KEY: "t"})], cached={"B": 4},
                          scheduled={"B": 1, "A": 10}))
    assert view.request_extra_args("A") == {TAG_KEY: "t"}
    assert steps.layouts[2].req_ids == ["B", "A"] and steps.layouts[2].positions.tolist()[1:] == list(range(10))
    run_step(runner, step(cached={"A": 10}, scheduled={"A": 1}, preempted={"B"}))
    run_step(runner, step(new=[new_request("B", B, prefill=[*B, sampled_token(3)])], cached={"A": 11},
                          scheduled={"A": 1, "B": 4}))
    assert steps.layouts[-1].req_ids == ["A", "B"] and steps.layouts[-1].prompt_lens.tolist() == [10, 3]
    _check_pooled(pooled, "A", A)  # recomputed rows replaced the first chunk's, not added to them
    _check_pooled(pooled, "B", B)
    held = _drain(served, {"t"})["A"]
    assert held.positions.tolist() == list(range(12))  # positions 0-5 computed twice: each handed out once
    assert held.token_ids[:10].tolist() == A and held.scores[:, 1, 1].tolist() == [float(p) for p in range(12)]
    from amygdala_vllm.serve.assemble import SequenceScores

    seq = SequenceScores()
    seq.add(held.positions, held.token_ids, held.scores, prompt_len=held.prompt_len)
    assert seq.positions() == list(range(12)) and seq.rows(list(range(10)))[0] == A


def test_finished_and_aborted_requests_are_forgotten() -> None:
    """Aborted requests reach the worker as finished_req_ids too (EngineCore.abort_requests -> scheduler)."""
    runner, view, steps, pooled, projected, served = _engine(False)
    _mixed_batch(runner)
    run_step(runner, step(cached={"A": 10, "C": 5}, scheduled={"A": 1, "C": 1}, finished={"B"}))
    assert view.live_request_ids() == {"A", "C"} and view.request_extra_args("B") == {}
    run_step(runner, step(finished={"A", "C"}))  # nothing scheduled: V2 returns before prepare_inputs
    assert view.live_request_ids() == set()
    assert view.request_extra_args("A") == {} and view.request_extra_args("C") == {}
    assert view._step.extra_args == {}  # nothing kept for requests the runner dropped
    assert view.step_bookkeeping()[0] == []  # and no stale batch after a step without a forward


@pytest.mark.parametrize("tapped", [False, True], ids=["eager-hooks", "taps"])
def test_a_dummy_run_is_an_empty_step_never_a_stale_batch(tapped: bool) -> None:
    runner, view, steps, pooled, projected, served = _engine(tapped)
    req_ids, starts, lens = view.step_bookkeeping()
    assert req_ids == [] and starts.tolist() == [0] and lens.tolist() == []  # before any step
    run_step(runner, step(new=[new_request("A", A, extra_args={TAG_KEY: "t"})], scheduled={"A": 6}))
    assert view.step_bookkeeping()[0] == ["A"]
    runner._dummy_run(8)  # profile / capture / DP-idle run: invented ids, no prepare_inputs
    assert view.step_bookkeeping()[0] == []
    runner._dummy_sampler_run(torch.zeros(2, HIDDEN))  # compute_logits outside any step
    assert all(layout.num_rows == 0 for layout in steps.layouts[1:])
    run_step(runner, step(cached={"A": 6}, scheduled={"A": 4}))
    _check_pooled(pooled, "A", A)
    _check_projected(projected, "A", A)


def test_the_second_logits_pass_of_prompt_logprobs_is_seen_once() -> None:
    runner, view, steps, pooled, projected, served = _engine(True, prompt_logprobs_chunk=4)
    _mixed_batch(runner)
    calls = runner.model.logits_processor.calls
    assert calls == 2 * (1 + 3)  # per step: sampling, then 3 prompt-logprob chunks of the 9-10 rows
    assert len(steps.layouts) == 2
    _check_pooled(pooled, "A", A)
    _check_projected(projected, "C", C)


def test_the_view_wraps_the_instance_once_never_the_class() -> None:
    from vllm.v1.worker.gpu.model_runner import GPUModelRunner

    runner = V2Runner(TinyModel())
    first, second = V2RunnerView(runner), V2RunnerView(runner)
    assert first._step is second._step and "prepare_inputs" in vars(runner) and "execute_model" in vars(runner)
    assert "prepare_inputs" not in vars(V2Runner) or vars(V2Runner)["prepare_inputs"] is V2Runner.prepare_inputs
    assert GPUModelRunner.prepare_inputs.__qualname__ == "GPUModelRunner.prepare_inputs"
    run_step(runner, step(new=[new_request("A", B)], scheduled={"A": 3}))
    assert second.step_bookkeeping()[2].tolist() == [3]


def test_runner_facts_of_the_v2_view() -> None:
    runner = V2Runner(TinyModel(), cudagraph_mode="FULL")
    view = V2RunnerView(runner)
    assert view.graph_wrapped() is True and view.compiles() is False and view.ensure_pipeline_buffers() is False
    assert V2RunnerView(V2Runner(TinyModel())).graph_wrapped() is False
    assert view.model() is runner.model and view.device() == torch.device("cpu")
    assert view.runner_class().endswith("v2_standin.V2Runner")
    run_step(runner, step(new=[new_request("A", A)], scheduled={"A": 6}))
    assert view.step_positions(6).tolist() == list(range(6))  # from input_buffers, what a graph replays from
    assert view.step_positions(6).data_ptr() == runner.input_buffers.positions.data_ptr()
    assert view.step_input_ids(6).tolist() == A[:6]


def test_runner_kind_from_the_real_v2_classes_and_a_refused_standalone() -> None:
    from vllm.v1.worker.cpu.model_runner import CPUModelRunner
    from vllm.v1.worker.gpu.model_runner import GPUModelRunner

    assert VIEWS["v2"] is V2RunnerView and V2RunnerView.VERSIONS == ((0, 32), (0, 33), (0, 34))
    for cls in (GPUModelRunner, CPUModelRunner):
        assert runner_kind(object.__new__(cls)) == "v2"
    assert runner_kind(V2Runner(TinyModel())) == "v2"  # a stand-in: by its prepare_inputs and req_states
    # vLLM 0.34's non-x86 CPU runner (not in the installed 0.32): same module path, a class of its own.
    standalone = type("StandaloneCPUModelRunner", (), {"__module__": "vllm.v1.worker.cpu.standalone_model_runner"})
    assert runner_kind(standalone()) == "v2-standalone"
    with pytest.raises(IncompatibleVLLMError) as info:
        runner_view(type("Worker", (), {"model_runner": standalone()})())
    message = str(info.value)
    assert "\n" not in message and f"vLLM {probes.vllm_version()}" in message and "'v2-standalone'" in message


def test_missing_v2_internals_name_the_piece() -> None:
    from types import SimpleNamespace

    with pytest.raises(IncompatibleVLLMError, match="execute_model / prepare_inputs"):
        V2RunnerView(SimpleNamespace(req_states=None))
    runner = V2Runner(TinyModel())
    view = V2RunnerView(runner)
    del runner.input_buffers
    with pytest.raises(IncompatibleVLLMError, match="model_runner.input_buffers.positions"):
        view.step_positions(1)
    view._step.batch = SimpleNamespace(num_reqs=1, req_ids=["a"], query_start_loc_np=np.array([0, 1]),
                                       idx_mapping_np=np.array([0]))
    del runner.req_states
    with pytest.raises(IncompatibleVLLMError, match="Model Runner V2 step bookkeeping"):
        view.step_bookkeeping()


def test_reads_declare_every_wrapped_method_with_its_parameters() -> None:
    """The version check reads READS: each wrapped method carries the parameter names it was verified with."""
    import inspect

    from vllm.v1.worker.gpu.model_runner import GPUModelRunner

    wrapped = {r.name: r for r in V2RunnerView.READS if r.kind == "method" and r.params}
    for name in ("GPUModelRunner.execute_model", "GPUModelRunner.prepare_inputs"):
        params = list(inspect.signature(getattr(GPUModelRunner, name.split(".")[1])).parameters)[1:]
        assert params[: len(wrapped[name].params)] == list(wrapped[name].params)
    for record in V2RunnerView.READS:  # every declared piece is in the installed vLLM (0.32) unless limited
        if record.versions is not None and (0, 32) not in record.versions:
            continue
        module = __import__(record.module, fromlist=["_"])
        owner = record.name.split(".")[0]
        assert hasattr(module, owner), record
