"""Run an OpenAI server (ours or plain vLLM) as a subprocess on 127.0.0.1: for tests, benchmarks, scripts.

Start-up takes ~60 s on a 2-core machine (the API server and the engine core
each import vLLM; compiling adds more), so callers start one and share it. The
server's output goes to a log file whose tail is in the error if it never
becomes healthy. The whole process group is stopped on exit (the engine core
is a child of the API server).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["free_port", "server_env", "running_server", "metric_total"]


def free_port() -> int:
    """An ephemeral port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a server: the engine core in its own process (in-process engines are for tests)."""
    from ..vllm_ext.launch import MULTIPROCESSING_ENV  # sets nothing, imports no vLLM

    env = dict(os.environ)
    env.pop(MULTIPROCESSING_ENV, None)
    env.update(extra or {})
    return env


@contextmanager
def running_server(argv: list[str], env: dict[str, str], log_path: Path, port: int,
                   timeout: float = 300.0) -> Iterator[str]:
    """Start ``argv`` and yield its base URL once ``/health`` answers; always stopped afterwards."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy after {timeout} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def metric_total(base: str, name: str) -> float:
    """Sum of every sample of a Prometheus counter on ``/metrics`` (e.g. ``vllm:prefix_cache_hits_total``)."""
    total = 0.0
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
