"""What every Ray actor of this tool shares: its reply status, failures as replies, and its torch threads.

The actor classes themselves live with their stage (``extract/ray_shards.py``'s
:class:`CaptureActor`, ``readout/ray_readout.py``'s :class:`ReadoutActor`);
:mod:`._ray` wraps them with ``ray.remote`` at run time, so no module but
``_ray.py`` imports Ray. Arguments and replies are bytes and plain ints only:
specs and texts travel as msgspec JSON, activations and scores as safetensors
bytes (``vllm_ext/rpc.py``'s frame, which imports neither vLLM nor torch), so
no object of ours (and no tensor) is pickled on the way. Every method answers
``(status, payload)`` where ``status`` is a :class:`Reply`; a deliberate error
(an :class:`~amygdala_vllm.errors.AmygdalaError`) comes back as its type name
and message, so the driver can stop with the actor's own one-line reason.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import msgspec

from ..errors import AmygdalaError

__all__ = ["Reply", "reply", "failed", "reserve_threads", "torch_threads"]


class Reply(msgspec.Struct, forbid_unknown_fields=True):
    """Status of one actor call: ``error_type`` empty when it worked."""

    node: str
    pid: int
    error_type: str = ""
    message: str = ""
    tokens: int = 0
    truncated: list[int] = []
    skipped: list[int] = []
    num_texts: int = 0
    threads: int = 0  # torch threads of the actor's engine (reported on start)


def reply(**kw: Any) -> bytes:
    """This actor's :class:`Reply` as JSON bytes, with its node and pid filled in."""
    return msgspec.json.encode(Reply(node=socket.gethostname(), pid=os.getpid(), **kw))


def failed(exc: AmygdalaError) -> tuple[bytes, bytes]:
    """A deliberate error as an ``(status, payload)`` answer, so the driver stops with the actor's own line."""
    return reply(error_type=type(exc).__name__, message=str(exc)), b""


def reserve_threads(threads: int | None) -> None:
    """On a CPU cluster: torch threads = the cores this actor reserved (call before torch is imported)."""
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def torch_threads() -> int:
    """The torch threads the actor's engine got (reported once it started)."""
    import torch

    return int(torch.get_num_threads())
