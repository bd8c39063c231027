"""probes: the vLLM-global lookups; a missing internal names the vLLM version and the piece.

The happy paths run inside the real engine (test_vllm_ext_worker, test_capture_engine);
here the pure helpers, and the failure messages a vLLM upgrade would produce.
The model-runner views (and their failure messages) are tested in test_vllm_ext_runners.
"""

from __future__ import annotations

import re

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
    err = probes.missing("runner.thing")
    assert isinstance(err, IncompatibleVLLMError)
    assert re.fullmatch(rf"vLLM {version}: runner.thing not found; this vLLM version is not supported", str(err))


def test_pipeline_ranks_outside_an_engine_are_one_stage() -> None:
    """No pipeline group exists outside a worker: a single stage is both the first and the last."""
    assert probes.is_first_pipeline_rank() is True
    assert probes.is_last_pipeline_rank() is True
    assert probes.tensor_parallel_rank() == 0
