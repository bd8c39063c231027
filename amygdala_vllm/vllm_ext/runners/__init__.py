"""One view per supported vLLM model runner, picked from a table: the only code that reads a runner.

The hooks (``hooks.py``), the worker extensions (``worker.py``,
``serve_worker.py``) and the score store (``score_store.py``) hold a
:class:`RunnerView` from :func:`runner_view` and never touch the runner
itself. vLLM-global lookups (version, ``LogitsProcessor``, parallel ranks,
request-id format) stay in ``probes.py``.

Supported today: ``"v1"`` (:class:`V1RunnerView`, ``v1.py``). Model Runner V2
(vLLM's default on GPUs with Triton since 0.32) is refused with one line;
engines start on V1 (``launch.prepare_engine_env``).

Adding a supported runner (e.g. V2 once it runs on CPU) is: a new module here
whose class implements :class:`RunnerView` with ``kind = "v2"``, one entry in
:data:`VIEWS`, and its tests (``tests/test_runners.py``). Nothing else changes:
:func:`runner_view` dispatches only through :data:`VIEWS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import IncompatibleVLLMError
from .. import probes
from ..launch import RUNNER_ENV
from .v1 import V1RunnerView
from .view import RunnerView

__all__ = ["RunnerView", "V1RunnerView", "VIEWS", "runner_kind", "runner_view"]

#: Runner kind -> the view that reads it. The only dispatch on the runner kind.
VIEWS: dict[str, Callable[[Any], RunnerView]] = {V1RunnerView.kind: V1RunnerView}

#: Where vLLM 0.32-0.33 keep Model Runner V2 (``vllm/v1/worker/gpu/``, ``.../cpu/``); V1 lives in
#: ``vllm.v1.worker.gpu_model_runner`` / ``cpu_model_runner``.
_V2_RUNNER_PACKAGES = ("vllm.v1.worker.gpu.", "vllm.v1.worker.cpu.")


def runner_kind(runner: Any) -> str:
    """``"v2"`` for a Model Runner V2 (by its class's package, or its lack of V1's per-request state), else ``"v1"``."""
    modules = [c.__module__ for c in type(runner).__mro__]
    if any(m.startswith(_V2_RUNNER_PACKAGES) for m in modules):
        return "v2"
    return "v1" if hasattr(runner, "input_batch") and hasattr(runner, "query_start_loc") else "v2"


def runner_view(worker: Any) -> RunnerView:
    """The view of ``worker.model_runner`` for its kind; a kind without a view in :data:`VIEWS` is refused."""
    runner = getattr(worker, "model_runner", None)
    if runner is None:
        raise probes.missing("worker.model_runner")
    kind = runner_kind(runner)
    view = VIEWS.get(kind)
    if view is None:
        cls = type(runner)
        readable = "/".join(k.upper() for k in VIEWS)
        raise IncompatibleVLLMError(
            f"vLLM {probes.vllm_version()} runs Model Runner {kind.upper()} ({cls.__module__}.{cls.__qualname__}); "
            f"amygdala-vllm reads {readable} runner internals: start the engine with {RUNNER_ENV}=0"
        )
    return view(runner)
