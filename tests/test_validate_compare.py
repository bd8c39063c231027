"""--compare-methods: CAA and LDA from the reduce library, scored offline on held-out activations."""

from __future__ import annotations

from pathlib import Path

import pytest

from amygdala_vllm.dataset import load_dataset
from amygdala_vllm.errors import CaptureError
from amygdala_vllm.validate import compare_methods, load_manifest
from synthetic import SyntheticSpec, make_run, write_activations
from validate_fakes import reduced_run

# A strong within-class nuisance axis that every plant leans on: CAA inherits it, LDA divides it out.
NUISANCE = SyntheticSpec(train_per_class=60, heldout_per_class=60, noise=0.3, nuisance=6.0,
                         nuisance_mix=1.0, hidden_size=24, seed=5)


def test_lda_beats_caa_with_a_nuisance_axis(tmp_path: Path) -> None:
    ds, dirs, _, vec = reduced_run(tmp_path, NUISANCE)
    man = load_manifest(vec.with_suffix(".manifest.json"))
    cmp = compare_methods(dirs, load_dataset(ds), man)
    assert [c.concept for c in cmp.concepts] == man.concepts
    assert cmp.heldout_texts == 3 * 2 * 60 and cmp.train_texts == 3 * 2 * 60
    for c in cmp.concepts:
        assert c.heldout_positive == c.heldout_negative == 60
        assert c.best_lda > 0.95, c
        assert c.best_lda > c.best_caa + 0.1, c
        assert [l.layer for l in c.layers] == man.layers


def test_clean_planted_data_both_methods_high(tmp_path: Path) -> None:
    ds, dirs, _, vec = reduced_run(tmp_path, SyntheticSpec(seed=2))
    cmp = compare_methods(dirs, load_dataset(ds), load_manifest(vec.with_suffix(".manifest.json")))
    assert all(c.best_caa > 0.99 and c.best_lda > 0.99 for c in cmp.concepts)


def test_activations_without_heldout_texts_are_refused(tmp_path: Path) -> None:
    ds, dirs, data = make_run(tmp_path / "all", SyntheticSpec())
    from amygdala_vllm.reduce import ReduceOptions, reduce

    vec = tmp_path / "v.safetensors"
    reduce(dirs, ds, vec, ReduceOptions())
    train_only = tmp_path / "train_acts"
    sha = load_dataset(ds).sha256
    write_activations(train_only, data, dataset_sha256=sha, text_ids=data.ids("train"))
    with pytest.raises(CaptureError, match=r"hold none of the .* held-out texts; .*extract --split all"):
        compare_methods([train_only], load_dataset(ds), load_manifest(vec.with_suffix(".manifest.json")))


def test_every_method_is_ranked_and_a_single_concept_skips_the_contrastive_ones(tmp_path: Path) -> None:
    from amygdala_vllm.reduce import ReduceOptions, reduce
    from amygdala_vllm.validate.compare import VARIANTS

    ds, dirs, _ = make_run(tmp_path / "all", SyntheticSpec(seed=3))
    dataset = load_dataset(ds)
    for names, expect in ((None, set(VARIANTS)), (["joy"], {"caa", "lda", "caa+remove-shared1"})):
        vec = tmp_path / f"v{len(names or [])}.safetensors"
        reduce(dirs, ds, vec, ReduceOptions(emotions=names))
        cmp = compare_methods(dirs, dataset, load_manifest(vec.with_suffix(".manifest.json")))
        # one concept: grand-mean and mlda are undefined; remove-shared falls back to the full vectors
        assert {s.method for s in cmp.scores} >= expect and len(cmp.scores) == len(expect) * 2
        assert set(cmp.winners) == {"2", "5"} and all(w in expect for w in cmp.winners.values())
