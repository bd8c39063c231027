"""The part of benchmarks.md measured by hand, kept when ``bench.py`` rewrites the file.

Set-up time, the default run's time and the dtype timings on AVX2 and AVX-512
CPUs were measured by running the commands, not by ``bench.py``; they live in
benchmarks.md beside the generated rows (the README points there). Everything
from :data:`MARKER` to the end of the file is hand-written and survives a rerun.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MARKER", "write_markdown"]

MARKER = "<!-- measured by hand: scripts/bench.py keeps everything from this line on when it rewrites the file -->"


def write_markdown(path: Path, generated: str) -> None:
    """Write the generated ``benchmarks.md`` text to ``path``, followed by its hand-written section, if any."""
    kept = ""
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        at = old.find(MARKER)
        kept = old[at:] if at >= 0 else ""
    path.write_text(generated.rstrip("\n") + "\n\n" + kept if kept else generated, encoding="utf-8")
