"""The closing ``used: ...`` line of each stage, and its ``usage.json`` beside the output (see amygdala_vllm/usage.py)."""

from __future__ import annotations

from pathlib import Path

from ..usage import Meter, usage_line, write_usage
from ._app import console

__all__ = ["finish_usage"]


def finish_usage(meter: Meter, output: Path, counts: dict[str, int]) -> None:
    """Measure up to now, write the usage file beside ``output`` and print the line."""
    usage = meter.finish(counts)
    path = write_usage(output, usage)
    console.print(f"{usage_line(usage)} ({path})", highlight=False, soft_wrap=True)
