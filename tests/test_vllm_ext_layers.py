"""Decoder-layer resolution on model structures shaped like vLLM's classes.

vLLM's Qwen3.5 classes cannot be imported on the CPU stack (their module pulls a
torchvision-backed image processor), so the wrapper path is covered here by a
structure with the same attribute layout: ``Qwen3_5ForConditionalGeneration``
exposes ``get_language_model()`` whose ``.model.layers`` hold the decoder.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from amygdala_vllm.errors import ModelError
from amygdala_vllm.vllm_ext.hooks import residual_stream
from amygdala_vllm.vllm_ext.layers import resolve_decoder_layers


class _Decoder(nn.Module):
    def __init__(self, n: int, start: int | None = None, end: int | None = None):
        super().__init__()
        self.layers = nn.ModuleList(nn.Identity() for _ in range(n))
        if start is not None:
            self.start_layer, self.end_layer = start, end


class _CausalLM(nn.Module):  # LlamaForCausalLM / Qwen3NextForCausalLM shape
    def __init__(self, n: int, **kw):
        super().__init__()
        self.model = _Decoder(n, **kw)
        self.lm_head = nn.Linear(2, 2)


class Qwen3_5ForConditionalGeneration(nn.Module):  # multimodal wrapper shape
    def __init__(self, n: int):
        super().__init__()
        self.visual = nn.Linear(2, 2)
        self.language_model = _CausalLM(n)

    def get_language_model(self) -> nn.Module:
        return self.language_model


def test_causal_lm_layers():
    d = resolve_decoder_layers(_CausalLM(6))
    assert (d.total, d.start, d.end, d.path) == (6, 0, 6, "model.layers")
    assert d.owns(0) and d.owns(5) and not d.owns(6)


def test_qwen3_5_wrapper_goes_through_language_model():
    m = Qwen3_5ForConditionalGeneration(64)
    d = resolve_decoder_layers(m)
    assert d.total == 64 and d.path == "get_language_model().model.layers"
    assert d.layers is m.language_model.model.layers


def test_pipeline_parallel_slice_is_respected():
    d = resolve_decoder_layers(_CausalLM(8, start=4, end=8))
    assert [i for i in range(8) if d.owns(i)] == [4, 5, 6, 7]


def test_not_a_decoder_is_refused():
    with pytest.raises(ModelError, match="no decoder layer list"):
        resolve_decoder_layers(nn.Sequential(nn.Linear(2, 2)))


def test_residual_stream_adds_the_pair_and_passes_single_tensors():
    h, r = torch.ones(2, 3), torch.full((2, 3), 2.0)
    assert torch.equal(residual_stream((h, r)), torch.full((2, 3), 3.0))
    assert torch.equal(residual_stream(h), h)
    assert torch.equal(residual_stream((h, None)), h)
    with pytest.raises(TypeError):
        residual_stream("nope")
