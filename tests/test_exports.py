"""Exported names: each package's public face is pinned, and every module's ``__all__`` is honest.

A package's ``__all__`` is its API (the httpx rule): adding or removing a name
is a deliberate change made here too. For every module, each exported name
exists, none is listed twice, and every public class or function it defines is
exported (a helper that is not part of the API gets a leading underscore).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import amygdala_vllm

PACKAGES = {
    "amygdala_vllm": ["__version__"],
    "amygdala_vllm.cli": ["app", "main"],
    "amygdala_vllm.cluster": ["ClusterOptions"],
    "amygdala_vllm.extract": ["ExtractOptions", "ExtractSummary", "parse_layers", "run_extract"],
    "amygdala_vllm.readout": ["Readout", "TextScores"],
    "amygdala_vllm.reduce": [
        "Activations", "ClassSize", "CrossPair", "DTYPES", "LayerCrossTalk", "METHODS", "ReduceOptions",
        "ReduceResult", "ReduceSummary", "cross_talk", "manifest_path", "open_activations", "reduce",
        "select_concepts",
    ],
    "amygdala_vllm.readout.render": [
        "CLIP_Z", "ChatMessage", "Pooled", "ReadoutScores", "ReadoutView", "SCORES_FORMAT", "ScoredText",
        "build_view", "calibration_arrays", "check_concepts", "colour_strip", "decode_scores", "encode_scores",
        "legend", "parse_chat", "rank_concepts", "render_html", "resolve_layers", "score_table", "to_document",
        "to_z", "token_z_arrays", "visible_token", "z_hex", "z_rgb",
    ],
    "amygdala_vllm.validate": [
        "Projections", "VALIDATE_FORMAT", "ValidateOptions", "ValidateReport", "ValidateResult", "accuracy_at",
        "auroc", "best_index", "calibrated_threshold", "cohens_d", "compare_methods", "evaluate",
        "evaluate_projections", "load_manifest", "load_vectors", "projections_from_scores", "read_report",
        "run_validate", "write_report",
    ],
    "amygdala_vllm.vllm_ext": ["SERVE_WORKER_EXTENSION", "WORKER_EXTENSION"],
    "amygdala_vllm.vllm_ext.runners": ["RunnerView", "V1RunnerView", "V2RunnerView", "VIEWS", "runner_kind",
                                       "runner_view"],
}

#: Modules without an ``__all__`` on purpose: namespace packages and the ``python -m`` entry.
NO_ALL = {"amygdala_vllm.pairs", "amygdala_vllm.pairs.mcp", "amygdala_vllm.separation", "amygdala_vllm.serve", "amygdala_vllm.__main__"}


def _modules() -> list[str]:
    names = ["amygdala_vllm"]
    for info in pkgutil.walk_packages(amygdala_vllm.__path__, "amygdala_vllm."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_exports_are_pinned(package: str) -> None:
    mod = importlib.import_module(package)
    assert sorted(mod.__all__) == sorted(PACKAGES[package])


def test_every_module_exports_what_it_defines_and_only_what_exists() -> None:
    problems = []
    for name in _modules():
        if name in NO_ALL:
            continue
        mod = importlib.import_module(name)
        exported = getattr(mod, "__all__", None)
        if exported is None:
            if not name.startswith("amygdala_vllm.cli."):  # commands register on the app; they export nothing
                problems.append(f"{name}: no __all__")
            continue
        if len(set(exported)) != len(exported):
            problems.append(f"{name}: __all__ lists a name twice")
        problems += [f"{name}: exports missing {n!r}" for n in exported if not hasattr(mod, n)]
        if name.rsplit(".", 1)[-1].startswith("_") or name.startswith("amygdala_vllm.cli."):
            continue  # private modules and CLI commands may keep public helpers unexported
        for attr, obj in vars(mod).items():
            defined_here = getattr(obj, "__module__", None) == name
            if (defined_here and not attr.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
                    and attr not in exported):
                problems.append(f"{name}: defines public {attr!r} but does not export it")
    assert not problems, "\n".join(problems)
