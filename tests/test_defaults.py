"""Default paths and the default layer choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from amygdala_vllm import defaults
from amygdala_vllm.formats import manifest_path_for


@pytest.mark.parametrize(
    "num_layers, expected",
    [(30, [7, 15, 21, 25]), (4, [1, 2, 3]), (2, [0, 1]), (1, [0]), (36, [9, 18, 25, 30]), (64, [16, 32, 44, 54])],
)
def test_auto_layers_spread_over_middle_to_late_depths(num_layers: int, expected: list[int]) -> None:
    assert defaults.auto_layers(num_layers) == expected


def test_auto_layers_are_sorted_unique_and_in_range() -> None:
    for num_layers in range(1, 130):
        layers = defaults.auto_layers(num_layers)
        assert layers == sorted(set(layers)) and 1 <= len(layers) <= 4, num_layers
        assert all(0 <= i < num_layers for i in layers), num_layers


def test_auto_layers_refuse_an_empty_decoder() -> None:
    with pytest.raises(ValueError, match="at least one layer"):
        defaults.auto_layers(0)


def test_default_paths_chain_the_stages() -> None:
    assert defaults.DATASET_DIR.parent == defaults.ACTIVATIONS_DIR.parent == defaults.REPORT_DIR.parent == Path("runs")
    assert manifest_path_for(defaults.VECTORS_FILE) == Path("runs/amygdala.manifest.json")


def test_cli_options_default_to_these_paths() -> None:
    """Every command's option defaults name the same paths (the default run chains them)."""
    import inspect

    from amygdala_vllm.cli import extract_cmd, pairs_cmd, readout_cmd, reduce_cmd, validate_cmd

    def option_defaults(fn: object) -> dict[str, object]:
        out = {}
        for name, p in inspect.signature(fn).parameters.items():
            d = p.default
            out[name] = getattr(d, "default", d)
        return out

    assert option_defaults(pairs_cmd.pairs)["output_dir"] == defaults.DATASET_DIR
    assert option_defaults(extract_cmd.extract)["training_data_dir"] == defaults.DATASET_DIR
    assert option_defaults(extract_cmd.extract)["output_dir"] == defaults.ACTIVATIONS_DIR
    red = option_defaults(reduce_cmd.reduce_command)
    assert red["activations"] == [defaults.ACTIVATIONS_DIR] and red["output"] == defaults.VECTORS_FILE
    val = option_defaults(validate_cmd.validate_command)
    assert val["vectors"] == defaults.VECTORS_FILE and val["output_dir"] == defaults.REPORT_DIR
    assert option_defaults(readout_cmd.readout_command)["vectors"] == defaults.VECTORS_FILE
