"""Shared bits of the job subprocesses: job files, timing, memory readings."""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["read_job", "write_result", "timed", "RssSampler", "rss_bytes", "max_rss_bytes", "summary"]


def read_job() -> dict[str, Any]:
    """The job description: ``argv[1]`` is a JSON file written by scripts/bench.py."""
    return json.loads(Path(sys.argv[1]).read_text())


def write_result(job: dict[str, Any], result: dict[str, Any]) -> None:
    result["pid"] = os.getpid()
    result["max_rss_bytes"] = max_rss_bytes()
    Path(job["result"]).write_text(json.dumps(result, indent=1))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def rss_bytes() -> int:
    """Current resident set size of this process."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def max_rss_bytes() -> int:
    """Peak RSS of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class RssSampler:
    """Polls this process's RSS in a thread; ``peak`` is the highest value seen while running."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def summary(values: list[float]) -> dict[str, Any]:
    """All repeats, their median, min, max and spread ((max - min) / median)."""
    med = statistics.median(values)
    return {"runs": values, "median": med, "min": min(values), "max": max(values),
            "spread": (max(values) - min(values)) / med if med else 0.0}
