"""The declared list of vLLM internals this project reads: one record per piece, read by the version check.

Every module that reads a vLLM internal (``probes.py`` and each runner view in
``runners/``) declares what it reads as a tuple of :class:`Internal` records
(``probes.READS``, and ``READS`` on each view class). ``scripts/check_vllm.py``
reads exactly those tuples and checks each record against a vLLM release's
source, without importing vLLM: so a view cannot read something the check does
not know about, and an upgrade that renames a piece shows up as one table row.

A record names where the piece lives (``module``), what it is (``kind``), and,
for a method this project wraps or calls with keywords, the parameter names it
relies on (``params``). ``versions`` limits a record to the vLLM minors that
have it (a runner that a release dropped is not checked there).

This module imports nothing from vLLM or torch: the check runs where vLLM is
not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Internal", "Kind", "Minor", "applies_to", "describe"]

#: ``module``: the module exists; ``class``/``function``: a top-level name in it;
#: ``method``: ``Class.method`` defined on the class or a base class;
#: ``attribute``: ``Class.attr`` as a class-level name, a dataclass/annotated
#: field, a property, or a ``self.attr = ...`` assignment in the class or a base;
#: a ``name`` without a dot is a module-level binding (``current_platform``).
Kind = Literal["module", "class", "function", "method", "attribute"]

#: A vLLM minor version, ``(0, 34)``.
Minor = tuple[int, int]


@dataclass(frozen=True)
class Internal:
    """One piece of vLLM that this project reads, and why."""

    #: Dotted module path, e.g. ``"vllm.v1.worker.gpu.model_runner"``.
    module: str
    #: ``""`` for the module itself, ``"Name"`` for a top-level name, ``"Class.member"`` for a member.
    name: str = ""
    kind: Kind = "module"
    #: For a method or function this project wraps or calls with keywords: the parameter names that
    #: must be there, in order (``self`` left out); ``None`` if the signature is not relied on.
    params: tuple[str, ...] | None = None
    #: The vLLM minors that have this piece (``None``: every supported minor).
    versions: tuple[Minor, ...] | None = None
    #: What it is read for, in a few words (shown by the check next to a missing piece).
    why: str = ""


def applies_to(record: Internal, minor: Minor) -> bool:
    """True if ``record`` should be present in vLLM ``minor``."""
    return record.versions is None or minor in record.versions


def describe(record: Internal) -> str:
    """``module:name (kind)``, the way the check's table names a record."""
    where = f"{record.module}:{record.name}" if record.name else record.module
    sig = f"({', '.join(record.params)})" if record.params is not None else ""
    return f"{where}{sig} [{record.kind}]"
