"""``extract --ray`` / ``validate --ray`` on a real local Ray cluster (2 CPUs, one tiny fp32 engine per actor).

The cluster is started once for the module by ``ray.init`` in this process, on
127.0.0.1, without the dashboard, in the test's own temp dir; the module ends by
shutting it down and checking that no Ray process of it is left. A one-process
``extract`` (a subprocess on one thread, like each one-CPU actor) is the
reference every Ray run must equal byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from amygdala_vllm.cli import app
from text_datasets import varied_texts, write_text_dataset

try:
    import ray
except ImportError:  # the `test` extra pins ray: a missing one is a broken environment, not a skip
    ray = None

pytestmark = [pytest.mark.engine, pytest.mark.ray]
runner = CliRunner()
NAMESPACE = "amygdala-vllm"
ENGINE = ["--target-layers", "1,3", "--dtype", "fp32", "--batch-size", "4", "--shard-size", "8",
          "--max-model-len", "512", "--kv-cache-gb", "0.0625"]


def _env(**kw: str) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", **kw)


def _cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amygdala_vllm", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or _env())


def _extract_args(model: Path, ds: Path, out: Path) -> list[str]:
    return ["extract", "--model", str(model), "--training-data-dir", str(ds), "--output-dir", str(out), *ENGINE]


def _files(d: Path) -> dict[str, bytes]:
    """Every output file's bytes; usage.json (timings: different on every run) is not an output."""
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != "usage.json"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A 2-CPU Ray cluster on 127.0.0.1 for this module (~5 s); its processes are checked gone afterwards."""
    if ray is None:
        pytest.fail("ray is not installed, but the `test` extra requires it: pip install -e '.[test]'")
    temp = tmp_path_factory.mktemp("ray")
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # the raylet and its workers inherit it
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), _node_ip_address="127.0.0.1",
                 namespace=NAMESPACE, log_to_driver=False)
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = old
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    deadline = time.time() + 20
    while (left := _ray_processes(temp)) and time.time() < deadline:
        time.sleep(0.5)
    assert not left, f"Ray processes left running: {left}"


def _ray_processes(temp: Path) -> list[str]:
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(temp) in cmd:
            out.append(f"{p.info['pid']}: {cmd[:80]}")
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 texts (8 held out): 5 shards of 8 texts, 2 batches each."""
    return write_text_dataset(tmp_path_factory.mktemp("ds") / "dataset", varied_texts(40, max_words=30))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, dataset: Path, tiny_llama_dir: Path) -> Path:
    """A plain one-process ``extract`` (subprocess, one thread): the bytes every Ray run must equal."""
    out = tmp_path_factory.mktemp("reference") / "act"
    res = _cli(*_extract_args(tiny_llama_dir, dataset, out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(list(out.glob("shard-*.safetensors"))) == 5
    return out


def _partial(reference: Path, dest: Path, keep: int) -> Path:
    """A copy of the reference with only its first ``keep`` shards, as a run stopped there leaves it."""
    shutil.copytree(reference, dest)
    for p in sorted(dest.glob("shard-*.safetensors"))[keep:]:
        p.unlink()
    return dest


def test_no_ray_installed_is_one_line(tmp_path, dataset, tiny_llama_dir):
    """Without Ray (its import blocked) ``--ray`` names the extra, before reading anything."""
    out = tmp_path / "act"
    code = ("import sys; sys.modules['ray'] = None; sys.argv = ['amygdala-vllm', *sys.argv[1:]]; "
            "from amygdala_vllm.cli import main; main()")
    res = subprocess.run([sys.executable, "-c", code, *_extract_args(tiny_llama_dir, dataset, out), "--ray"],
                         capture_output=True, text=True, timeout=120, env=_env())
    assert res.returncode == 1, res.stderr
    assert "amygdala-vllm[ray]" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not out.exists()


def test_unreachable_address_is_one_line_and_writes_nothing(tmp_path, dataset, tiny_llama_dir):
    out = tmp_path / "act"
    t0 = time.perf_counter()
    res = _cli(*_extract_args(tiny_llama_dir, dataset, out), "--ray", "--ray-address", "127.0.0.1:9")
    assert res.returncode == 1, res.stderr
    assert "ClusterError" in res.stderr and "127.0.0.1:9" in res.stderr and "Traceback" not in res.stderr
    assert time.perf_counter() - t0 < 60  # ray.init itself retries for minutes
    assert not out.exists()


def test_extract_ray_equals_one_process_and_a_second_run_does_nothing(cluster, reference, dataset, tiny_llama_dir,
                                                                         tmp_path):
    """A separate driver process connects by address; 2 actors write what one process wrote, byte for byte."""
    out = tmp_path / "act"
    res = _cli(*_extract_args(tiny_llama_dir, dataset, out), "--ray", "--ray-address", cluster, "--ray-actors", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Ray: 2 of 2 actor(s), 1 CPU(s) each" in res.stdout
    assert _files(out) == _files(reference)  # every shard and capture.json

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    again = runner.invoke(app, [*_extract_args(tiny_llama_dir, dataset, out), "--ray"])
    assert again.exit_code == 0, again.output
    assert "0 run now, 40 resumed" in again.output and "Ray:" not in again.output  # no actor was started
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")} == mtimes
    assert _files(out) == _files(reference)


def test_actor_that_cannot_load_stops_the_run_and_keeps_written_shards(cluster, reference, dataset, tiny_llama_dir,
                                                                        tmp_path):
    """An engine that cannot start (a KV cache too small for one sequence) ends the run with the actor's reason."""
    out = _partial(reference, tmp_path / "act", keep=2)
    before = _files(out)
    args = _extract_args(tiny_llama_dir, dataset, out)
    args[args.index("--kv-cache-gb") + 1] = "0.0001"
    res = runner.invoke(app, [*args, "--ray", "--ray-actors", "1"])
    assert res.exit_code == 1, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("ModelError: ") and "actor amygdala-extract-" in line and "starting its engine" in line
    assert "Traceback" not in res.output
    after = _files(out)
    assert {k: v for k, v in after.items() if k.startswith("shard-")} == {
        k: v for k, v in before.items() if k.startswith("shard-")}
    cap = json.loads(after["capture.json"])
    assert [s["file"] for s in cap["shards"]] == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert not list(out.glob(".*")), "a temporary file was left behind"
    deadline = time.time() + 30
    while (alive := [a for a in ray.util.list_named_actors(all_namespaces=True) if "amygdala-extract" in str(a)]):
        assert time.time() < deadline, f"actors left alive: {alive}"
        time.sleep(0.5)


def test_killed_actor_is_replaced_and_the_resumed_run_is_byte_identical(cluster, reference, dataset, tiny_llama_dir,
                                                                        tmp_path):
    """Resume after 2 shards; kill the actor that just took the next shard; a replacement runs it again.

    One actor (and its replacement) keeps the test to two engine starts; the pool is the same at any size.
    """
    from amygdala_vllm.cluster import ClusterOptions
    from amygdala_vllm.extract.ray_shards import RunStats, ray_shards
    from amygdala_vllm.engine_settings import EngineSettings
    from amygdala_vllm.extract.run import ExtractOptions, run_extract

    out = _partial(reference, tmp_path / "act", keep=2)
    killed: list[str] = []

    def kill_once(shard: int, actor: str) -> None:
        if not killed:  # this actor was handed its next shard before this call: it dies holding it
            ray.kill(ray.get_actor(actor, namespace=NAMESPACE))
            killed.append(actor)

    stats = RunStats()
    engine = EngineSettings(model=str(tiny_llama_dir), dtype="fp32", batch_size=4, max_model_len=512, kv_cache_gb=0.0625)
    opts = ExtractOptions(dataset_dir=dataset, output_dir=out, layers=[1, 3], engine=engine, shard_size=8)
    summary = run_extract(opts, source=ray_shards(ClusterOptions(actors=1, on_piece=kill_once), stats))
    assert killed and stats.retried == 1 and stats.restarts == 1, (killed, stats.__dict__)
    assert stats.threads and set(stats.threads) == {1}
    assert summary.texts_resumed == 16 and summary.texts_run == 24
    assert _files(out) == _files(reference)


def test_validate_ray_scores_heldout_texts_across_actors(cluster, reference, dataset, tmp_path):
    vec = tmp_path / "v.safetensors"
    res = runner.invoke(app, ["reduce", "--activations", str(reference), "--training-data-dir", str(dataset),
                              "--output", str(vec), "--min-examples", "2"])
    assert res.exit_code == 0, res.output
    report = tmp_path / "report"
    res = runner.invoke(app, ["validate", "--vectors", str(vec), "--training-data-dir", str(dataset),
                              "--output-dir", str(report), "--dtype", "fp32", "--max-model-len", "512",
                              "--kv-cache-gb", "0.0625", "--batch-size", "4", "--ray", "--ray-actors", "2"])
    assert res.exit_code == 0, res.output
    doc = json.loads((report / "report.json").read_text())
    assert doc["heldout_texts"] == 8
    assert doc["agreement"]["checked"] and doc["agreement"]["passed"], doc["agreement"]
    # every pooling mode and the activation scale (|x| |v| >= |x . v|) cross the actors' transport
    assert doc["agreement"]["max_activation_scale"] > doc["agreement"]["max_abs_projection"], doc["agreement"]
    assert set(doc["concepts"][0]["layers"][0]["pooled"]) == {"mean", "last", "max"}


def test_a_cluster_too_small_is_refused_before_any_actor_starts(cluster, dataset, tiny_llama_dir, tmp_path):
    out = tmp_path / "act"
    res = runner.invoke(app, [*_extract_args(tiny_llama_dir, dataset, out), "--ray", "--ray-actors", "3"])
    assert res.exit_code == 1, res.output
    assert "ClusterError" in res.output and "holds 2 engine actor(s)" in res.output and "3 asked for" in res.output
    assert not out.exists()
    res = runner.invoke(app, [*_extract_args(tiny_llama_dir, dataset, out), "--ray-actors", "2"])
    assert res.exit_code == 1 and "--ray-actors needs --ray" in res.output


def test_vllm_ray_executor_at_tp2_does_not_run_on_cpu(cluster, dataset, tiny_llama_dir, tmp_path):
    """The evidence: vLLM itself refuses its Ray executor on CPU (with Ray up); our CLI says so in one line."""
    from vllm import LLM

    with pytest.raises(ValueError, match="current platform cpu does not support ray"):
        LLM(model=str(tiny_llama_dir), dtype="float32", enforce_eager=True, enable_prefix_caching=False,
            kv_cache_memory_bytes=64 << 20, max_model_len=512, tensor_parallel_size=2,
            distributed_executor_backend="ray")
    out = tmp_path / "act"
    res = runner.invoke(app, [*_extract_args(tiny_llama_dir, dataset, out), "--tensor-parallel-size", "2",
                              "--distributed-executor-backend", "ray"])
    assert res.exit_code == 1, res.output
    assert "UsageError" in res.output and "cannot run its Ray executor" in res.output
    assert not out.exists()
