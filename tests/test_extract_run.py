"""``extract`` end to end: flags, errors before the model loads, sharding, resume after kill -9, --compile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from amygdala_vllm.cli import app
from amygdala_vllm.engine_settings import EngineSettings
from amygdala_vllm.extract.run import ExtractOptions, parse_layers, run_extract
from amygdala_vllm.shards import read_shard
from text_datasets import varied_texts, write_text_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_text_dataset(tmp_path_factory.mktemp("ds") / "dataset", varied_texts(90, max_words=70))


def _union(dirs: list[Path]) -> dict[int, tuple[np.ndarray, np.ndarray, int]]:
    out = {}
    for d in dirs:
        cap = json.loads((d / "capture.json").read_text())
        for s in cap["shards"]:
            shard = read_shard(d / s["file"])
            for k, tid in enumerate(shard.text_ids.tolist()):
                assert tid not in out, f"text {tid} captured twice"
                out[tid] = (shard.mean[k], shard.last[k], int(shard.num_tokens[k]))
    return out


def test_parse_layers():
    assert parse_layers("3,18,33,36") == [3, 18, 33, 36]
    assert parse_layers("1-3,7") == [1, 2, 3, 7]
    for bad in ("", "a", "1,1", "-2"):
        with pytest.raises(Exception):
            parse_layers(bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target-layers", "2,9"], "out of range"),
        (["--target-layers", "2", "--split", "dev"], "unknown split"),
        (["--target-layers", "2", "--num-shards", "2", "--shard-index", "2"], "--shard-index"),
        (["--target-layers", "2", "--overlong", "drop"], "--overlong"),
        (["--target-layers", "2", "--pooling", "last,mean"], "--pooling must start with mean,last"),
        (["--target-layers", "2", "--pooling", "mean,last,median"], "unknown pooling mode 'median'"),
    ],
)
def test_bad_flags_fail_before_any_engine(args, message, dataset, tiny_llama_dir, tmp_path):
    out = tmp_path / "act"
    res = runner.invoke(app, ["extract", "--model", str(tiny_llama_dir), "--training-data-dir", str(dataset),
                              "--output-dir", str(out), *args])
    assert res.exit_code == 1, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (out / "capture.json").exists()


def test_not_a_decoder_and_not_a_dataset(tmp_path, dataset):
    enc = tmp_path / "bert"
    enc.mkdir()
    (enc / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "num_hidden_layers": 2,
                                                 "hidden_size": 32}))
    res = runner.invoke(app, ["extract", "--model", str(enc), "--training-data-dir", str(dataset),
                              "--output-dir", str(tmp_path / "a"), "--target-layers", "0"])
    assert res.exit_code == 1 and "not a decoder" in res.output
    res = runner.invoke(app, ["extract", "--model", str(enc), "--training-data-dir", str(tmp_path),
                              "--output-dir", str(tmp_path / "a"), "--target-layers", "0"])
    assert res.exit_code == 1 and "not a dataset dir" in res.output


def test_refuses_a_foreign_output_dir(tmp_path, dataset, tiny_llama_dir):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["extract", "--model", str(tiny_llama_dir), "--training-data-dir", str(dataset),
                              "--output-dir", str(out), "--target-layers", "1"])
    assert res.exit_code == 1 and "not an activations dir" in res.output
    assert (out / "notes.txt").read_text() == "mine"


def _opts(dataset, out, model, **kw):
    engine = EngineSettings(model=str(model), dtype="fp32", batch_size=8, max_model_len=512, kv_cache_gb=0.0625)
    return ExtractOptions(dataset_dir=dataset, output_dir=out, layers=[1, 3], engine=engine, shard_size=16, **kw)


@pytest.mark.engine
def test_three_machine_shards_union_equals_one_run(engine_pool, dataset, tiny_llama_dir, tmp_path):
    llm = engine_pool.get(tiny_llama_dir, max_num_seqs=8)
    single = run_extract(_opts(dataset, tmp_path / "one", tiny_llama_dir), llm=llm)
    assert single.texts_planned == 90 and single.shards == 6
    parts = []
    for k in range(3):
        run_extract(_opts(dataset, tmp_path / f"part{k}", tiny_llama_dir, num_shards=3, shard_index=k), llm=llm)
        parts.append(tmp_path / f"part{k}")
    whole, union = _union([tmp_path / "one"]), _union(parts)
    assert sorted(whole) == sorted(union) == list(range(90))
    for tid, (mean, last, n) in whole.items():
        assert union[tid][2] == n
        assert np.abs(union[tid][0] - mean).max() < 1e-5 and np.abs(union[tid][1] - last).max() < 1e-5


@pytest.mark.engine
def test_split_selects_texts_and_capture_json_records_the_run(engine_pool, dataset, tiny_llama_dir, tmp_path):
    llm = engine_pool.get(tiny_llama_dir, max_num_seqs=8)
    summary = run_extract(_opts(dataset, tmp_path / "held", tiny_llama_dir, split="heldout"), llm=llm)
    cap = json.loads((tmp_path / "held" / "capture.json").read_text())
    assert summary.texts_planned == 18 and cap["texts_planned"] == 18
    assert sorted(_union([tmp_path / "held"])) == [i for i in range(90) if i % 5 == 4]
    assert cap["layers"] == [1, 3] and cap["layer_semantics"] == "residual_out" and cap["skip_first_tokens"] == 1
    assert cap["vllm_version"] and cap["model_fingerprint"] and cap["hidden_size"] == 128


@pytest.mark.engine
def test_pooling_max_adds_one_tensor_and_leaves_mean_and_last_bytes(engine_pool, dataset, tiny_llama_dir, tmp_path):
    from amygdala_vllm.shards import read_shard

    llm = engine_pool.get(tiny_llama_dir, max_num_seqs=8)
    run_extract(_opts(dataset, tmp_path / "plain", tiny_llama_dir, split="heldout"), llm=llm)
    run_extract(_opts(dataset, tmp_path / "max", tiny_llama_dir, split="heldout", pooling=("mean", "last", "max")),
                llm=llm)
    cap = json.loads((tmp_path / "max" / "capture.json").read_text())
    assert cap["format"] == "amygdala-capture/2" and cap["pooling"] == ["mean", "last", "max"]
    pairs = list(zip(sorted((tmp_path / "plain").glob("shard-*")), sorted((tmp_path / "max").glob("shard-*"))))
    assert pairs
    for a, b in pairs:
        sa, sb = read_shard(a), read_shard(b, ("mean", "last", "max"))
        assert sa.modes == ("mean", "last") and sb.modes == ("mean", "last", "max")
        np.testing.assert_array_equal(sa.mean, sb.mean)
        np.testing.assert_array_equal(sa.last, sb.last)
        assert (sb.pooled("max") >= sb.mean).all() and (sb.pooled("max") > sb.mean).any()


@pytest.mark.engine
def test_overlong_texts_truncate_or_skip(engine_pool, tiny_llama_dir, tmp_path):
    long_text = " ".join(["word"] * 700)
    ds = write_text_dataset(tmp_path / "ds", ["short text one", long_text, "short text two"], heldout_every=99)
    llm = engine_pool.get(tiny_llama_dir, max_num_seqs=8)
    s = run_extract(_opts(ds, tmp_path / "t", tiny_llama_dir), llm=llm)
    assert s.truncated == 1 and s.skipped == 0
    got = _union([tmp_path / "t"])
    assert got[1][2] == 511  # max_model_len - 1
    s = run_extract(_opts(ds, tmp_path / "s", tiny_llama_dir, overlong="skip"), llm=llm)
    assert s.skipped == 1 and sorted(_union([tmp_path / "s"])) == [0, 2]


@pytest.mark.engine
def test_kill_9_then_resume_is_byte_identical(engine_pool, tiny_llama_dir, tmp_path):
    """A run killed mid-way and rerun writes the same bytes as an uninterrupted run."""
    ds = write_text_dataset(tmp_path / "ds", varied_texts(800, max_words=40))
    args = ["--model", str(tiny_llama_dir), "--training-data-dir", str(ds), "--target-layers", "1,3",
            "--dtype", "fp32", "--batch-size", "4", "--shard-size", "8", "--max-model-len", "512",
            "--kv-cache-gb", "0.0625"]
    reference = tmp_path / "reference"
    llm = engine_pool.get(tiny_llama_dir, max_num_seqs=4)
    engine = EngineSettings(model=str(tiny_llama_dir), dtype="fp32", batch_size=4, max_model_len=512, kv_cache_gb=0.0625)
    opts = ExtractOptions(dataset_dir=ds, output_dir=reference, layers=[1, 3], engine=engine, shard_size=8)
    run_extract(opts, llm=llm)

    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "amygdala_vllm", "extract", *args, "--output-dir", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (out / "shard-00003.safetensors").exists():
        assert proc.poll() is None, "extract exited before it could be killed"
        assert time.time() < deadline, "extract made no progress"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(json.loads((out / "capture.json").read_text())["shards"])
    assert 3 <= done_before < 100, done_before  # shard 3 may be renamed but not yet listed
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resumed" in res.stdout
    ref_files = sorted(p.name for p in reference.glob("shard-*.safetensors"))
    assert ref_files == sorted(p.name for p in out.glob("shard-*.safetensors")) and len(ref_files) == 100
    for name in ref_files:
        assert (reference / name).read_bytes() == (out / name).read_bytes(), name
    ref_cap = json.loads((reference / "capture.json").read_text())
    out_cap = json.loads((out / "capture.json").read_text())
    assert ref_cap["shards"] == out_cap["shards"]


@pytest.mark.engine
def test_extract_compile_cli_equals_eager(engine_pool, dataset, tiny_llama_dir, tmp_path):
    """``extract --compile`` (vLLM's torch.compile graph, layers tapped) writes what the eager path writes."""
    llm = engine_pool.get(tiny_llama_dir, max_num_seqs=8)
    run_extract(_opts(dataset, tmp_path / "eager", tiny_llama_dir), llm=llm)
    out = tmp_path / "compiled"
    cmd = [sys.executable, "-m", "amygdala_vllm", "extract", "--compile", "--model", str(tiny_llama_dir),
           "--training-data-dir", str(dataset), "--target-layers", "1,3", "--dtype", "fp32", "--batch-size", "8",
           "--shard-size", "16", "--max-model-len", "512", "--kv-cache-gb", "0.0625", "--output-dir", str(out)]
    env = dict(os.environ, VLLM_CACHE_ROOT=str(tmp_path / "vllm-cache"))  # a cold compile of its own
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "vllm-cache" / "torch_compile_cache").is_dir(), "no compile cache was written: did it compile?"
    eager, compiled = _union([tmp_path / "eager"]), _union([out])
    assert sorted(eager) == sorted(compiled) == list(range(90))
    for tid, (mean, last, n) in eager.items():
        scale = max(1.0, float(np.abs(mean).max()), float(np.abs(last).max()))
        assert compiled[tid][2] == n
        assert np.abs(compiled[tid][0] - mean).max() <= 1e-5 * scale, tid
        assert np.abs(compiled[tid][1] - last).max() <= 1e-5 * scale, tid
