"""Engine start-up environment: the runner vLLM picks (a user's choice checked), CPU core binding for TP x PP ranks."""

from __future__ import annotations

import os

import pytest

from amygdala_vllm.errors import IncompatibleVLLMError
from amygdala_vllm.vllm_ext.launch import (BIND_ENV, RUNNER_ENV, check_runner_available, check_runner_env,
                                           cpu_thread_binding, prepare_engine_env)


def test_cpu_thread_binding_splits_cores_evenly() -> None:
    assert cpu_thread_binding([0, 1], 2) == "0|1"
    assert cpu_thread_binding([1, 0], 2) == "0|1"
    assert cpu_thread_binding(list(range(8)), 2) == "0-3|4-7"
    assert cpu_thread_binding(list(range(8)), 4) == "0-1|2-3|4-5|6-7"
    assert cpu_thread_binding([0, 1, 2, 4, 5, 6], 2) == "0-2|4-6"
    assert cpu_thread_binding([0, 2, 4, 6], 2) == "0,2|4,6"
    assert cpu_thread_binding(list(range(5)), 2) == "0-1|2-3"  # equal shares; core 4 left over
    assert cpu_thread_binding([3], 2) == "3|3"  # fewer cores than ranks: shared


def test_prepare_picks_no_runner_and_binds_only_multi_rank_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    monkeypatch.delenv(BIND_ENV, raising=False)
    assert prepare_engine_env(1, 1) == {} and RUNNER_ENV not in os.environ
    done = prepare_engine_env(1, 2)
    assert RUNNER_ENV not in done and done[BIND_ENV].count("|") == 1
    monkeypatch.setenv(BIND_ENV, "nobind")  # the user's own choice stays
    assert BIND_ENV not in prepare_engine_env(2, 1)


def test_a_users_runner_choice_is_left_to_vllm_where_it_has_that_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("0", "1"):
        monkeypatch.setenv(RUNNER_ENV, value)
        assert prepare_engine_env(1, 1) == {} and os.environ[RUNNER_ENV] == value  # 0.32 here: V1 and V2 exist
    check_runner_env({RUNNER_ENV: "1"}, "0.34.0")
    check_runner_env({RUNNER_ENV: "0"}, "0.33.0")
    with pytest.raises(IncompatibleVLLMError) as info:  # 0.34 has no V1 (vLLM itself rejects the variable)
        check_runner_env({RUNNER_ENV: "0"}, "0.34.0")
    assert str(info.value) == ("VLLM_USE_V2_MODEL_RUNNER=0: vLLM 0.34.0 has no V1 model runner "
                               "(Model Runner V2 only); unset VLLM_USE_V2_MODEL_RUNNER")


def test_runner_kind_tells_v2_by_its_real_classes() -> None:
    """V2's runner classes as vLLM ships them (importable on CPU, though V2 cannot start here): both have a view."""
    from amygdala_vllm.vllm_ext.runners import runner_kind, runner_view

    pytest.importorskip("vllm")
    from vllm.v1.worker.cpu.model_runner import CPUModelRunner as V2CPU
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner as V1CPU
    from vllm.v1.worker.gpu.model_runner import GPUModelRunner as V2GPU

    from amygdala_vllm.vllm_ext.runners import V2RunnerView

    for cls in (V2CPU, V2GPU):
        runner = object.__new__(cls)  # no __init__: it needs a whole engine
        assert runner_kind(runner) == "v2"
        runner.execute_model, runner.prepare_inputs = object, object  # set on the instance by the view anyway

        class Worker:
            model_runner = runner

        assert isinstance(runner_view(Worker()), V2RunnerView)
    v1 = object.__new__(V1CPU)
    v1.input_batch, v1.query_start_loc = object(), object()  # set in __init__, which needs a whole engine
    assert runner_kind(v1) == "v1"


def test_the_standalone_cpu_runner_of_0_34_is_refused_before_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM 0.34 on a non-x86 CPU without Triton builds StandaloneCPUModelRunner, which has no view."""
    import importlib.util
    import platform

    from amygdala_vllm.vllm_ext import launch

    check_runner_available("0.34.0")  # this x86 machine: the V2 CPUModelRunner (needs triton-cpu), not refused here
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    check_runner_available("0.33.0")  # V1 there
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real(name, *a))
    monkeypatch.setattr(launch, "_on_gpu", lambda: False)
    with pytest.raises(IncompatibleVLLMError) as info:
        check_runner_available("0.34.0")
    assert str(info.value).startswith("vLLM 0.34.0 on this aarch64 CPU runs its standalone CPU model runner")
