"""The tests mirror the package: a module with logic has a test file of its name, and no test file names a ghost.

Why: a newcomer who changes ``amygdala_vllm/pairs/mcp/client.py`` should find its tests in
``tests/test_pairs_mcp_client.py`` without searching (httpx's rule, docs/architecture.md). The name of a
module's test file is its path below the package, dots to underscores, ``__init__`` dropped (a package's
own logic is tested in ``test_<package>.py``) and a private module's leading underscore dropped
(``readout/render/_view.py`` -> ``test_readout_render_view.py``); a private module may instead be tested
through its package's public face, in the package's file (``test_readout_render.py``).

A module *has logic* when it defines a function or method whose body, docstring aside, is more than
``pass``, ``...`` or returning a plain name or constant. ``__init__`` re-exports and modules of pure
Structs and constants have none, so they need no test file of their own.

Two short lists say where the rule bends, each entry with its reason: :data:`COVERED_ELSEWHERE` (a module
with logic whose tests live in another module's file, mostly engine-side code only a real engine runs)
and :data:`CROSS_CUTTING` (test files named for what they prove across modules: import rules, exports,
docs commands, real-model meaning, engine integration). Helper modules in ``tests/`` (not ``test_*``)
are free. Finally, no test file imports another test file: shared helpers live in helper modules or
``conftest.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import amygdala_vllm

PACKAGE = Path(amygdala_vllm.__file__).parent
TESTS = Path(__file__).resolve().parent

#: module -> (the test file that covers it, why it has none of its own name)
COVERED_ELSEWHERE: dict[str, tuple[str, str]] = {
    # engine-side: only a real vLLM engine, server or Ray cluster runs them, and the tests that start one do
    "amygdala_vllm.extract.capture": ("test_extract_run.py", "the engine side of extract; every extract run drives it"),
    "amygdala_vllm.extract.ray_executor": ("test_cluster.py", "extract on Ray actors; needs a real Ray cluster"),
    "amygdala_vllm.extract.ray_shards": ("test_cluster.py", "extract's Ray actor; needs a real Ray cluster"),
    "amygdala_vllm.cluster.actors": ("test_cluster.py", "Ray actor plumbing; needs a real Ray cluster"),
    "amygdala_vllm.cluster.pool": ("test_cluster.py", "the actor pool; needs a real Ray cluster"),
    "amygdala_vllm.cluster.placement": ("test_cluster.py", "placement groups; needs a real Ray cluster"),
    "amygdala_vllm.cli.ray_options": ("test_cluster.py", "the --ray flags; every test_cluster run parses them"),
    "amygdala_vllm.vllm_ext.hooks": ("test_capture_engine.py", "hooks on vLLM's decoder layers (also run on "
                                     "layer-shaped modules in test_vllm_ext_layers and test_vllm_ext_runners_v2)"),
    "amygdala_vllm.vllm_ext.ops": ("test_compiled_capture.py", "the tap custom op; only a compiled engine runs it "
                                   "(test_vllm_ext_runners_v2 registers it too)"),
    "amygdala_vllm.vllm_ext.plugin": ("test_compiled_capture.py", "vLLM's plugin entry points, loaded by vLLM itself"),
    "amygdala_vllm.vllm_ext.serve_endpoint": ("test_serve_endpoint.py", "routes declared with vLLM's request models; "
                                              "only a real server runs them (test_serve_plain: --api-key)"),
    "amygdala_vllm.vllm_ext.serve_worker": ("test_serve_endpoint.py", "the serving worker extension; only a real "
                                            "server runs it"),
    "amygdala_vllm.serve.process": ("test_serve_endpoint.py", "starts the server every serve test talks to"),
    "amygdala_vllm.vllm_ext.runners.v1": ("test_vllm_ext_runners.py", "the V1 view on runner-shaped objects, beside "
                                          "the table that picks it"),
    "amygdala_vllm.vllm_ext.version_check": ("test_vllm_ext_source_check.py", "drives the source check tested there"),
    "amygdala_vllm.vllm_ext.internals": ("test_vllm_ext_source_check.py", "the Internal record the source check "
                                         "verifies"),
    # tested through the module or command that uses them, where their contract shows
    "amygdala_vllm.pairs.mcp.errors": ("test_pairs_mcp_client.py", "each failure shape of a real server, as the "
                                       "client reports it"),
    "amygdala_vllm.pairs.mcp.transport": ("test_pairs_mcp_client.py", "every transport against the SDK's servers"),
    "amygdala_vllm.reduce.stats": ("test_reduce_core.py", "the class sums every method reduces from, checked "
                                   "against numpy references"),
    "amygdala_vllm.validate.run": ("test_cli_validate_cmd.py", "run_validate end to end with a synthetic readout "
                                   "(pick_heldout in test_validate_evaluate)"),
    "amygdala_vllm.validate.report": ("test_validate_evaluate.py", "report.md written and read there"),
    "amygdala_vllm.validate.schema": ("test_validate_evaluate.py", "the report Structs: written, read back, upgraded "
                                      "from version 1"),
    "amygdala_vllm.validate.auto_check": ("test_reduce_auto.py", "the CV-vs-held-out check of --method auto"),
    "amygdala_vllm.validate.specificity_report": ("test_cli_validate_cmd.py", "the specificity section of report.md "
                                                  "and its PNG"),
    "amygdala_vllm.cli.specificity_view": ("test_cli_validate_cmd.py", "the specificity tables validate prints"),
    "amygdala_vllm.cli.extract_cmd": ("test_extract_run.py", "extract's flags and errors, end to end"),
    "amygdala_vllm.cli.model_cmd": ("test_models.py", "`amygdala-vllm model` beside the models it prepares"),
}

#: test file -> what it proves across modules (named for that, not for one module)
CROSS_CUTTING: dict[str, str] = {
    "test_layout_mirror.py": "this rule",
    "test_import_rules.py": "the import and layer rules of the whole package",
    "test_exports.py": "every package's __all__",
    "test_docs_commands.py": "every command and flag the README and docs show",
    "test_bench_smoke.py": "the benchmark script's pure parts",
    "test_gpu_check.py": "scripts/gpu_check.py",
    "test_capture_engine.py": "capture in a real engine equals HF's residual stream",
    "test_compiled_capture.py": "capture and readout under torch.compile, through the CLI",
    "test_engine_defaults.py": "what every engine starts with (runner, dtype, context)",
    "test_parallel.py": "tensor and pipeline parallel equal the single-rank run",
    "test_real_sentiment.py": "the directions mean something on a real model",
    "test_reduce_memory.py": "reduce's peak memory does not grow with the shards",
    "test_reduce_methods_engine.py": "every reduce method's vectors score in vLLM like the offline projection",
    "test_reduce_neutral_texts.py": "pairs --neutral-texts reaching reduce's statistics",
    "test_serve_plain.py": "vLLM's own server with our plugins, and --api-key on /amygdala/*",
    "test_serve_smollm2.py": "serve's default compiled path on the real model",
}


def mirror_name(module: str) -> str:
    """``amygdala_vllm.readout.render._view`` -> ``test_readout_render_view.py`` (``amygdala_vllm`` -> ``test_.py``)."""
    parts = module.split(".")[1:]
    return "test_" + "_".join(p.lstrip("_") for p in parts) + ".py"


def mirror_names(module: str) -> list[str]:
    """Where ``module``'s tests may live: its own file, and for a private module its package's file too.

    A private module (``render/_view.py``) is reached through its package's public face, so the package's
    test file (``test_readout_render.py``) may hold its tests, as httpx tests its private modules.
    """
    names = [mirror_name(module)]
    package, _, last = module.rpartition(".")
    if last.startswith("_"):
        names.append(mirror_name(package))
    return names


def package_modules(root: Path = PACKAGE) -> dict[str, str]:
    """Every module's dotted name (packages by their ``__init__``) -> its source."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path.read_text()
    return out


def _trivial(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):  # a docstring or ``...``
        return True
    return isinstance(stmt, ast.Return) and (stmt.value is None or isinstance(stmt.value, (ast.Name, ast.Constant)))


def has_logic(source: str) -> bool:
    """Some function or method does more than ``pass``/``...``/return a name or constant."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not all(_trivial(s) for s in node.body):
                return True
    return False


def missing_tests(modules: Mapping[str, str], test_files: Iterable[str],
                  covered: Mapping[str, object] = COVERED_ELSEWHERE) -> list[str]:
    """Modules with logic that have no test file of their name and no entry in ``covered``."""
    have = set(test_files)
    return [m for m, src in modules.items()
            if has_logic(src) and not have.intersection(mirror_names(m)) and m not in covered]


def ghost_tests(modules: Iterable[str], test_files: Iterable[str],
                cross_cutting: Mapping[str, str] = CROSS_CUTTING) -> list[str]:
    """Test files named for no module and not listed as cross-cutting."""
    names = {mirror_name(m) for m in modules}
    return sorted(f for f in test_files if f not in names and f not in cross_cutting)


def imports_of_tests(sources: Mapping[str, str]) -> list[str]:
    """``file: module`` for every import of a ``test_*`` module (top level or inside a function)."""
    found = []
    for file, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{file}: {n}" for n in names if n.split(".")[0].startswith("test_")]
    return found


def _test_files() -> list[str]:
    return sorted(p.name for p in TESTS.glob("test_*.py"))


def test_every_module_with_logic_has_a_test_file_of_its_name():
    assert missing_tests(package_modules(), _test_files()) == []


def test_every_test_file_names_a_module_or_is_listed_as_cross_cutting():
    assert ghost_tests(package_modules(), _test_files()) == []


def test_the_lists_are_honest():
    """An exemption is dropped once its module gets its own file; every file a list names exists."""
    modules, files = package_modules(), set(_test_files())
    for module, (covering, why) in COVERED_ELSEWHERE.items():
        assert module in modules and has_logic(modules[module]), f"{module}: no such module with logic"
        assert not files.intersection(mirror_names(module)), f"{module} has a test file of its name: drop its exemption"
        assert covering in files and why, module
    assert set(CROSS_CUTTING) <= files
    assert not {mirror_name(m) for m in modules} & set(CROSS_CUTTING), "a cross-cutting file is named for a module"


def test_no_test_file_imports_another():
    assert imports_of_tests({p.name: p.read_text() for p in sorted(TESTS.glob("*.py"))}) == []


def test_the_rules_can_fail():
    """Planted in the real walk: a module with logic and no test, a ghost test file, a test importing a test."""
    modules, files = dict(package_modules()), _test_files()
    modules["amygdala_vllm.pairs.planted"] = '"""x"""\n\ndef f(x):\n    return x + 1\n'
    modules["amygdala_vllm.pairs.planted_struct"] = "class S:\n    a: int\n\n    def get(self):\n        return S\n"
    assert missing_tests(modules, files) == ["amygdala_vllm.pairs.planted"]  # the Struct-like one has no logic
    assert missing_tests(modules, [*files, "test_pairs_planted.py"]) == []
    modules["amygdala_vllm.readout.render._planted"] = modules.pop("amygdala_vllm.pairs.planted")
    assert missing_tests(modules, files) == []  # private: test_readout_render.py may hold its tests
    assert sorted(missing_tests(modules, [f for f in files if f != "test_readout_render.py"])) == [
        "amygdala_vllm.readout.render._colour", "amygdala_vllm.readout.render._document",
        "amygdala_vllm.readout.render._html", "amygdala_vllm.readout.render._planted",
        "amygdala_vllm.readout.render._terminal", "amygdala_vllm.readout.render._view"]
    assert ghost_tests(modules, [*files, "test_pairs_no_such_module.py"]) == ["test_pairs_no_such_module.py"]
    assert ghost_tests(modules, [*files, "test_readout_render_planted.py"]) == []
    assert imports_of_tests({"test_a.py": "import os\n\ndef t():\n    from test_b import helper\n",
                         "helpers.py": "import test_c.sub\nfrom tiny_models import x\n"}) == [
        "test_a.py: test_b", "helpers.py: test_c.sub"]
