"""``amygdala-vllm serve`` through typer's CliRunner: wrong vectors and unreadable features refused in one line before vLLM starts."""

from __future__ import annotations

from typer.testing import CliRunner


def test_serve_cli_refuses_wrong_vectors_in_one_line_before_vllm_starts(tmp_path, tiny_llama_dir):
    from amygdala_vllm.cli import app
    from random_vectors import write_vectors

    runner = CliRunner()
    (tmp_path / "a").mkdir()
    vec, _, _ = write_vectors(tmp_path / "a", tiny_llama_dir, hidden=64)
    r = runner.invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(vec), "--port", "1"])
    assert r.exit_code == 1 and "hidden size 64" in r.output and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(tmp_path / "missing.safetensors")])
    assert r.exit_code == 1 and "does not exist" in r.output
    (tmp_path / "b").mkdir()
    vec, _, _ = write_vectors(tmp_path / "b", tiny_llama_dir, model_fingerprint="0123456789abcdef")
    r = runner.invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(vec)])
    assert r.exit_code == 1 and "fingerprint" in r.output
    (tmp_path / "c").mkdir()
    vec, _, _ = write_vectors(tmp_path / "c", tiny_llama_dir)
    r = runner.invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(vec), "--eager", "--print-command",
                            "--max-model-len", "512"])
    assert r.exit_code == 0, r.output
    assert "VLLM_PLUGINS=amygdala,amygdala_serve" in r.output and "--enforce-eager" in r.output
    assert "VLLM_USE_V2_MODEL_RUNNER" not in r.output and f"VLLM_READOUT_VECTORS={vec.resolve()}" in r.output
    assert "--worker-extension-cls amygdala_vllm.vllm_ext.serve_worker.AmygdalaServeExtension" in r.output
    assert "--max-model-len 512" in r.output


def test_serve_cli_refuses_a_feature_the_views_cannot_read_in_one_line(tmp_path, tiny_llama_dir):
    from amygdala_vllm.cli import app
    from random_vectors import write_vectors

    vec, _, _ = write_vectors(tmp_path, tiny_llama_dir)
    for flags, flag in ((["--enable-dbo"], "--enable-dbo"),
                        (["-tp", "2", "--data-parallel-size=2", "-ep"], "--enable-expert-parallel"),
                        (["--enable-batch-sharded-sampling"], "--enable-batch-sharded-sampling")):
        r = CliRunner().invoke(app, ["serve", str(tiny_llama_dir), "--vectors", str(vec), "--print-command", *flags])
        assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
        assert r.output.startswith("IncompatibleVLLMError: ") and f"run without {flag}" in r.output
