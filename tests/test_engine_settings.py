"""``EngineSettings``: every default written once, checked in one line, carried whole (and as JSON to Ray actors).

The scan below reads the package's source: a default literal for an engine
setting anywhere but ``engine_settings.py`` (a parameter default, a
dataclass/Struct field, a typer option's default) is a second copy that can
drift, as the KV-cache size once did in six places.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import msgspec
import pytest
import typer
from typer.testing import CliRunner

import amygdala_vllm
from amygdala_vllm.cli import app
from amygdala_vllm.engine_settings import ENGINE_DEFAULTS, GIB, EngineSettings
from amygdala_vllm.errors import UsageError

PACKAGE = Path(amygdala_vllm.__file__).parent
FIELDS = {f.name for f in msgspec.structs.fields(EngineSettings)}
#: Names the same settings go by elsewhere: the CLI's ``compile_`` and vLLM's names for two of them.
ALIASES = {"compile_", "enforce_eager", "kv_cache_bytes", "max_num_seqs"}
#: Not scanned, as other modules use the names for other things: ``model`` (no default to repeat: None means
#: "the manifest's"), ``seed`` (also ``pairs``' sampling seed) and ``extra`` (also a server's extra flags).
SCANNED = (FIELDS | ALIASES) - {"model", "seed", "extra"}
#: ``dtype`` is also the storage dtype of the vectors (``reduce``: float32, float16); only the engine's names count.
ENGINE_DTYPES = {"auto", "bf16", "fp16", "fp32"}
#: The command-line flag of each setting a command exposes.
FLAGS = {"--dtype": "dtype", "--max-model-len": "max_model_len", "--kv-cache-gb": "kv_cache_gb",
         "--batch-size": "batch_size", "--tensor-parallel-size": "tensor_parallel_size",
         "--pipeline-parallel-size": "pipeline_parallel_size", "--compile": "compile",
         "--max-num-batched-tokens": "max_num_batched_tokens"}


def _literal(node: ast.expr | None) -> bool:
    """A value written in the source (``1.0``, ``None``, ``1 << 30``, ``-1``), not a name read from elsewhere."""
    if node is None:
        return False
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp):
        return _literal(node.operand)
    if isinstance(node, ast.BinOp):
        return _literal(node.left) and _literal(node.right)
    return False


def _flag_of(call: ast.Call) -> str | None:
    for arg in call.args[1:]:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            name = arg.value.split("/")[0]
            if name in FLAGS:
                return name
    return None


def _copy(name: str, value: ast.expr | None) -> bool:
    """``name = value`` repeats an engine default: a literal, and for ``dtype`` one of the engine's dtype names."""
    if name not in SCANNED or not _literal(value):
        return False
    return name != "dtype" or (isinstance(value, ast.Constant) and value.value in ENGINE_DTYPES)


def default_literals(source: str, where: str) -> list[str]:
    """Every default literal for an engine setting in ``source``: ``where:line name = value``."""
    hits: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            positional = a.posonlyargs + a.args
            pairs = list(zip(positional[len(positional) - len(a.defaults):], a.defaults))
            pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
            hits += [f"{where}:{d.lineno} {arg.arg} = {ast.unparse(d)}" for arg, d in pairs
                     if _copy(arg.arg, d)]
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                        and _copy(stmt.target.id, stmt.value)):
                    value = ast.unparse(stmt.value)  # type: ignore[arg-type]
                    hits.append(f"{where}:{stmt.lineno} {stmt.target.id} = {value}")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "Option":
            flag = _flag_of(node)
            if flag and node.args and _literal(node.args[0]) and not (
                    isinstance(node.args[0], ast.Constant) and node.args[0].value is ...):
                hits.append(f"{where}:{node.lineno} {flag} = {ast.unparse(node.args[0])}")
    return hits


def test_each_default_is_written_once_in_engine_settings() -> None:
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "engine_settings.py":
            hits += default_literals(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
    assert hits == []


def test_the_scan_finds_a_planted_default() -> None:
    planted = (
        "import typer\n"
        "def start(model, kv_cache_gb: float = 1.0, *, batch_size=16, dtype='auto'): ...\n"
        "class Options:\n"
        "    kv_cache_bytes: int = 1 << 30\n"
        "    compile: bool = False\n"
        "    max_model_len: int | None = None\n"
        "    batch_size: int = DEFAULTS.batch_size\n"  # read from elsewhere: not a copy
        "    dtype: str = 'float16'\n"  # a storage dtype (reduce's vectors), not the engine's
        "def command(batch: int = typer.Option(16, '--batch-size'),\n"
        "            eager: bool = typer.Option(False, '--compile/--eager'),\n"
        "            model: str = 'smollm2', seed: int = 0): ...\n"
    )
    assert default_literals(planted, "planted.py") == [
        "planted.py:2 kv_cache_gb = 1.0", "planted.py:2 batch_size = 16", "planted.py:2 dtype = 'auto'",
        "planted.py:4 kv_cache_bytes = 1 << 30", "planted.py:5 compile = False", "planted.py:6 max_model_len = None",
        "planted.py:9 --batch-size = 16", "planted.py:10 --compile = False",
    ]


@pytest.mark.parametrize("command", ["extract", "validate", "readout"])
def test_the_help_defaults_are_the_structs(command: str) -> None:
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    shown = {FLAGS[o.split("/")[0]]: p.default for p in params for o in p.opts if o.split("/")[0] in FLAGS}
    expected = {"dtype", "max_model_len", "kv_cache_gb", "tensor_parallel_size", "pipeline_parallel_size", "compile"}
    expected |= {"batch_size"} if command != "readout" else set()  # readout scores one text: batch 1
    expected |= {"max_num_batched_tokens"} if command == "extract" else set()
    assert set(shown) == expected
    assert shown == {name: getattr(ENGINE_DEFAULTS, name) for name in expected}


def test_the_defaults_suit_a_small_cpu_machine() -> None:
    d = ENGINE_DEFAULTS
    assert (d.model, d.dtype, d.max_model_len, d.compile, d.extra) == (None, "auto", None, False, {})
    assert (d.kv_cache_gb, d.kv_cache_bytes, d.batch_size, d.ranks) == (1.0, GIB, 16, 1)
    d.check()


@pytest.mark.parametrize(("change", "message"), [
    ({"batch_size": 0}, "--batch-size must be at least 1, got 0"),
    ({"kv_cache_gb": 0.0}, "--kv-cache-gb must be > 0, got 0.0"),
    ({"kv_cache_gb": -1.0}, "--kv-cache-gb must be > 0, got -1.0"),
    ({"tensor_parallel_size": 0}, "--tensor-parallel-size and --pipeline-parallel-size must be >= 1"),
    ({"pipeline_parallel_size": 0}, "--tensor-parallel-size and --pipeline-parallel-size must be >= 1"),
    ({"dtype": "fp8"}, "unknown --dtype 'fp8'; choose one of auto, bf16, fp16, fp32"),
])
def test_check_refuses_impossible_values_in_one_line(change: dict, message: str) -> None:
    with pytest.raises(UsageError) as err:
        EngineSettings(**change).check()
    assert str(err.value) == message


@pytest.mark.parametrize(("args", "message"), [
    (["extract", "--target-layers", "1", "--kv-cache-gb", "0"], "UsageError: --kv-cache-gb must be > 0, got 0.0"),
    (["extract", "--target-layers", "1", "--batch-size", "0"], "UsageError: --batch-size must be at least 1, got 0"),
    (["validate", "--pipeline-parallel-size", "0"],
     "UsageError: --tensor-parallel-size and --pipeline-parallel-size must be >= 1"),
])
def test_the_commands_refuse_them_before_reading_anything(args: list[str], message: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing exists here: a check after a read would fail on the missing file first
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and res.stderr.strip() == message, res.output


def test_json_round_trip_as_the_ray_actors_receive_it() -> None:
    from amygdala_vllm.extract.capture import CaptureSpec
    from amygdala_vllm.readout.ray_readout import ReadoutSpec

    engine = EngineSettings(model="/models/m", dtype="fp32", max_model_len=512, kv_cache_gb=0.0625, batch_size=4,
                            tensor_parallel_size=2, compile=True, max_num_batched_tokens=64,
                            extra={"distributed_executor_backend": "mp"})
    capture = CaptureSpec(engine=engine, layers=[1, 3], hidden_size=64, num_layers=4, skip_first_tokens=1,
                          overlong="truncate")
    assert msgspec.json.decode(msgspec.json.encode(capture), type=CaptureSpec) == capture
    readout = ReadoutSpec(engine=engine)
    assert msgspec.json.decode(msgspec.json.encode(readout), type=ReadoutSpec) == readout
    assert capture.max_model_len == 512
    # a typo (or a field of an older wire form) fails loudly instead of being dropped
    wire = msgspec.json.decode(msgspec.json.encode(readout))
    wire["engine"]["kv_cache_bytes"] = 1 << 30
    with pytest.raises(msgspec.ValidationError, match="kv_cache_bytes"):
        msgspec.json.decode(msgspec.json.encode(wire), type=ReadoutSpec)


def test_the_stages_carry_the_struct_not_loose_fields() -> None:
    from amygdala_vllm.extract.capture import CaptureSpec
    from amygdala_vllm.extract.run import ExtractOptions
    from amygdala_vllm.readout.ray_readout import ReadoutSpec
    from amygdala_vllm.readout.scorer import Readout
    from amygdala_vllm.validate.run import ValidateOptions

    holders = {
        "ExtractOptions": {f.name for f in dataclasses.fields(ExtractOptions)},
        "ValidateOptions": {f.name for f in dataclasses.fields(ValidateOptions)},
        "CaptureSpec": {f.name for f in msgspec.structs.fields(CaptureSpec)},
        "ReadoutSpec": {f.name for f in msgspec.structs.fields(ReadoutSpec)},
        "Readout": set(inspect.signature(Readout.__init__).parameters),
    }
    for name, fields in holders.items():
        assert "engine" in fields and not fields & (FIELDS | ALIASES), name
