"""What a stage used (wall and CPU time, peak memory, items per second), printed and kept beside its output.

A user sizes the production job from a small run: each command measures
itself (:class:`Meter`), prints one line at the end (:func:`usage_line`) and
writes ``usage.json`` (``amygdala-usage/1``) beside what it wrote: in the
dataset, activations and report dirs, and as ``NAME.usage.json`` beside the
vectors file.

Why a side file and not a field of ``dataset.json``, ``capture.json``, the
manifest or ``report.json``: those outputs are byte-identical from run to run
(tests and resumption rely on it, and the dataset's identity feeds the
manifest and the report), while timings differ on every run; and their
Structs forbid unknown fields, so a reader from before the field would
reject every new file. A side file changes no byte of any output and no
reader; ``usage.json`` is the newest run's (a resumed ``extract`` records
the resumed part).

Peak memory is the process's own peak resident set (``ru_maxrss``) over its
lifetime, so it covers everything the command did, engine start included;
``children_peak_rss_bytes`` is the largest of the child processes that have
exited (vLLM's engine process in multiprocessing mode, when it has been
shut down), 0 when none did.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import sys
import time
from pathlib import Path

import msgspec

from . import atomic
from .formats import USAGE_FORMAT

__all__ = ["USAGE_FORMAT", "USAGE_FILE", "Usage", "Meter", "usage_path_for", "write_usage", "read_usage", "usage_line"]

USAGE_FILE = "usage.json"


class Usage(msgspec.Struct, forbid_unknown_fields=True):
    """One command's use of the machine; ``counts`` are its work (texts, tokens, nodes, ...)."""

    format: str
    stage: str
    started: str  # UTC, ISO 8601
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    children_peak_rss_bytes: int
    counts: dict[str, int]
    per_second: dict[str, float]  # counts / wall_s
    cpus: int  # cores the process could run on


def _max_rss(who: int) -> int:
    kb = resource.getrusage(who).ru_maxrss
    return int(kb if sys.platform == "darwin" else kb * 1024)  # bytes on macOS, KiB on Linux


class Meter:
    """Started at construction; :meth:`finish` gives the :class:`Usage` up to now."""

    def __init__(self, stage: str):
        self.stage = stage
        self.started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()
        self._cpu0 = time.process_time()

    def finish(self, counts: dict[str, int]) -> Usage:
        wall = time.perf_counter() - self._t0
        rates = {k: round(v / wall, 3) for k, v in counts.items()} if wall > 0 else {}
        return Usage(format=USAGE_FORMAT, stage=self.stage, started=self.started, wall_s=round(wall, 3),
                     cpu_s=round(time.process_time() - self._cpu0, 3), peak_rss_bytes=_max_rss(resource.RUSAGE_SELF),
                     children_peak_rss_bytes=_max_rss(resource.RUSAGE_CHILDREN), counts=dict(counts),
                     per_second=rates, cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0)


def usage_path_for(output: Path) -> Path:
    """Where a stage's usage goes: ``DIR/usage.json`` for an output dir, ``NAME.usage.json`` beside a file."""
    output = Path(output)
    if output.is_dir():
        return output / USAGE_FILE
    return output.with_name(output.name.removesuffix(".safetensors") + ".usage.json")


def write_usage(output: Path, usage: Usage) -> Path:
    """Write ``usage`` beside ``output`` (atomically) and return the path."""
    path = usage_path_for(output)
    atomic.write_bytes(path, msgspec.json.format(msgspec.json.encode(usage), indent=2) + b"\n")
    return path


def read_usage(path: Path) -> Usage:
    """A usage file, strictly decoded (``msgspec.ValidationError`` / ``DecodeError`` on a bad one)."""
    return msgspec.json.decode(Path(path).read_bytes(), type=Usage)


def usage_line(usage: Usage) -> str:
    """One line for the end of a command: wall, CPU, rates, peak RSS."""
    rates = ", ".join(f"{v:,.1f} {k}/s" for k, v in usage.per_second.items())
    mib = usage.peak_rss_bytes / 2**20
    child = f" (children {usage.children_peak_rss_bytes / 2**20:,.0f} MiB)" if usage.children_peak_rss_bytes else ""
    return (f"used: {usage.wall_s:,.1f} s wall, {usage.cpu_s:,.1f} s CPU"
            + (f", {rates}" if rates else "") + f"; peak RSS {mib:,.0f} MiB{child}")
