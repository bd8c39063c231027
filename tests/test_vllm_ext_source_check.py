"""source_check / version_check / scripts/check_vllm.py: the declared vLLM internals, checked from source.

Everything runs on the installed vLLM's files (``site-packages/vllm``), read
with ``ast``, never imported by the checker, and without network: a planted
tree is a copy of that package made of symlinks, with one file edited.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import amygdala_vllm
from amygdala_vllm.vllm_ext import probes, version_check
from amygdala_vllm.vllm_ext.internals import Internal
from amygdala_vllm.vllm_ext.runners import VIEWS, V1RunnerView
from amygdala_vllm.vllm_ext.source_check import SourceTree, check_record, check_tree, declared, parse_minor, reads_for

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(amygdala_vllm.__file__).parent
SCRIPT = ROOT / "scripts" / "check_vllm.py"


def _installed_vllm() -> Path:
    spec = importlib.util.find_spec("vllm")
    assert spec is not None and spec.submodule_search_locations, "vLLM must be installed for the suite"
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="module")
def installed() -> SourceTree:
    return SourceTree.from_dir(_installed_vllm())


def _planted(tmp_path: Path, rel: str, old: str, new: str) -> Path:
    """A copy of the installed ``vllm`` package (symlinks) whose ``rel`` has ``old`` replaced by ``new``."""
    src = _installed_vllm()
    dest = tmp_path / "vllm"
    for dirpath, _, files in os.walk(src):
        here = dest / Path(dirpath).relative_to(src)
        here.mkdir(parents=True, exist_ok=True)
        for f in files:
            if f.endswith(".py"):
                os.symlink(Path(dirpath) / f, here / f)
    target = dest / rel
    text = target.read_text()
    assert old in text, f"{rel} no longer contains {old!r}: update the planted change"
    target.unlink()
    target.write_text(text.replace(old, new))
    return tmp_path


def test_the_installed_vllm_has_every_declared_internal(installed: SourceTree):
    minor = parse_minor(installed.version())
    records = reads_for(minor)
    assert len(records) > 80  # probes and the V1 view both contribute
    missing = [f"{o} {r.module}:{r.name}: {res.missing}" for (o, r), res in
               zip(records, check_tree(installed, records)) if res.missing]
    assert missing == []


def test_every_vllm_import_in_the_package_is_declared():
    """An ``import vllm...`` / ``from vllm... import X`` / a ``"vllm.a.b"`` module string anywhere in the package
    must match a declared record, so a new read cannot escape the version check."""
    records = [r for d in declared() for r in d.reads]
    modules = {r.module for r in records} | {f"{r.module}.{r.name}" for r in records if r.name}
    names = {(r.module, r.name) for r in records}
    declaring = {PACKAGE / "vllm_ext" / "probes.py", *(PACKAGE / "vllm_ext" / "runners").glob("*.py")}
    seen, undeclared = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "vllm" or alias.name.startswith("vllm."):
                        seen.append(alias.name)
                        if alias.name not in modules:
                            undeclared.append(f"{path.name}: import {alias.name}")
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module and \
                    (node.module == "vllm" or node.module.startswith("vllm.")):
                for alias in node.names:
                    seen.append(f"{node.module}:{alias.name}")
                    if (node.module, alias.name) not in names:
                        undeclared.append(f"{path.name}: from {node.module} import {alias.name}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and path not in declaring and \
                    re.fullmatch(r"vllm(\.\w+)+", node.value):  # e.g. the module `serve` runs with python -m
                seen.append(node.value)
                if node.value not in modules:
                    undeclared.append(f"{path.name}: module string {node.value!r}")
    # the scan sees what it checks (else it could never fail)
    assert "vllm" in seen and "vllm:LLM" in seen and "vllm.entrypoints.openai.api_server" in seen
    assert "vllm.entrypoints.openai.completion.protocol:CompletionRequest" in seen
    assert undeclared == []


def _runner_reads(source: str) -> set[str]:
    """Names read directly on a runner in a view's source: ``self.runner.X``, ``runner.X``,
    ``getattr(self.runner, "X", ...)`` (the first attribute only: ``runner.model.f`` reads ``model``)."""

    def is_runner(node: ast.expr) -> bool:
        return (isinstance(node, ast.Name) and node.id == "runner") or \
            (isinstance(node, ast.Attribute) and node.attr in ("runner", "_runner") and
             isinstance(node.value, ast.Name) and node.value.id == "self")

    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and is_runner(node.value) and not is_runner(node):
            out.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
                and len(node.args) >= 2 and is_runner(node.args[0]) and isinstance(node.args[1], ast.Constant):
            out.add(str(node.args[1].value))
    return out


@pytest.mark.parametrize("kind", sorted(VIEWS))
def test_every_runner_member_a_view_reads_is_declared(kind: str):
    """A view cannot read a runner member its ``READS`` does not declare (so the check cannot miss it)."""
    import inspect

    view = VIEWS[kind]
    read = _runner_reads(inspect.getsource(inspect.getmodule(view)))
    assert read, "the scan found no runner reads in the view: it could never fail"
    if kind == "v1":
        assert {"input_batch", "query_start_loc", "requests", "get_model", "uses_mrope"} <= read  # attributes, getattr
    members = {r.name.rpartition(".")[2] for r in view.READS if "." in r.name}
    assert sorted(read - members) == []


def test_declarations_come_from_probes_and_every_view():
    owners = {d.owner: d for d in declared()}
    assert owners["probes"].reads == probes.READS and owners["probes"].versions is None
    for kind, view in VIEWS.items():
        assert owners[f"{kind} view"].reads == view.READS and owners[f"{kind} view"].versions == view.VERSIONS
    assert V1RunnerView.VERSIONS == ((0, 32), (0, 33))
    # a view's records are not asked of a release without that runner
    assert not [r for o, r in reads_for((0, 34)) if o == "v1 view"]
    assert [r for o, r in reads_for((0, 33)) if o == "v1 view"] == list(V1RunnerView.READS)


def test_a_planted_missing_attribute_fails_through_the_script(tmp_path: Path):
    """``self.input_batch = InputBatch(`` renamed in the V1 runner: the script reports it and exits 1."""
    tree = _planted(tmp_path, "v1/worker/gpu_model_runner.py", "self.input_batch = InputBatch(",
                    "self.input_batch_renamed = InputBatch(")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIP_NO_INDEX": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--source", str(tree)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if "[attribute]" in ln and ln.rstrip().endswith("MISSING")]
    assert len(rows) == 2 and all("input_batch" in ln for ln in rows)  # GPUModelRunner and CPUModelRunner (its base)
    assert "no attribute input_batch on CPUModelRunner / GPUModelRunner" in proc.stdout
    assert "2 MISSING" in proc.stdout


def test_a_renamed_parameter_is_caught(tmp_path: Path):
    tree = SourceTree.from_dir(_planted(tmp_path, "model_executor/model_loader/base_loader.py",
                                        "def load_model(\n        self, vllm_config", "def load_model(\n        self, config"))
    record = Internal("vllm.model_executor.model_loader.base_loader", "BaseModelLoader.load_model", "method",
                      params=("vllm_config", "model_config", "prefix"))
    assert (record.module, record.name, record.params) in {(r.module, r.name, r.params) for r in probes.READS}
    why = check_record(tree, record)
    assert why is not None and why.startswith("parameters are (config, model_config")
    assert check_record(SourceTree.from_dir(_installed_vllm()), record) is None


def test_each_kind_of_record(installed: SourceTree):
    """What each kind accepts and refuses (read against vllm's own files)."""
    ok = [
        Internal("vllm.distributed"),  # a package
        Internal("vllm", "LLM", "class"),  # lazily exported by vllm/__init__.py, followed to entrypoints.llm
        Internal("vllm.distributed", "get_pp_group", "function"),  # re-exported by "from .parallel_state import *"
        Internal("vllm.v1.worker.cpu_model_runner", "CPUModelRunner.execute_model", "method"),  # on a base class
        Internal("vllm.v1.worker.gpu_input_batch", "InputBatch.req_ids", "attribute"),  # a property
        Internal("vllm.sampling_params", "SamplingParams.extra_args", "attribute"),  # a msgspec field
        Internal("vllm.entrypoints.llm", "LLM.generate", "method", params=("prompts",)),  # a prefix
    ]
    assert [check_record(installed, r) for r in ok] == [None] * len(ok)
    bad = {
        Internal("vllm.no_such_module"): "no module vllm.no_such_module",
        Internal("vllm", "NoSuchThing", "class"): "no NoSuchThing in vllm",
        Internal("vllm.distributed", "get_pp_group", "class"): "get_pp_group is not a class",
        Internal("vllm.v1.worker.gpu_model_runner", "GPUModelRunner.no_such", "attribute"): "no attribute no_such",
        Internal("vllm.entrypoints.llm", "LLM.generate", "method", params=("sampling_params", "prompts")):
            "parameters are (prompts, sampling_params",
        Internal("vllm.v1.worker.gpu_input_batch", "InputBatch.req_ids", "method"): "no method req_ids",
        Internal("vllm.entrypoints.llm", "LLM.generate", "method", params=()):  # prompts is required
            "parameters are (prompts, sampling_params, use_tqdm",
    }
    for record, reason in bad.items():
        why = check_record(installed, record)
        assert why is not None and why.startswith(reason), (record, why)


def test_bad_version_and_failed_download_are_one_line(tmp_path: Path, monkeypatch, capsys):
    assert version_check.main(["0.x", "--cache", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "ValueError: '0.x' is not a vLLM version (expected e.g. 0.34.0)"
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip cannot reach any index: the download fails at once
    assert version_check.main(["0.32.0", "--cache", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("WheelError: could not download vllm==0.32.0") and "\n" not in err
    assert not list(tmp_path.rglob("*.whl"))


def test_a_cached_wheel_is_read_without_network(tmp_path: Path, monkeypatch, capsys):
    """A wheel in the cache is used as is (pip would fail: no index); the check reads it as a zip."""
    wheel = tmp_path / "0.99.0" / "vllm-0.99.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("vllm/__init__.py", "from .version import __version__\n")
        z.writestr("vllm/_version.py", "__version__ = version = '0.99.0'\n")
        z.writestr("vllm/version.py", "from ._version import __version__\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    assert version_check.main(["0.99.0", "--cache", str(tmp_path)]) == 1  # nearly everything is missing there
    out = capsys.readouterr().out
    assert "0.99.0" in out.splitlines()[0] and "vllm:__version__ [attribute]" in out
    assert re.search(r"probes  vllm:__version__ \[attribute\] +ok", out)
    assert "v1 view" not in out  # no view declares 0.99
