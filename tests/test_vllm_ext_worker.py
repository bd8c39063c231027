"""The worker extension through the real engine: its RPC surface and how its failures reach the driver.

Worker methods raise plain ValueError/RuntimeError for misuse; at the RPC edge
(``vllm_ext/rpc.py``) they become the project's errors with the worker's
message kept, and a failed call leaves the worker usable.
"""

from __future__ import annotations

import numpy as np
import pytest

from amygdala_vllm.errors import CaptureError, FormatError

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def llm(engine_pool, tiny_llama_dir):
    return engine_pool.get(tiny_llama_dir)


def test_model_info_describes_the_tiny_decoder(llm):
    from amygdala_vllm.vllm_ext import probes
    from amygdala_vllm.vllm_ext.engine import model_info

    info = model_info(llm)
    assert info["num_layers"] == 4 and info["hidden_size"] == 128
    assert (info["start_layer"], info["end_layer"]) == (0, 4)
    assert info["layers_path"] == "model.layers" and info["tp_rank"] == 0
    assert info["compiled"] is False and info["tapped_layers"] == []
    assert llm.collective_rpc("amygdala_ping") == [probes.vllm_version()]


def test_out_of_range_layers_are_a_capture_error_with_the_workers_message(llm):
    from amygdala_vllm.vllm_ext.engine import CaptureSession

    with pytest.raises(CaptureError, match=r"amygdala_capture_start failed on a vLLM worker: layers \[7\] out of range "
                                           r"for a 4-layer decoder"):
        CaptureSession(llm, [1, 7], 1)


def test_drain_before_start_is_a_capture_error(llm):
    from amygdala_vllm.vllm_ext import rpc

    with pytest.raises(CaptureError, match="capture is not active on this worker"):
        rpc.call(llm, "amygdala_capture_drain")
    with pytest.raises(CaptureError, match="readout is not active on this worker"):
        rpc.call(llm, "amygdala_readout_drain")


def test_project_errors_keep_their_type_across_the_edge(llm, tmp_path):
    from amygdala_vllm.vllm_ext.engine import ReadoutSession

    with pytest.raises(FormatError, match="does not exist"):
        ReadoutSession(llm, str(tmp_path / "none.safetensors"), str(tmp_path / "none.manifest.json"))


def test_capture_and_readout_on_different_layers_are_refused_then_the_worker_still_captures(llm, tmp_path,
                                                                                            tiny_llama_dir):
    from random_vectors import write_vectors

    from amygdala_vllm.vllm_ext.engine import CaptureSession, ReadoutSession

    vec, man, _ = write_vectors(tmp_path, tiny_llama_dir, layers=[1, 3])
    session = ReadoutSession(llm, str(vec), str(man))
    try:
        with pytest.raises(CaptureError, match=r"must hook the same layers in one pass \(\[1, 3\] active, \[2\] asked\)"):
            CaptureSession(llm, [2], 1)
    finally:
        session.close()
    capture = CaptureSession(llm, [2], 1)
    try:
        got = capture.run([[1, 2, 3, 4, 5]])
    finally:
        capture.close()
    assert got[0].num_tokens == 5 and got[0].mean.shape == (1, 128) and np.isfinite(got[0].mean).all()


def test_readout_points_the_environment_at_its_vectors_while_open(llm, tmp_path, tiny_llama_dir, monkeypatch):
    """``Readout`` sets VLLM_READOUT_* as serving reads them, and restores them on close."""
    import os

    from random_vectors import write_vectors

    from amygdala_vllm.engine_settings import EngineSettings
    from amygdala_vllm.readout.scorer import Readout
    from amygdala_vllm.vectors_file import ENV_MANIFEST, ENV_VECTORS

    monkeypatch.setenv(ENV_VECTORS, "/elsewhere.safetensors")
    monkeypatch.delenv(ENV_MANIFEST, raising=False)
    vec, man, _ = write_vectors(tmp_path, tiny_llama_dir)
    with Readout(vec, man, engine=EngineSettings(dtype="fp32"), llm=llm) as ro:
        assert (os.environ[ENV_VECTORS], os.environ[ENV_MANIFEST]) == (str(vec.resolve()), str(man.resolve()))
        assert ro.score_texts(["a short text"])[0].scores.shape[1:] == (2, 3)
    assert os.environ[ENV_VECTORS] == "/elsewhere.safetensors" and ENV_MANIFEST not in os.environ
