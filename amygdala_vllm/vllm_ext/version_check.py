"""``scripts/check_vllm.py``: fetch released vLLM wheels (cached), check the declared internals, print a table.

A wheel is downloaded once, without dependencies (``pip download --no-deps
--only-binary=:all: vllm==X``), into ``$AMYGDALA_VLLM_HOME/vllm-wheels`` (else
``~/.cache/amygdala-vllm/vllm-wheels``); a cached wheel is read without any
network. The wheel is never installed or imported: :mod:`.source_check` reads
its Python files from the zip.

Rows are the declared records (:func:`.source_check.declared`), columns the
versions; a cell is ``ok``, ``MISSING`` (the reasons follow the table) or
``-`` (the record does not apply to that version: a runner that release does
not have). Exit status 1 on any missing piece, and on a bad version string or
a failed download (one line, ``ErrorType: message``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from ..errors import AmygdalaError, UsageError
from .internals import describe
from .source_check import Result, SourceTree, check_tree, declared, parse_minor, reads_for

__all__ = ["WheelError", "wheel_cache", "cached_wheel", "fetch_wheel", "render", "run", "main"]


class WheelError(AmygdalaError):
    """A vLLM wheel could not be downloaded or read."""


def wheel_cache() -> Path:
    """``$AMYGDALA_VLLM_HOME/vllm-wheels``, else ``~/.cache/amygdala-vllm/vllm-wheels``."""
    home = os.environ.get("AMYGDALA_VLLM_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "amygdala-vllm"
    return base / "vllm-wheels"


def cached_wheel(version: str, cache: Path) -> Path | None:
    """The cached ``vllm-<version>-*.whl``, if one is there."""
    found = sorted((cache / version).glob(f"vllm-{version}-*.whl"))
    return found[0] if found else None


def fetch_wheel(version: str, cache: Path) -> Path:
    """The wheel of ``vllm==version``: from the cache, else downloaded into it (no dependencies)."""
    hit = cached_wheel(version, cache)
    if hit is not None:
        return hit
    dest = cache / version
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
           "--disable-pip-version-check", "-q", f"vllm=={version}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    hit = cached_wheel(version, cache)
    if proc.returncode != 0 or hit is None:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise WheelError(f"could not download vllm=={version}: {lines[-1] if lines else 'no wheel'}")
    return hit


def render(columns: list[str], results: dict[str, list[Result]]) -> tuple[str, int]:
    """The version x record table and the reasons of each missing piece; and how many cells are MISSING."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    reasons: list[str] = []
    for col in columns:
        for res in results[col]:
            key = (res.owner, describe(res.record))
            rows.setdefault(key, {})[col] = "ok" if res.missing is None else "MISSING"
            if res.missing is not None:
                reasons.append(f"{col}  {res.owner}  {describe(res.record)}: {res.missing}"
                               + (f" (read for: {res.record.why})" if res.record.why else ""))
    width = max((len(f"{o}  {d}") for o, d in rows), default=10)
    widths = [max(len(c), 7) for c in columns]
    head = f"{'record':<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths))
    lines = [head, "-" * len(head)]
    for (owner, desc), cells in rows.items():
        lines.append(f"{owner + '  ' + desc:<{width}}  " + "  ".join(f"{cells.get(c, '-'):>{w}}" for c, w in zip(columns, widths)))
    missing = len(reasons)
    lines.append("")
    lines.append(f"{len(rows)} records, {len(columns)} version(s): "
                 + ("nothing missing" if not missing else f"{missing} MISSING"))
    lines.extend(reasons)
    return "\n".join(lines), missing


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="check_vllm.py", description=(
        "Check every vLLM internal amygdala-vllm declares (probes.READS, each runner view's READS) against "
        "released vLLM wheels' source, without installing or importing vLLM."))
    p.add_argument("versions", nargs="*", help="vLLM release versions, e.g. 0.32.0 0.33.0 0.34.0")
    p.add_argument("--installed", action="store_true", help="also check the vLLM installed beside this Python")
    p.add_argument("--source", action="append", default=[], metavar="DIR",
                   help="also check a source directory holding vllm/ (repeatable)")
    p.add_argument("--cache", type=Path, default=None, help=f"wheel cache (default: {wheel_cache()})")
    return p


def _installed_dir() -> Path:
    """The ``vllm`` package directory beside this interpreter, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("--installed: no vllm package is installed beside this Python")
    return Path(list(spec.submodule_search_locations)[0])


def run(args: argparse.Namespace) -> int:
    """Check each source; print the table; 1 if anything is missing."""
    cache = args.cache or wheel_cache()
    for v in args.versions:
        parse_minor(v)  # every version is checked for form before any download
    trees: list[tuple[str, SourceTree]] = []
    for v in args.versions:
        trees.append((v, SourceTree.from_wheel(fetch_wheel(v, cache))))
    if args.installed:
        trees.append(("installed", SourceTree.from_dir(_installed_dir())))
    for d in args.source:
        trees.append((d, SourceTree.from_dir(Path(d))))
    if not trees:
        raise UsageError("name at least one vLLM version (e.g. 0.34.0), --installed or --source DIR")
    decls = declared()
    columns, results = [], {}
    for label, tree in trees:
        version = tree.version()
        col = label if label == version else f"{label}={version}" if label == "installed" else label
        columns.append(col)
        results[col] = check_tree(tree, reads_for(parse_minor(version), decls))
    table, missing = render(columns, results)
    print(table)
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (errors: one line on stderr, status 1)."""
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except (AmygdalaError, ValueError, OSError, zipfile.BadZipFile) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
