"""probes: the lookups of vLLM internals; a missing internal names the vLLM version and the piece.

The happy paths run inside the real engine (test_worker, test_capture_engine);
here the pure helpers, and the failure messages a vLLM upgrade would produce.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from amygdala_vllm.errors import IncompatibleVLLMError
from amygdala_vllm.vllm_ext import probes


def test_installed_version_is_supported() -> None:
    version = probes.check_version()
    major, minor = map(int, re.match(r"(\d+)\.(\d+)", version).groups())  # type: ignore[union-attr]
    assert (major, minor) in probes.SUPPORTED


def test_external_request_id_strips_the_engine_suffix() -> None:
    ext = {"7", "12", "a-b"}
    assert probes.external_request_id("7", ext) == "7"
    assert probes.external_request_id("12-3f9a1c2e", ext) == "12"
    assert probes.external_request_id("a-b-0011aabb", ext) == "a-b"
    assert probes.external_request_id("99-0011aabb", ext) is None


def test_forward_positions_from_keyword_or_position() -> None:
    pos = torch.arange(3)
    assert probes.forward_positions((), {"input_ids": None, "positions": pos}) is pos
    assert probes.forward_positions((None, pos), {}) is pos
    with pytest.raises(IncompatibleVLLMError, match=r"vLLM .*: the positions argument of the model forward not found"):
        probes.forward_positions((), {})


def test_missing_internals_name_the_version_and_the_piece() -> None:
    version = re.escape(probes.vllm_version())
    with pytest.raises(IncompatibleVLLMError, match=rf"vLLM {version}: worker.model_runner not found"):
        probes.model_runner(SimpleNamespace())
    with pytest.raises(IncompatibleVLLMError, match="model_runner.get_model"):
        probes.runner_model(SimpleNamespace(model=None))
    with pytest.raises(IncompatibleVLLMError, match="step bookkeeping"):
        probes.step_bookkeeping(SimpleNamespace())  # a V2-style runner: no input_batch
    with pytest.raises(IncompatibleVLLMError, match="compilation_config.mode"):
        probes.compiles_model(SimpleNamespace())


def test_step_bookkeeping_reads_the_v1_runner_fields() -> None:
    runner = SimpleNamespace(
        input_batch=SimpleNamespace(num_reqs=2, req_ids=["a", "b", None], num_prompt_tokens=np.array([5, 3, 0])),
        query_start_loc=SimpleNamespace(cpu=torch.tensor([0, 5, 6, 6])),
    )
    req_ids, starts, prompt_lens = probes.step_bookkeeping(runner)
    assert req_ids == ["a", "b"] and starts.tolist() == [0, 5, 6] and prompt_lens.tolist() == [5, 3]


def test_model_lookups_on_a_plain_module() -> None:
    model = torch.nn.Linear(2, 2)
    assert probes.runner_model(SimpleNamespace(get_model=lambda: model)) is model
    assert probes.runner_model(SimpleNamespace(model=model)) is model
    assert probes.graph_wrapped(SimpleNamespace(model=model)) is False
    assert probes.graph_wrapped(SimpleNamespace(model=object())) is True
    assert probes.model_device(model) == torch.device("cpu")
    assert probes.compiles_model(SimpleNamespace(vllm_config=SimpleNamespace(
        compilation_config=SimpleNamespace(mode=0)))) is False
