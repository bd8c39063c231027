"""The package's import rules, read from the source with ``ast`` (no import runs).

Why these rules: only ``vllm_ext/`` may import vLLM, so a vLLM upgrade is a
change there and ``pairs``/``reduce``/``--help`` run on machines without it;
nothing imports the CLI, so the library never depends on typer's flag
parsing; modules import one way (no cycles), so each can be read, tested
and replaced on its own; and ``vllm_ext/`` (the engine layer) imports no stage
above it (``serve/``), so the engine layer is read without the stages. Lazy imports inside functions count too: they are
still dependencies.

The layer rule (issue 23: "formats at the bottom; no import runs back up"):
every top-level module is a stage, an engine/scale-out layer or a shared bottom
module (:data:`STAGES`, :data:`LAYERS`, :data:`BOTTOM`); a bottom module imports
only bottom modules (no stage, no ``vllm_ext``, no ``cluster``), so the formats,
the vectors file and the calibration rule are read and tested alone; the
layers import no stage (``cluster/`` is generic Ray machinery: the actor
classes live with the stage they run, ``extract/ray_shards.py`` and
``readout/ray_readout.py``). Each pipeline stage is one package, so the
layout shows the pipeline.
"""

from __future__ import annotations

import ast
from pathlib import Path

import amygdala_vllm

PACKAGE = Path(amygdala_vllm.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)  # "from . import x" names a module
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps = {d for d in _imports(path) if d in files and d != name}
        graph[name] = deps
    return graph


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_only_vllm_ext_imports_vllm():
    offenders = [str(p.relative_to(PACKAGE)) for p in _sources()
                 if "vllm_ext" not in p.relative_to(PACKAGE).parts
                 and any(m == "vllm" or m.startswith("vllm.") for m in _imports(p))]
    assert offenders == []


def test_nothing_imports_the_cli():
    offenders = [str(p.relative_to(PACKAGE)) for p in _sources()
                 if p.relative_to(PACKAGE).parts[0] not in ("cli", "__main__.py")
                 and any(m == "amygdala_vllm.cli" or m.startswith("amygdala_vllm.cli.") for m in _imports(p))]
    assert offenders == []


#: Packages under ``amygdala_vllm`` that sit above ``vllm_ext/``: they may import it, never the reverse.
STAGES_ABOVE_VLLM_EXT = ("serve",)


def _back_up(graph: dict[str, set[str]], layer: str, above: tuple[str, ...]) -> list[str]:
    """Imports from ``amygdala_vllm.<layer>`` into any ``amygdala_vllm.<above>`` package: the arrows that run back up."""
    low, high = f"amygdala_vllm.{layer}", tuple(f"amygdala_vllm.{p}" for p in above)
    return sorted(f"{m} -> {d}" for m, deps in graph.items() if m == low or m.startswith(low + ".")
                  for d in deps if any(d == h or d.startswith(h + ".") for h in high))


def test_vllm_ext_imports_no_stage_above_it():
    assert _back_up(_graph(), "vllm_ext", STAGES_ABOVE_VLLM_EXT) == []


#: The pipeline's stages, one package each (and the CLI over them).
STAGES = ("pairs", "extract", "reduce", "validate", "readout", "serve", "cli", "__main__")
#: The engine layer and the scale-out layer under the stages.
LAYERS = ("vllm_ext", "cluster")
#: Shared modules at the bottom: formats, their readers and the rules every stage applies the same way.
BOTTOM = ("atomic", "calibration", "dataset", "defaults", "dtype_choice", "engine_settings", "errors", "formats",
          "model_config", "models", "pooling_modes", "separation", "shards", "text_file", "usage", "vectors_file")


def _top(module: str) -> str:
    """``amygdala_vllm.a.b`` -> ``a`` (the package's own ``__init__`` is ``""``)."""
    return module.split(".")[1] if "." in module else ""


def _leaving(graph: dict[str, set[str]], tops: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    """Imports from modules under ``tops`` into any top-level module or package not in ``tops + allowed``.

    The package itself (``from . import atomic`` also names ``amygdala_vllm``, whose ``__init__`` holds only
    the version) is allowed everywhere.
    """
    return sorted(f"{m} -> {d}" for m, deps in graph.items() if _top(m) in tops
                  for d in deps if _top(d) not in tops + allowed + ("",))


def test_every_top_level_module_has_a_layer():
    """A new top-level module must be placed (stage, layer or bottom), so the rules below see it."""
    tops = {_top(m) for m in _graph()} - {""}
    placed = set(STAGES + LAYERS + BOTTOM)
    assert sorted(tops - placed) == [] and sorted(placed - tops) == []
    assert len(placed) == len(STAGES) + len(LAYERS) + len(BOTTOM)  # no module in two places


def test_each_stage_is_one_package():
    """The layout shows the pipeline: every stage (and each layer) is a package, not a loose module."""
    loose = [name for name in STAGES + LAYERS if name not in ("__main__",) and not (PACKAGE / name).is_dir()]
    assert loose == []


def test_bottom_modules_import_only_the_bottom():
    """Formats at the bottom: no import from a shared module into a stage, ``vllm_ext`` or ``cluster``."""
    assert _leaving(_graph(), BOTTOM, ()) == []


def test_layers_import_no_stage():
    """``vllm_ext`` and ``cluster`` sit under every stage (``vllm_ext`` under ``cluster`` too)."""
    graph = _graph()
    assert _leaving(graph, ("vllm_ext",), BOTTOM) == []
    assert _leaving(graph, ("cluster",), BOTTOM + ("vllm_ext",)) == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge's cycle found by a depth-first walk (empty: the graph runs one way)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return cycles


def test_modules_import_one_way():
    """No import cycle between modules (a package's ``__init__`` importing its own modules is not one)."""
    graph = _graph()
    # An __init__ importing its own submodules is how a package exports; drop those edges.
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    assert _cycles(edges) == []


def _stage_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph folded to stages: ``validate -> readout`` when any validate module imports readout."""
    edges: dict[str, set[str]] = {}
    for m, deps in graph.items():
        for d in deps:
            a, b = _top(m), _top(d)
            if a != b and a in STAGES and b in STAGES:
                edges.setdefault(a, set()).add(b)
    return edges


def test_stages_import_one_another_one_way():
    """No two stages lean on each other (a measure both need sits at the bottom: ``separation/``)."""
    assert _cycles(_stage_edges(_graph())) == []


def test_the_rules_see_what_they_check():
    """The parser finds a lazy vLLM import and a relative import (else the rules above could never fail)."""
    probe = PACKAGE / "vllm_ext" / "engine.py"
    found = _imports(probe)
    assert "vllm" in found and "amygdala_vllm.pooling_modes" in found
    assert "amygdala_vllm.vllm_ext.probes" in found  # "from . import probes"
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    graph = _graph()
    assert "amygdala_vllm.cli.extract_cmd" in graph and "amygdala_vllm.extract.run" in graph["amygdala_vllm.cli.extract_cmd"]
    # The layer rule sees a back-arrow when one exists (serve/ -> vllm_ext/ is real, so the reverse check can fire).
    assert "amygdala_vllm.serve.endpoint -> amygdala_vllm.vllm_ext.rpc" in _back_up(graph, "serve", ("vllm_ext",))
    planted = {**graph, "amygdala_vllm.vllm_ext.rpc": {"amygdala_vllm.serve.options"}}
    assert _back_up(planted, "vllm_ext", STAGES_ABOVE_VLLM_EXT) == [
        "amygdala_vllm.vllm_ext.rpc -> amygdala_vllm.serve.options"]
    # The layer rule fires on a planted arrow out of the bottom, out of a layer, and on an unplaced module.
    planted = {**graph, "amygdala_vllm.formats": graph["amygdala_vllm.formats"] | {"amygdala_vllm.readout.render._view"},
               "amygdala_vllm.calibration": graph["amygdala_vllm.calibration"] | {"amygdala_vllm.vllm_ext.rpc"},
               "amygdala_vllm.cluster.pool": graph["amygdala_vllm.cluster.pool"] | {"amygdala_vllm.validate.run"}}
    assert _leaving(planted, BOTTOM, ()) == ["amygdala_vllm.calibration -> amygdala_vllm.vllm_ext.rpc",
                                             "amygdala_vllm.formats -> amygdala_vllm.readout.render._view"]
    assert _leaving(planted, ("cluster",), BOTTOM + ("vllm_ext",)) == [
        "amygdala_vllm.cluster.pool -> amygdala_vllm.validate.run"]
    assert "amygdala_vllm.formats" in graph["amygdala_vllm.calibration"]  # bottom -> bottom is seen, and allowed
    # A stage-level back-arrow is seen (validate -> reduce is real; reduce -> validate would close a cycle).
    assert "reduce" in _stage_edges(graph)["validate"]
    planted = {**graph, "amygdala_vllm.reduce.auto": graph["amygdala_vllm.reduce.auto"] | {"amygdala_vllm.validate.run"}}
    assert _cycles(_stage_edges(planted)) != []
