"""Per-request readout options from ``vllm_xargs``, checked before the request reaches the engine.

A client opts in with ``vllm_xargs={"amygdala": "all" | [concept, ...]}`` and
may add ``amygdala_layers`` (list of manifest layers), ``amygdala_tokens``
(1 = per-token scores, the default; 0 = pooled summary only) and
``amygdala_raw`` (1 = raw dot products beside z). Anything else starting with
``amygdala`` is a typo and refused, like an unknown concept or layer: the
message names the field, and the server answers HTTP 400 with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..vllm_ext.rpc import TAG_KEY

__all__ = ["OptionError", "ReadoutOptions", "KEY", "parse_options", "wants_readout"]

KEY = "amygdala"
_KNOWN = {KEY, "amygdala_layers", "amygdala_tokens", "amygdala_raw"}


class OptionError(UsageError):
    """A malformed readout option; ``field`` names the ``vllm_xargs`` key at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"vllm_xargs.{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ReadoutOptions:
    """What one request asked for, resolved against the served manifest."""

    concepts: list[str]
    layers: list[int]
    tokens: bool
    raw: bool


def wants_readout(xargs: dict[str, Any] | None) -> bool:
    """True if the request names any ``amygdala*`` key (it is then validated in full)."""
    return bool(xargs) and any(str(k).startswith(KEY) for k in xargs)


def _flag(xargs: dict[str, Any], field: str, default: int) -> bool:
    value = xargs.get(field, default)
    if isinstance(value, bool) or value not in (0, 1):
        raise OptionError(field, f"must be 0 or 1, got {value!r}")
    return bool(value)


def parse_options(xargs: dict[str, Any], concepts: list[str], layers: list[int]) -> ReadoutOptions:
    """Validate the ``amygdala*`` keys against the served ``concepts`` and ``layers``."""
    unknown = sorted(k for k in xargs if str(k).startswith(KEY) and k not in _KNOWN)
    if unknown:
        field = unknown[0]
        if field == TAG_KEY:
            raise OptionError(field, "is set by the server, not by clients")
        raise OptionError(field, f"unknown option; known: {', '.join(sorted(_KNOWN))}")
    if KEY not in xargs:
        raise OptionError(KEY, 'missing: give "all" or a list of concept names to turn readout on')
    asked = xargs[KEY]
    if asked == "all":
        chosen = list(concepts)
    elif isinstance(asked, list) and asked and all(isinstance(c, str) for c in asked):
        missing = [c for c in asked if c not in concepts]
        if missing:
            raise OptionError(KEY, f"unknown concept(s) {missing}; this server reads {concepts}")
        chosen = list(dict.fromkeys(asked))
    else:
        raise OptionError(KEY, f'must be "all" or a non-empty list of concept names, got {asked!r}')
    chosen_layers = list(layers)
    if "amygdala_layers" in xargs:
        value = xargs["amygdala_layers"]
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not (isinstance(value, list) and value and all(isinstance(i, int) and not isinstance(i, bool) for i in value)):
            raise OptionError("amygdala_layers", f"must be a non-empty list of layer indices, got {value!r}")
        missing = [i for i in value if i not in layers]
        if missing:
            raise OptionError("amygdala_layers", f"unknown layer(s) {missing}; this server reads layers {layers}")
        chosen_layers = list(dict.fromkeys(value))
    return ReadoutOptions(concepts=chosen, layers=chosen_layers, tokens=_flag(xargs, "amygdala_tokens", 1),
                          raw=_flag(xargs, "amygdala_raw", 0))
