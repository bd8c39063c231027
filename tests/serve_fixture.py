"""One way to start a real OpenAI server for a test, and the client helpers that read its scores.

Every ``vllm serve`` fixture wants the same things: a free port on 127.0.0.1, fp32, a small KV
cache, this process's ``OMP_NUM_THREADS``, the engine core in its own process, the log in the
fixture's temp dir and the process group stopped afterwards. :func:`vllm_server` builds that argv
and environment once (on :mod:`amygdala_vllm.serve.process`, the same runner the benchmarks and
``scripts/gpu_check.py`` use), so a fixture states only what differs: vectors or none, our
``amygdala-vllm serve`` or vLLM's own server with our plugins (the plain form), and extra flags.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

XARGS = {"amygdala": "all", "amygdala_raw": 1}  # every concept, raw scores too


@contextmanager
def vllm_server(model_dir: Path, log_dir: Path, *, vectors: Path | None = None, plain: bool = False,
                max_model_len: int = 512, kv_cache_bytes: int = 64 << 20, args: Sequence[str] = ()) -> Iterator[str]:
    """Serve ``model_dir`` on a free port; yield the base URL once ``/health`` answers.

    ``plain=False`` runs ``python -m amygdala_vllm serve MODEL [--vectors V]``; ``plain=True`` runs vLLM's
    API server with our plugins named in ``VLLM_PLUGINS`` and no ``VLLM_READOUT_*`` variables (the form a
    user who starts vLLM themselves gets). ``args`` are appended as given (``--eager``, ``--api-key``, ...).
    """
    from amygdala_vllm.serve.launch import API_SERVER_MODULE, plugins_value, runner_env
    from amygdala_vllm.serve.process import free_port, running_server, server_env
    from amygdala_vllm.vectors_file import ENV_MANIFEST, ENV_VECTORS

    port = free_port()
    env = server_env({"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if plain:
        from amygdala_vllm.vllm_ext import SERVE_WORKER_EXTENSION

        assert vectors is None, "the plain form reads no vectors"
        env.update({"VLLM_PLUGINS": plugins_value(None), **runner_env()})
        for key in (ENV_VECTORS, ENV_MANIFEST):
            env.pop(key, None)
        argv = [sys.executable, "-m", API_SERVER_MODULE, "--model", str(model_dir),
                "--worker-extension-cls", SERVE_WORKER_EXTENSION]
    else:
        argv = [sys.executable, "-m", "amygdala_vllm", "serve", str(model_dir)]
        if vectors is not None:
            argv += ["--vectors", str(vectors)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", str(max_model_len),
             "--kv-cache-memory-bytes", str(kv_cache_bytes), *args]
    with running_server(argv, env, log_dir / "server.log", port) as base:
        yield base


def client_for(base: str, api_key: str = "none"):  # -> openai.OpenAI (imported lazily: collection stays light)
    """The official client on ``base``: no retries (a failure shows at once), a generous CPU timeout."""
    from openai import OpenAI

    return OpenAI(base_url=base + "/v1", api_key=api_key, max_retries=0, timeout=120)


def model_of(base: str) -> str:
    """The served model's id."""
    return httpx.get(base + "/v1/models").json()["data"][0]["id"]


def stream_scores(stream) -> tuple[dict, int]:
    """Concatenate the streamed scores of choice 0; return (merged object, number of chunks that carried scores)."""
    merged = {"prompt": {"positions": [], "token_ids": [], "z": [], "raw": []},
              "completion": {"positions": [], "token_ids": [], "z": [], "raw": []}}
    pooled, chunks_with_scores, calibrated = None, 0, None
    for chunk in stream:
        d = chunk.model_dump()
        for c in d["choices"]:
            am = c.get("amygdala")
            if not am:
                continue
            chunks_with_scores += 1
            calibrated = am["calibrated"]
            for part in ("prompt", "completion"):
                for key in ("positions", "token_ids", "z", "raw"):
                    merged[part][key] += (am.get(part) or {}).get(key, [])
            if am.get("pooled"):
                assert c["finish_reason"] is not None
                pooled = am["pooled"]
    merged["pooled"], merged["calibrated"] = pooled, calibrated
    return merged, chunks_with_scores


def greedy_then_stream(client, model: str, text: str, max_tokens: int, xargs: dict = XARGS):
    """Greedy ids of ``text`` without readout, then the same completion streamed with ``xargs``.

    Returns (prompt ids, completion ids, merged streamed scores); some chunk carried scores, the last the pooled ones.
    """
    full = client.completions.create(model=model, prompt=text, max_tokens=max_tokens, temperature=0,
                                     extra_body={"return_token_ids": True, "ignore_eos": True}).model_dump()
    ids, out = full["choices"][0]["prompt_token_ids"], full["choices"][0]["token_ids"]
    stream = client.completions.create(model=model, prompt=text, max_tokens=max_tokens, temperature=0, stream=True,
                                       extra_body={"vllm_xargs": xargs, "ignore_eos": True})
    merged, n_chunks = stream_scores(stream)
    assert n_chunks >= 1 and merged["pooled"] is not None
    return ids, out, merged
