"""cli/_defaults: every flag a stage's options class defines takes its default from that class, never a copy.

Found by this rule when it was written: ``reduce --top-pairs`` defaulted to 5 while ``ReduceOptions``
said 10, and ``validate --shrinkage`` repeated reduce's 0.1 as a literal of its own.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import msgspec
import pytest
import typer

from amygdala_vllm.cli import app
from amygdala_vllm.cli._defaults import defaults_of
from amygdala_vllm.engine_settings import EngineSettings
from amygdala_vllm.extract.run import ExtractOptions
from amygdala_vllm.pairs.build import PairsOptions
from amygdala_vllm.pairs.select import Rules
from amygdala_vllm.reduce import ReduceOptions
from amygdala_vllm.validate.run import ValidateOptions

CLI = Path(inspect.getfile(defaults_of)).parent

#: command -> (its module, the function typer runs, the options classes whose defaults its flags show). The
#: engine flags (``EngineSettings``) of extract, validate and readout are held to the same rule by
#: ``tests/test_engine_settings.py``.
COMMANDS = {
    "pairs": ("pairs_cmd.py", "pairs", (Rules, PairsOptions)),
    "extract": ("extract_cmd.py", "extract", (ExtractOptions,)),
    "reduce": ("reduce_cmd.py", "reduce_command", (ReduceOptions,)),
    "validate": ("validate_cmd.py", "validate_command", (ValidateOptions,)),
}


def _class_defaults(classes: tuple[type, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for cls in classes:
        if dataclasses.is_dataclass(cls):
            out.update({f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING})
        else:
            out.update({f.name: f.default for f in msgspec.structs.fields(cls) if f.default is not msgspec.NODEFAULT})
    return out


def _literal_copies(source: str, func: str, fields: set[str]) -> list[str]:
    """Parameters of ``func`` named like a class field whose default is written as a literal (None aside)."""
    fn = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef) and n.name == func)
    params = fn.args.args[len(fn.args.args) - len(fn.args.defaults):]
    out = []
    for a, d in zip(params, fn.args.defaults):
        if isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "Option" and d.args:
            d = d.args[0]  # typer.Option(DEFAULT, "--flag", ...)
        if a.arg in fields and isinstance(d, ast.Constant) and d.value is not None:
            out.append(f"{func}: {a.arg} = {d.value!r}")
    return out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_flag_repeats_its_stage_default_as_a_literal(command):
    module, func, classes = COMMANDS[command]
    fields = set(_class_defaults(classes))
    assert _literal_copies((CLI / module).read_text(), func, fields) == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_default_a_flag_shows_is_its_stage_default(command):
    _module, _func, classes = COMMANDS[command]
    defaults = _class_defaults(classes)
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    compared = 0
    for p in cmd.params:
        if p.param_type_name == "option" and p.name in defaults and defaults[p.name] is not None:
            want = defaults[p.name]
            if want in ((), []):  # a repeatable flag: typer's None is the class's empty sequence
                continue
            if p.name == "pooling" and isinstance(want, tuple):  # extract --pooling: the modes, comma-joined
                want = ",".join(want)
            assert p.default == want, (command, p.name)
            compared += 1
    assert compared >= 1


def test_the_scan_finds_a_planted_copy():
    planted = (
        "import typer\n"
        "def cmd(a: int = typer.Option(256, '--a'), b: str = 'x', c: int | None = None, d: int = OPTS.d, e: int = 3):\n"
        "    pass\n"
    )
    assert _literal_copies(planted, "cmd", {"a", "b", "c", "d"}) == ["cmd: a = 256", "cmd: b = 'x'"]


def test_defaults_of_reads_dataclasses_and_structs():
    @dataclasses.dataclass
    class Opts:
        path: Path
        size: int = 3
        names: list[str] = dataclasses.field(default_factory=lambda: ["a"])

    d = defaults_of(Opts)
    assert d.size == 3 and d.names == ["a"]
    with pytest.raises(AttributeError, match="Opts has no default for 'path'"):
        d.path
    assert defaults_of(EngineSettings).kv_cache_gb == EngineSettings().kv_cache_gb
    assert defaults_of(EngineSettings).extra == {}
    with pytest.raises(TypeError, match="neither a dataclass nor a msgspec Struct"):
        defaults_of(int)
