"""`amygdala-vllm readout` through typer's CliRunner, with a fake engine in place of vLLM.

Every bad input must fail with one line and exit 1 *before* the engine starts;
the fake :class:`FakeReadout` (installed as ``amygdala_vllm.readout.scorer``) records
whether it was ever constructed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from amygdala_vllm.cli import app
from amygdala_vllm.cli.readout_cmd import _stdout_to_stderr
from amygdala_vllm.engine_settings import EngineSettings
from amygdala_vllm.readout.render import SCORES_FORMAT, decode_scores
from readout_fakes import CONCEPTS, FakeReadout, make_manifest, write_vectors

runner = CliRunner()


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> list[FakeReadout]:
    """Installs a fake ``amygdala_vllm.readout.scorer``; returns the engines the CLI started."""
    started: list[FakeReadout] = []

    def factory(vectors: Path, manifest: Path, *, engine: EngineSettings, **kwargs: object) -> FakeReadout:
        """``Readout(vectors, manifest, engine=...)``: records the engine settings field by field."""
        engine = FakeReadout(engine.model, vectors, manifest, {**msgspec.structs.asdict(engine), **kwargs})
        started.append(engine)
        return engine

    module = types.ModuleType("amygdala_vllm.readout.scorer")
    module.Readout = factory  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "amygdala_vllm.readout.scorer", module)
    return started


def _run(*args: str, input: str | None = None):
    return runner.invoke(app, ["readout", *args], input=input)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--vectors runs/amygdala.safetensors does not exist"),
        (("--vectors", "{tmp}/nope.safetensors"), "--vectors {tmp}/nope.safetensors does not exist"),
        (("--vectors", "{tmp}/vec.bin"), "must name a .safetensors file"),
        (("--vectors", "{vec}", "--manifest", "{tmp}/m.json"), "manifest {tmp}/m.json does not exist"),
        (("--vectors", "{vec}", "--concepts", "joy,rage"), "unknown concept 'rage'"),
        (("--vectors", "{vec}", "--layer", "5"), "layer 5 is not hooked; the manifest has layers 3, 8, 14, 20"),
        (("--vectors", "{vec}", "--layer", "x"), "a layer number or 'all'"),
        (("--vectors", "{vec}", "--view", "grid"), "--view must be auto, table or strip"),
        (("--vectors", "{vec}", "--html", "{tmp}/no/dir/x.html"), "directory {tmp}/no/dir does not exist"),
        (("--vectors", "{vec}", "--file", "{tmp}/missing.txt"), "--file {tmp}/missing.txt does not exist"),
        (("--vectors", "{vec}", "--file", "{tmp}/in.txt", "hello"), "give TEXT or --file, not both"),
        (("--vectors", "{vec}"), "no text given: the input is empty"),
        (("--vectors", "{vec}", "-"), "no text given: the input is empty"),
        (("--vectors", "{vec}", "--chat", "hello"), "--chat input must be a JSON list"),
        (("--vectors", "{vec}", "--chat", '[{"role": "user"}]'), "missing required field `content`"),
        (("--vectors", "{vec}", "--chat", "[]"), "holds no messages"),
    ],
)
def test_bad_input_fails_in_one_line_before_the_engine_starts(
    tmp_path: Path, engines: list[FakeReadout], args: tuple[str, ...], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --vectors is relative to the working directory
    vec = write_vectors(tmp_path)
    (tmp_path / "vec.bin").write_bytes(b"")
    (tmp_path / "in.txt").write_text("from a file")
    res = _run(*(a.replace("{tmp}", str(tmp_path)).replace("{vec}", str(vec)) for a in args), input="")
    assert res.exit_code == 1, res.output
    assert message.replace("{tmp}", str(tmp_path)) in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert engines == []


def test_unreadable_manifest_is_a_format_error(tmp_path: Path, engines: list[FakeReadout]) -> None:
    vec = write_vectors(tmp_path)
    vec.with_suffix(".manifest.json").write_text('{"format": "amygdala-pairs/1"}')
    res = _run("--vectors", str(vec), "hi")
    assert res.exit_code == 1 and "FormatError" in res.stderr and "expected 'amygdala-readout/2' or 'amygdala-readout/1'" in res.stderr
    assert engines == []


def test_json_owns_stdout_and_holds_every_concept(tmp_path: Path, engines: list[FakeReadout]) -> None:
    vec = write_vectors(tmp_path)
    res = _run("--vectors", str(vec), "--json", "--dtype", "fp32", "--max-model-len", "512",
               "--kv-cache-gb", "0.5", "I am afraid")
    assert res.exit_code == 0, res.output
    doc = decode_scores(res.stdout.encode())
    assert doc.format == SCORES_FORMAT and doc.text == "I am afraid" and doc.model == "tiny-model"
    assert doc.tokens == ["<s>", "I", "am", "afraid"] and doc.layers == [8]
    assert sorted(doc.concepts) == sorted(CONCEPTS) and doc.concepts[0] == "fear"
    (engine,) = engines
    assert engine.model == "tiny-model" and engine.vectors == vec
    assert engine.manifest_path == vec.with_suffix(".manifest.json")
    assert engine.kwargs["dtype"] == "fp32" and engine.kwargs["max_model_len"] == 512
    assert engine.kwargs["kv_cache_gb"] == 0.5
    assert engine.calls == [("score_texts", ["I am afraid"]), ("close", None)]


def test_terminal_table_shows_the_four_most_expressed_concepts(tmp_path: Path, engines: list[FakeReadout]) -> None:
    vec = write_vectors(tmp_path)
    res = _run("--vectors", str(vec), "--model", "other", "--layer", "14", "--view", "table",
               input="so much fear here")
    assert res.exit_code == 0, res.output
    assert engines[0].model == "other" and engines[0].calls[0] == ("score_texts", ["so much fear here"])
    header = next(line for line in res.stdout.splitlines() if "┃ token" in line)
    shown = [c for c in CONCEPTS if c in header]
    assert len(shown) == 4 and "fear" in shown and "awe" not in shown  # awe sits below its midpoint
    assert "layer 14" in res.stdout and "much" in res.stdout


def test_chosen_concepts_strip_view_and_html(tmp_path: Path, engines: list[FakeReadout]) -> None:
    vec = write_vectors(tmp_path)
    (tmp_path / "in.txt").write_text("a b c")
    out = tmp_path / "map.html"
    res = _run("--vectors", str(vec), "--file", str(tmp_path / "in.txt"), "--concepts", "joy, calm",
               "--layer", "all", "--view", "strip", "--html", str(out))
    assert res.exit_code == 0, res.output
    assert "joy L3" in res.stdout and "calm L20" in res.stdout and "fear" not in res.stdout
    assert f"wrote {out}" in res.stdout
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<option") == 2 * 4


def test_chat_is_rendered_with_the_chat_template(tmp_path: Path, engines: list[FakeReadout]) -> None:
    vec = write_vectors(tmp_path)
    chat = [{"role": "system", "content": "be calm"}, {"role": "user", "content": "help!"}]
    res = _run("--vectors", str(vec), "--chat", "--json", "-", input=json.dumps(chat))
    assert res.exit_code == 0, res.output
    assert engines[0].calls[:2] == [("chat_token_ids", chat), ("score_token_ids", [list(range(7))])]
    doc = decode_scores(res.stdout.encode())
    assert [(m.role, m.content) for m in doc.messages] == [(m["role"], m["content"]) for m in chat]
    assert doc.text == "".join(doc.tokens)


def test_manifest_flag_overrides_the_sibling(tmp_path: Path, engines: list[FakeReadout]) -> None:
    vec = tmp_path / "v.safetensors"
    vec.write_bytes(b"x")
    from amygdala_vllm.formats import write_json

    write_json(tmp_path / "elsewhere.json", make_manifest())
    res = _run("--vectors", str(vec), "--manifest", str(tmp_path / "elsewhere.json"), "--json", "hi there")
    assert res.exit_code == 0, res.output
    assert engines[0].manifest_path == tmp_path / "elsewhere.json"


def test_engine_output_is_moved_off_stdout_at_the_descriptor_level() -> None:
    """vLLM's engine process writes to fd 1; with --json that must land on stderr."""
    code = (
        "import os, subprocess, sys\n"
        "from amygdala_vllm.cli.readout_cmd import _stdout_to_stderr\n"
        "with _stdout_to_stderr(True):\n"
        "    print('py-log')\n"
        "    subprocess.run(['echo', 'child-log'], check=True)\n"
        "print('DOC')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout == "DOC\n"
    assert "py-log" in proc.stderr and "child-log" in proc.stderr


def test_stdout_guard_is_a_no_op_when_off(capsys: pytest.CaptureFixture[str]) -> None:
    with _stdout_to_stderr(False):
        print("kept")
    assert capsys.readouterr().out == "kept\n"


def test_help_lists_the_command_and_its_flags() -> None:
    res = runner.invoke(app, ["readout", "--help"])
    assert res.exit_code == 0
    for flag in ("--vectors", "--manifest", "--chat", "--concepts", "--layer", "--json", "--html", "--kv-cache-gb"):
        assert flag in res.stdout
