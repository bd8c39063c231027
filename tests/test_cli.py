"""cli: the one place errors become exit codes (``_app.command``), and the small shared pieces of every command.

The commands themselves are tested end to end in ``test_cli_<command>_cmd.py`` (and ``test_extract_run.py``);
here the wrapper they all share and the ``--dtype`` / usage helpers, each on its own.
"""

from __future__ import annotations

import json
import os

import pytest
import typer

from amygdala_vllm.cli._app import QUIETED_VLLM_ENV, command
from amygdala_vllm.cli._dtype import announce_dtype, choose_dtype
from amygdala_vllm.cli._usage import finish_usage
from amygdala_vllm.errors import FormatError
from amygdala_vllm.usage import Meter, read_usage


@pytest.fixture
def vllm_logging(monkeypatch):
    """Run with VLLM_LOGGING_LEVEL unset (as a user's shell has it); restored afterwards."""
    monkeypatch.delenv("VLLM_LOGGING_LEVEL", raising=False)
    monkeypatch.delenv(QUIETED_VLLM_ENV, raising=False)


def test_a_deliberate_error_is_one_line_and_exit_1(vllm_logging, capsys):
    @command
    def fails() -> None:
        raise FormatError("bad.json: not valid JSON")

    with pytest.raises(typer.Exit) as info:
        fails()
    assert info.value.exit_code == 1
    assert capsys.readouterr().err == "FormatError: bad.json: not valid JSON\n"


def test_ctrl_c_is_exit_130_and_other_errors_are_not_swallowed(vllm_logging, capsys):
    @command
    def interrupted() -> None:
        raise KeyboardInterrupt

    @command
    def bug() -> None:
        raise ZeroDivisionError("a bug shows its traceback")

    with pytest.raises(typer.Exit) as info:
        interrupted()
    assert info.value.exit_code == 130 and "partial output was discarded" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):
        bug()


def test_vllm_is_quieted_unless_the_user_chose_a_level(vllm_logging, monkeypatch):
    seen = []
    quiet = command(lambda: seen.append((os.environ.get("VLLM_LOGGING_LEVEL"), os.environ.get(QUIETED_VLLM_ENV))))
    quiet()
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    monkeypatch.delenv(QUIETED_VLLM_ENV)
    quiet()
    assert seen == [("ERROR", "1"), ("DEBUG", None)]


def test_dtype_choice_is_resolved_then_announced_in_one_line(capsys):
    choice = choose_dtype("fp32")
    assert choice.dtype == "fp32" and capsys.readouterr().err == ""  # nothing printed before inputs are checked
    announce_dtype(choice)
    assert capsys.readouterr().err == choice.describe() + "\n"
    assert choose_dtype("auto").dtype in ("bf16", "fp32")


def test_finish_usage_writes_beside_the_output_and_prints_the_line(tmp_path, capsys):
    out = tmp_path / "v.safetensors"
    finish_usage(Meter("reduce"), out, {"texts": 10})
    usage = read_usage(tmp_path / "v.usage.json")
    assert usage.stage == "reduce" and usage.counts == {"texts": 10}
    line = capsys.readouterr().out
    assert line.startswith("used: ") and line.rstrip().endswith(f"({tmp_path / 'v.usage.json'})")
    assert json.loads((tmp_path / "v.usage.json").read_text())["format"] == usage.format
