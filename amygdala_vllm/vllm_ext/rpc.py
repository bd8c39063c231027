"""Calls into the worker extension, with the worker's failures turned into this project's errors.

Worker methods raise plain ``ValueError``/``RuntimeError`` for misuse (layers
out of range, drain before start) and the project's own errors for bad inputs
(vectors for another model). How they come back depends on vLLM's executor
(read in vLLM 0.32, ``v1/executor/uniproc_executor.py`` and
``multiproc_executor.py``, ``v1/engine/core.py``):
- one process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): the worker's exception
  object itself, type and message intact;
- separate processes: a bare ``Exception``/``RuntimeError`` whose text wraps the
  worker's message, ``... Worker failed with error '<message>', please check the
  stack trace above ...``; the type is lost on the way.
Here every such failure becomes an :class:`~amygdala_vllm.errors.AmygdalaError`
(the project's own passes through untouched; anything else becomes the error
type the caller names), with the worker's message and the method named, so the
CLI prints one line instead of a traceback.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import AmygdalaError, CaptureError

__all__ = ["call", "worker_message"]

_WRAPPED = re.compile(r"Worker failed with error '(?P<msg>.*)', please check the stack trace", re.DOTALL)
_UTILITY = "Call to collective_rpc method failed: "


def worker_message(exc: BaseException) -> str:
    """The worker's own message inside whatever vLLM wrapped around it."""
    text = str(exc)
    m = _WRAPPED.search(text)
    if m:
        return m.group("msg")
    return text.removeprefix(_UTILITY) or type(exc).__name__


def call(llm: Any, method: str, *args: Any, error: type[AmygdalaError] = CaptureError) -> list[Any]:
    """``llm.collective_rpc(method, args=args)``; a worker failure raises ``error`` (or the worker's own type)."""
    try:
        return llm.collective_rpc(method, args=args)
    except AmygdalaError:
        raise
    except Exception as exc:  # vLLM re-raises worker failures as Exception/RuntimeError/ValueError
        raise error(f"{method} failed on a vLLM worker: {worker_message(exc)}") from exc
