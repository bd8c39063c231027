"""The model's own context limit decides the default ``--max-model-len`` (read from config.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amygdala_vllm.errors import ModelError
from amygdala_vllm.model_config import MAX_MODEL_LEN_CAP, read_context_limit, resolve_max_model_len


def _model(tmp_path: Path, **cfg: object) -> str:
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2,
                                                "hidden_size": 64, **cfg}))
    return str(d)


def test_default_is_the_models_limit_capped(tmp_path: Path) -> None:
    assert resolve_max_model_len(_model(tmp_path, max_position_embeddings=1024), None) == 1024
    assert resolve_max_model_len(_model(tmp_path, max_position_embeddings=131072), None) == MAX_MODEL_LEN_CAP == 4096
    assert resolve_max_model_len(_model(tmp_path), None) == MAX_MODEL_LEN_CAP  # the config names no limit


def test_limit_keys_and_multimodal_text_config(tmp_path: Path) -> None:
    assert read_context_limit(_model(tmp_path, n_positions=512, max_position_embeddings=2048)) == 512
    assert read_context_limit(_model(tmp_path, text_config={"max_position_embeddings": 262144, "num_hidden_layers": 2,
                                                            "hidden_size": 64})) == 262144


def test_explicit_length_wins_but_never_over_the_model(tmp_path: Path) -> None:
    model = _model(tmp_path, max_position_embeddings=1024)
    assert resolve_max_model_len(model, 512) == 512
    with pytest.raises(ModelError, match="over .* context of 1024"):
        resolve_max_model_len(model, 2048)
