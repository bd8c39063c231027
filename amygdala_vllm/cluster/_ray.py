"""The one place that imports Ray: the optional extra, and connecting to a cluster.

Ray is optional (``pip install 'amygdala-vllm[ray]'``); without it every
``--ray`` path stops with one line naming the extra, before anything is read
or written.

An explicit address is probed with a plain TCP connect before ``ray.init``:
measured here, ``ray.init(address="127.0.0.1:1")`` keeps retrying for more than
2 minutes (GCS reconnect loops) before it gives up, so an unreachable address
would otherwise look like a hang.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ClusterError, UsageError

__all__ = ["RAY_EXTRA", "NAMESPACE", "import_ray", "require", "connect", "parse_address"]

log = logging.getLogger(__name__)

RAY_EXTRA = "pip install 'amygdala-vllm[ray]' (ray>=2.60,<3)"
NAMESPACE = "amygdala-vllm"
#: How long the TCP probe of an explicit address may take.
PROBE_TIMEOUT_S = 5.0


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`UsageError` naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError(f"--ray needs Ray, which is not installed: {RAY_EXTRA}") from exc
    return ray


def require(address: str | None) -> None:
    """Fail fast, before any input is read: Ray missing, or an explicit address nobody answers at."""
    ray = import_ray()
    if not ray.is_initialized():
        _probe(address or os.environ.get("RAY_ADDRESS") or "local")


def parse_address(address: str) -> tuple[str, int] | None:
    """``host:port`` (optionally ``ray://host:port``) -> (host, port); ``auto``/``local`` -> None."""
    if address in ("auto", "local"):
        return None
    bare = address.removeprefix("ray://")
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"--ray-address {address!r} is not host:port, ray://host:port, 'auto' or 'local'")
    return host.strip("[]"), int(port)


def _probe(address: str) -> None:
    hostport = parse_address(address)
    if hostport is None:
        return
    try:
        with socket.create_connection(hostport, timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with `ray start --head` "
            "or give the head node's address with --ray-address"
        ) from exc


@contextlib.contextmanager
def connect(address: str | None = None, *, temp_dir: Path | None = None) -> Iterator[Any]:
    """Connect this process to Ray for the duration of the block; yield the ``ray`` module.

    ``address``: ``host:port`` of a running cluster's head, ``auto`` (the
    cluster ``ray start`` left on this machine, or ``$RAY_ADDRESS``), or
    ``local`` (a private single-machine cluster started here, without the
    dashboard, in ``temp_dir`` if given, and shut down at the end). Default:
    ``$RAY_ADDRESS`` if set, else ``local``. If this process is already connected
    (a notebook or test that called ``ray.init`` itself), that connection is used
    and left open.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    _probe(address)
    common: dict[str, Any] = dict(namespace=NAMESPACE, include_dashboard=False, log_to_driver=False,
                                  logging_level=logging.WARNING, configure_logging=False)
    try:
        if address == "local":
            ray.init(_temp_dir=str(temp_dir) if temp_dir else None, **common)
        else:
            ray.init(address=address, **common)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {exc}") from exc
    log.info("connected to Ray at %s: %s", address, ray.cluster_resources())
    try:
        yield ray
    finally:
        ray.shutdown()
