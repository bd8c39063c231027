"""runners: the model-runner views, and the one table that picks a view per runner kind.

The happy paths run inside the real engine (test_vllm_ext_worker, test_capture_engine,
test_serve_endpoint, test_parallel); here the V1 view on runner-shaped objects, the
failure messages a vLLM upgrade would produce, and the dispatch.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from amygdala_vllm.errors import IncompatibleVLLMError
from amygdala_vllm.vllm_ext import probes, runners
from amygdala_vllm.vllm_ext.runners import VIEWS, RunnerView, V1RunnerView, V2RunnerView, runner_kind, runner_view


def _v1_runner(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(input_batch=SimpleNamespace(), query_start_loc=SimpleNamespace(), **fields)


def test_missing_internals_name_the_version_and_the_piece() -> None:
    version = re.escape(probes.vllm_version())
    with pytest.raises(IncompatibleVLLMError, match=rf"vLLM {version}: worker.model_runner not found"):
        runner_view(SimpleNamespace())
    with pytest.raises(IncompatibleVLLMError, match="model_runner.get_model"):
        V1RunnerView(SimpleNamespace(model=None)).model()
    with pytest.raises(IncompatibleVLLMError, match="step bookkeeping"):
        V1RunnerView(SimpleNamespace()).step_bookkeeping()  # a V2-style runner read as V1: no input_batch
    with pytest.raises(IncompatibleVLLMError, match="compilation_config.mode"):
        V1RunnerView(SimpleNamespace()).compiles()
    with pytest.raises(IncompatibleVLLMError, match=rf"vLLM {version}: model_runner.requests"):
        V1RunnerView(SimpleNamespace()).live_request_ids()
    with pytest.raises(IncompatibleVLLMError, match="model_runner.input_ids"):
        V1RunnerView(SimpleNamespace(input_ids=[1, 2])).step_input_ids(2)


def test_step_bookkeeping_reads_the_v1_runner_fields() -> None:
    runner = SimpleNamespace(
        input_batch=SimpleNamespace(num_reqs=2, req_ids=["a", "b", None], num_prompt_tokens=np.array([5, 3, 0])),
        query_start_loc=SimpleNamespace(cpu=torch.tensor([0, 5, 6, 6])),
    )
    req_ids, starts, prompt_lens = V1RunnerView(runner).step_bookkeeping()
    assert req_ids == ["a", "b"] and starts.tolist() == [0, 5, 6] and prompt_lens.tolist() == [5, 3]


def test_model_lookups_on_a_plain_module() -> None:
    model = torch.nn.Linear(2, 2)
    assert V1RunnerView(SimpleNamespace(get_model=lambda: model)).model() is model
    assert V1RunnerView(SimpleNamespace(model=model)).model() is model
    assert V1RunnerView(SimpleNamespace(model=model)).graph_wrapped() is False
    assert V1RunnerView(SimpleNamespace(model=object(), get_model=lambda: model)).graph_wrapped() is True
    assert V1RunnerView(SimpleNamespace(model=model)).device() == torch.device("cpu")
    assert V1RunnerView(SimpleNamespace(vllm_config=SimpleNamespace(
        compilation_config=SimpleNamespace(mode=0)))).compiles() is False


def test_step_buffers_and_requests_of_a_v1_runner() -> None:
    """Positions (a tensor or a CpuGpuBuffer-like ``.gpu``; M-RoPE's [3, N]), input ids, live requests, xargs."""
    pos = torch.arange(8)
    assert V1RunnerView(SimpleNamespace(positions=pos)).step_positions(3).tolist() == [0, 1, 2]
    assert V1RunnerView(SimpleNamespace(positions=SimpleNamespace(gpu=pos))).step_positions(2).tolist() == [0, 1]
    mrope = torch.arange(24).reshape(3, 8)
    got = V1RunnerView(SimpleNamespace(uses_mrope=True, mrope_positions=SimpleNamespace(gpu=mrope))).step_positions(2)
    assert got.tolist() == [[0, 1], [8, 9], [16, 17]]
    ids = SimpleNamespace(gpu=torch.tensor([7, 8, 9]))
    assert V1RunnerView(SimpleNamespace(input_ids=ids)).step_input_ids(2).tolist() == [7, 8]
    requests = {
        "a-1": SimpleNamespace(sampling_params=SimpleNamespace(extra_args={"amygdala_tag": "t"})),
        "b-2": SimpleNamespace(sampling_params=SimpleNamespace(extra_args=None)),
        "c-3": SimpleNamespace(sampling_params=None),
    }
    view = V1RunnerView(SimpleNamespace(requests=requests))
    assert view.live_request_ids() == {"a-1", "b-2", "c-3"}
    assert view.request_extra_args("a-1") == {"amygdala_tag": "t"}
    assert view.request_extra_args("b-2") == {} and view.request_extra_args("c-3") == {}
    assert view.request_extra_args("gone") == {}


def test_runner_view_picks_v1_for_a_v1_shaped_runner() -> None:
    runner = _v1_runner()
    view = runner_view(SimpleNamespace(model_runner=runner))
    assert isinstance(view, V1RunnerView) and view.kind == "v1" and view.runner is runner
    assert view.runner_class() == "types.SimpleNamespace"


def test_runner_view_refuses_a_runner_of_no_known_kind_with_the_exact_message() -> None:
    runner = SimpleNamespace(model=None)  # neither V1's persistent batch nor V2's prepare_inputs / req_states
    assert runner_kind(runner) == "unknown"
    message = (f"vLLM {probes.vllm_version()} runs a model runner of kind 'unknown' (types.SimpleNamespace); "
               "amygdala-vllm reads Model Runner V1, V2 internals: use a vLLM build whose worker runs one of those "
               "(docs/runners.md)")
    with pytest.raises(IncompatibleVLLMError) as info:
        runner_view(SimpleNamespace(model_runner=runner))
    assert str(info.value) == message


def test_the_table_is_the_only_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """One entry in VIEWS makes a kind supported; removing it makes it refused: nothing else decides."""
    assert VIEWS == {"v1": V1RunnerView, "v2": V2RunnerView}

    class FakeV2View(V1RunnerView):
        kind: ClassVar[str] = "v2"

    v2 = SimpleNamespace(model=None, prepare_inputs=None, req_states=None)
    monkeypatch.setitem(runners.VIEWS, "v2", FakeV2View)
    view: RunnerView = runner_view(SimpleNamespace(model_runner=v2))
    assert type(view) is FakeV2View and view.kind == "v2"
    monkeypatch.delitem(runners.VIEWS, "v1")
    with pytest.raises(IncompatibleVLLMError, match=r"of kind 'v1' .*amygdala-vllm reads Model Runner V2 internals"):
        runner_view(SimpleNamespace(model_runner=_v1_runner()))


def test_every_view_implements_the_whole_interface() -> None:
    wanted = {name for name in vars(RunnerView) if not name.startswith("_")} - {"kind", "READS", "VERSIONS"}
    for kind, view in VIEWS.items():
        assert isinstance(view, type) and view.kind == kind
        missing = sorted(name for name in wanted if not callable(getattr(view, name, None)))
        assert not missing, f"{view.__name__} lacks {missing}"
