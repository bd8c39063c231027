"""``reduce --method auto``: chosen by cross-validation on the train split only, recorded in manifest format 2.

Synthetic activations where one method is clearly best: a strong within-class
nuisance axis that each emotion leans on (whitening removes it: LDA/mlda),
isotropic noise (nothing to whiten: CAA, simplest on a tie), a valence axis
every emotion shares (grand-mean family). Held-out texts are planted so that,
if read, they would flip the choice; the output must not move.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest
from typer.testing import CliRunner

from amygdala_vllm.cli import app
from amygdala_vllm.dataset import load_dataset
from amygdala_vllm.formats import READOUT_FORMAT, READOUT_FORMAT_V1, ReadoutManifest, encode_json
from amygdala_vllm.reduce import ReduceOptions, reduce
from amygdala_vllm.reduce.auto import assign_folds
from amygdala_vllm.validate.compare import compare_methods
from amygdala_vllm.vectors_file import load, read_manifest, vector_kind
from synthetic import SyntheticSpec, make_run, make_synthetic, write_activations, write_dataset
from synthetic_shared import SharedSpec, make_shared

#: Correlated noise: every emotion's direction leans on one axis along which texts vary 3x the signal.
CORRELATED = SyntheticSpec(nuisance=3.0, nuisance_mix=0.5)


def _auto(root: Path, spec: SyntheticSpec, **opts):
    ds, dirs, data = make_run(root, spec)
    res = reduce(dirs, ds, root / "v.safetensors", ReduceOptions(**opts))
    return res, ds, dirs, data


def test_correlated_noise_picks_a_whitened_direction_and_isotropic_noise_caa(tmp_path: Path) -> None:
    res, *_ = _auto(tmp_path / "corr", CORRELATED)
    man = res.manifest
    assert man.format == READOUT_FORMAT and man.method == "auto" and man.auto is not None
    for layer in man.layers:
        choice = man.auto.layers[str(layer)]
        cv = {s.method: s for s in choice.cv}
        assert choice.method in ("lda", "mlda"), choice
        assert cv[choice.method].merit > cv["caa"].merit + 0.1  # clearly best, on train folds alone
        assert all(vector_kind(man, c, layer) == "whitened" for c in man.concepts)
    res, *_ = _auto(tmp_path / "iso", SyntheticSpec())
    man = res.manifest
    assert {c.method for c in man.auto.layers.values()} == {"caa"}  # everything separates: the tie goes to CAA
    assert all(man.vector_kind[c][str(l)] == "mean-difference" for c in man.concepts for l in man.layers)


def test_a_shared_valence_axis_picks_a_method_that_removes_it(tmp_path: Path) -> None:
    data, _ = make_shared(SharedSpec(emotions=6, train_per_class=30, hidden_size=32))
    ds = tmp_path / "dataset"
    sha = write_dataset(ds, data)
    write_activations(tmp_path / "acts", data, dataset_sha256=sha, shard_size=500)
    man = reduce([tmp_path / "acts"], ds, tmp_path / "v.safetensors", ReduceOptions()).manifest
    for choice in man.auto.layers.values():
        cv = {s.method: s for s in choice.cv}
        assert choice.method != "caa" and cv["caa"].sibling_auroc < 0.8 < cv[choice.method].sibling_auroc


def _planted(root: Path, flip: bool) -> tuple[Path, Path]:
    """CORRELATED data; with ``flip`` the held-out texts differ by the nuisance axis alone (CAA reads it, LDA not)."""
    data = make_synthetic(CORRELATED)
    if flip:
        rng = np.random.default_rng(7)
        for ex in data.examples:
            if ex.split == "heldout":
                sign = 1.0 if ex.polarity == "positive" else -1.0
                data.mean[ex.text_id] += sign * 3.0 * data.axis + 0.05 * rng.normal(size=data.axis.shape)
                ex.polarity = "negative" if ex.polarity == "positive" else "positive"  # and the labels swapped
                ex.score = 9.0 if ex.polarity == "positive" else None
    ds = root / "dataset"
    sha = write_dataset(ds, data)
    write_activations(root / "acts", data, dataset_sha256=sha, shard_size=500)
    return ds, root / "acts"


def test_auto_never_reads_heldout_texts(tmp_path: Path) -> None:
    """Held-out activations and labels planted so that a held-out ranking picks another method: same output."""
    outs = {}
    for flip in (False, True):
        ds, acts = _planted(tmp_path / str(flip), flip)
        out = tmp_path / f"{flip}.safetensors"
        res = reduce([acts], ds, out, ReduceOptions())
        outs[flip] = (out.read_bytes(), res.manifest)
        if flip:  # the planted held-out set would flip the choice if it were read
            held = compare_methods([acts], load_dataset(ds), res.manifest)
            assert set(held.winners.values()) & {"lda", "mlda"} == set(), held.winners
    (a, man_a), (b, man_b) = outs[False], outs[True]
    assert a == b  # the vectors, byte for byte
    assert man_a.auto == man_b.auto and man_a.calibration == man_b.calibration
    assert {c.method for c in man_a.auto.layers.values()} <= {"lda", "mlda"}


#: ``reduce --method caa`` of ``make_run(CORRELATED)``, computed before ``auto`` existed (main at a69464a):
#: sha256 of the vectors file and of its manifest. The calibration goes through BLAS, whose kernel
#: (and so the last bits) depends on the CPU: OpenBLAS picks Haswell kernels on AVX2 machines and
#: SkylakeX ones on AVX-512 machines. So the reduction runs in a child pinned to the Haswell kernels,
#: which every machine of this kind can run (measured: Prescott or SandyBridge kernels change the hash).
GOLDEN_CAA = ("e65b9f95c29d0475d2b5acb1c82e77e6b4c0ddf952a2f0c6b6f9885526e048a7",
              "e5bb9fb85c01ad76b9cfefad9216e549ce893efbe017bbda59e3664cbdd25729")

_CAA_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from amygdala_vllm.reduce import ReduceOptions, reduce
from synthetic import SyntheticSpec, make_run
root = Path(sys.argv[1])
ds, dirs, _ = make_run(root, SyntheticSpec(nuisance=3.0, nuisance_mix=0.5))
reduce(dirs, ds, root / "caa.safetensors", ReduceOptions(method="caa"))
"""


def test_method_caa_is_byte_identical_to_the_caa_before_auto(tmp_path: Path) -> None:
    assert CORRELATED == SyntheticSpec(nuisance=3.0, nuisance_mix=0.5)  # the child's spec
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", _CAA_CHILD, str(tmp_path), str(Path(__file__).parent)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = tmp_path / "caa.safetensors"
    got = (hashlib.sha256(out.read_bytes()).hexdigest(),
           hashlib.sha256(out.with_suffix(".manifest.json").read_bytes()).hexdigest())
    assert got == GOLDEN_CAA
    man = read_manifest(out.with_suffix(".manifest.json"))
    assert man.format == READOUT_FORMAT_V1 and man.auto is None and man.vector_kind == {}
    assert vector_kind(man, "joy", 2) == "mean-difference"  # version 1: the method says it


def test_the_manifest_round_trips_the_choice_per_layer(tmp_path: Path) -> None:
    res, *_ = _auto(tmp_path, CORRELATED, folds=3, seed=4)
    path = tmp_path / "v.manifest.json"
    man = read_manifest(path)
    assert man == res.manifest and man.auto == res.summary.auto
    assert man.auto.folds == 3 and man.auto.seed == 4 and "sibling" in man.auto.rule
    assert msgspec.json.decode(encode_json(man), type=ReadoutManifest) == man
    assert path.read_bytes() == encode_json(man)
    loaded = load(tmp_path / "v.safetensors")
    assert loaded.manifest.auto.layers == man.auto.layers
    for layer, choice in man.auto.layers.items():
        assert [s.method for s in choice.cv][0] == "caa" and choice.method in {s.method for s in choice.cv}


def test_folds_are_seeded_stratified_and_deterministic() -> None:
    members = [(np.arange(0, 10), np.arange(10, 20)), (np.arange(20, 26), np.arange(0, 5))]
    ids, fold = assign_folds(members, 5, 0)
    again = assign_folds(members, 5, 0)[1]
    assert np.array_equal(fold, again) and not np.array_equal(fold, assign_folds(members, 5, 1)[1])
    for pos, neg in members:
        for cls in (pos, neg):
            counts = np.bincount(fold[np.searchsorted(ids, cls)], minlength=5)
            assert counts.max() - counts.min() <= 1


def test_too_few_train_texts_for_the_folds_fall_back_to_caa_and_say_so_once(tmp_path: Path, caplog) -> None:
    ds, dirs, _ = make_run(tmp_path, CORRELATED)
    caa = reduce(dirs, ds, tmp_path / "caa.safetensors", ReduceOptions(method="caa"))
    with caplog.at_level(logging.WARNING, logger="amygdala_vllm.reduce.auto"):
        res = reduce(dirs, ds, tmp_path / "auto.safetensors", ReduceOptions(folds=41))  # 40 train per class
    lines = [r for r in caplog.records if "cannot be cross-validated" in r.getMessage()]
    assert len(lines) == 1 and "anger, joy, warmth" in lines[0].getMessage()
    man = res.manifest
    assert set(man.auto.fallback) == set(man.concepts) and {c.method for c in man.auto.layers.values()} == {"caa"}
    np.testing.assert_array_equal(res.vectors, caa.vectors)


def test_cli_defaults_to_auto_prints_the_choice_and_refuses_an_unknown_method(tmp_path: Path) -> None:
    ds, dirs, _ = make_run(tmp_path, CORRELATED)
    base = ["reduce", "--training-data-dir", str(ds), "--activations", str(dirs[0])]
    res = CliRunner().invoke(app, [*base, "--output", str(tmp_path / "v.safetensors")])
    assert res.exit_code == 0, res.output
    assert "--method auto" in res.output and "lda" in res.output
    res = CliRunner().invoke(app, [*base, "--output", str(tmp_path / "w.safetensors"), "--method", "pca"])
    assert res.exit_code == 1 and not (tmp_path / "w.safetensors").exists()
    line = res.output.strip()
    assert line == "UsageError: unknown --method 'pca'; choose one of auto, caa, lda, grand-mean, mlda"


def test_validate_compares_the_choice_with_held_out_figures_and_warns_on_a_large_gap(tmp_path: Path) -> None:
    """validate/auto_check.py on the planted data: held-out texts that disagree with the train folds warn."""
    import io

    from rich.console import Console

    from amygdala_vllm.cli.specificity_view import print_auto_choice
    from amygdala_vllm.reduce import open_activations
    from amygdala_vllm.reduce.variants import project
    from amygdala_vllm.validate.auto_check import GAP_WARN, auto_check
    from amygdala_vllm.validate.evaluate import heldout_classes
    from amygdala_vllm.separation.specificity import specificity
    from amygdala_vllm.validate.specificity_report import auto_markdown

    rows = {}
    for flip in (False, True):
        ds, acts_dir = _planted(tmp_path / str(flip), flip)
        reduce([acts_dir], ds, tmp_path / f"{flip}.safetensors", ReduceOptions())
        vec = load(tmp_path / f"{flip}.safetensors")
        man, v = vec.manifest, vec.stacked()
        held = heldout_classes(load_dataset(ds), man.concepts)
        ids = np.unique(np.concatenate([a for p in held.values() for a in p]))
        acts = open_activations([acts_dir], dataset_sha256=load_dataset(ds).sha256)
        proj = project(acts, ids, man.pooling, {"v": v})["v"]
        acts.close()
        rows[flip] = auto_check(man, specificity(man.concepts, man.layers, v, proj, ids, held))
    assert [r.layer for r in rows[False]] == [2, 5] and not any(r.warning for r in rows[False])
    assert all(r.warning and r.gap > GAP_WARN for r in rows[True])
    r = rows[True][0]
    assert r.kind == "whitened" and r.cv_merit == pytest.approx(r.heldout_merit + r.gap)
    md = "\n".join(auto_markdown(rows[True]))
    assert "| 2 | " in md and "(!)" in md and "warning: layer 2" in md
    out = io.StringIO()
    print_auto_choice(Console(file=out, width=160), rows[True])
    assert "warning:" in out.getvalue() and "cross-validated" in out.getvalue()
    fixed = msgspec.structs.replace(read_manifest(tmp_path / "False.manifest.json"), auto=None)
    assert auto_check(fixed, None) == []  # a fixed method has nothing to compare
