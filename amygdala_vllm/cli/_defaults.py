"""A stage's defaults as the CLI shows them: read from the stage's options class, never written again.

Every stage has one options class whose field defaults are the stage's
defaults (``ExtractOptions``, ``ReduceOptions``, ``ValidateOptions``,
``pairs``' ``Rules`` and ``PairsOptions``; the engine's are ``EngineSettings``).
A typer default written as a second literal beside it drifts: ``reduce
--top-pairs`` said 5 while ``ReduceOptions`` said 10. So a command names its
defaults through :func:`defaults_of`, e.g. ``shard_size: int =
typer.Option(EXTRACT.shard_size, ...)``, and ``tests/test_cli_defaults.py``
fails on a literal default for a flag its stage's class defines.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

__all__ = ["defaults_of"]


class _Defaults:
    """Attribute access to the defaults of one options class; a field without one is an AttributeError."""

    def __init__(self, cls: type, values: dict[str, Any]) -> None:
        self._cls, self._values = cls, values

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"{self.__dict__['_cls'].__name__} has no default for {name!r}") from None


def defaults_of(cls: type) -> Any:
    """The field defaults of a dataclass or msgspec Struct (factories called once), by attribute."""
    values: dict[str, Any] = {}
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
    elif isinstance(cls, type) and issubclass(cls, msgspec.Struct):
        for f in msgspec.structs.fields(cls):
            if f.default is not msgspec.NODEFAULT:
                values[f.name] = f.default
            elif f.default_factory is not msgspec.NODEFAULT:
                values[f.name] = f.default_factory()
    else:
        raise TypeError(f"{cls!r} is neither a dataclass nor a msgspec Struct")
    return _Defaults(cls, values)
