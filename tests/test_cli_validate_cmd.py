"""`amygdala-vllm validate` through typer's CliRunner, with the engine replaced by a synthetic readout.

The real ``Readout`` is the one call the driver makes to vLLM; here
``open_vllm_readout`` is swapped for :class:`validate_fakes.FakeReadout`, so the
flags, the report dir, the exit codes and the error lines are tested in
seconds. The engine-backed end-to-end test lives with the readout mode.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amygdala_vllm.cli import app
from amygdala_vllm.formats import ReadoutManifest, encode_json, read_json
from amygdala_vllm.validate import read_report
from amygdala_vllm.usage import read_usage
from amygdala_vllm.validate import run as run_mod
from synthetic import SyntheticSpec, write_dataset
from validate_fakes import fake_for, reduced_run

runner = CliRunner()
SPEC = SyntheticSpec(seed=4)


@pytest.fixture()
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    ds, dirs, data, vec = reduced_run(tmp_path, SPEC)
    fake = fake_for(data, vec)
    monkeypatch.setattr(run_mod, "open_vllm_readout", fake.opener)
    return tmp_path, ds, dirs, data, vec, fake


def _invoke(ds: Path, vec: Path, out: Path, *extra: str):
    return runner.invoke(app, ["validate", "--vectors", str(vec), "--training-data-dir", str(ds),
                               "--output-dir", str(out), *extra])


def test_validate_writes_report_and_prints_summary(setup) -> None:
    tmp, ds, dirs, data, vec, fake = setup
    ood = tmp / "ood.jsonl"
    ood.write_text("".join(json.dumps({"text": t.text}) + "\n" for t in data.texts[:4]))
    out = tmp / "report"
    res = _invoke(ds, vec, out, "--dtype", "fp32", "--ood", str(ood), "--compare-methods",
                  "--activations", str(dirs[0]), "--batch-size", "4", "--max-model-len", "256")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["auroc.png", "crosstalk.png", "report.json", "report.md", "specificity.png",
                                                     "usage.json"]
    usage = read_usage(out / "usage.json")
    assert usage.stage == "validate" and usage.counts["texts"] > 0 and usage.peak_rss_bytes > 0
    assert "used: " in res.output
    report = read_report(out / "report.json")
    assert report.ood is not None and report.ood.texts == 4
    assert report.compare is not None and len(report.compare.concepts) == 3
    assert report.specificity is not None and report.specificity.best_layer in SPEC.layers
    assert {s.method for s in report.compare.scores} >= {"caa", "lda", "grand-mean", "mlda"}
    assert set(report.compare.winners) == {str(l) for l in SPEC.layers}
    assert report.model == "synthetic/model" and report.dtype == "fp32"
    for name in ("anger", "joy", "warmth", "best layer", "Cohen's d", "agreement", "pass", "CAA vs LDA",
                 "report.md", "specificity", "sibling", "top-1", "methods compared", "winner of the layer", "grand-mean"):
        assert name in res.output, name
    call = fake.calls[0]
    assert call["model"] == "synthetic/model" and call["dtype"] == "fp32" and call["batch_size"] == 4
    assert call["max_model_len"] == 256
    # the vectors reach the engine through the env vars serving uses
    assert call["env"] == (str(vec.resolve()), str(vec.with_suffix(".manifest.json").resolve()))


def test_max_texts_caps_the_heldout_run(setup) -> None:
    tmp, ds, _, _, vec, _ = setup
    res = _invoke(ds, vec, tmp / "r", "--max-texts", "12")
    assert res.exit_code == 0, res.output
    report = read_report(tmp / "r" / "report.json")
    assert report.heldout_texts == 12
    assert all(c.heldout_positive >= 2 and c.heldout_negative >= 2 for c in report.concepts)


def test_min_auroc_exits_1_naming_the_concept(setup) -> None:
    tmp, ds, _, data, vec, _ = setup
    # Make joy's held-out labels meaningless (swap every other polarity): its AUROC drops to ~0.5.
    flipped = []
    for i, e in enumerate(data.examples):
        if e.emotion == "joy" and e.split == "heldout" and i % 2:
            e = type(e)(e.emotion, "negative" if e.polarity == "positive" else "positive", e.text_id, e.score, e.split)
        flipped.append(e)
    data.examples = flipped
    write_dataset(ds, data)
    res = _invoke(ds, vec, tmp / "r", "--min-auroc", "0.9")
    assert res.exit_code == 1, res.output
    assert "ValidationFailed" in res.output and "joy: best AUROC" in res.output
    assert "anger:" not in res.output.split("ValidationFailed")[1]
    report = read_report(tmp / "r" / "report.json")  # the report is written before failing
    assert report.min_auroc == 0.9 and len(report.failures) == 1 and report.failures[0].startswith("joy")
    assert _invoke(ds, vec, tmp / "r2", "--min-auroc", "0.4").exit_code == 0


def test_agreement_over_the_bar_fails(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp, ds, _, data, vec, _ = setup
    monkeypatch.setattr(run_mod, "open_vllm_readout", fake_for(data, vec, agreement=3e-4).opener)
    res = _invoke(ds, vec, tmp / "r", "--dtype", "fp32")
    assert res.exit_code == 1 and "agreement: runtime and offline projections differ by 0.0003" in res.output
    # the bar scales with the activations in every dtype (agreement_tolerance, tested in test_validate_evaluate)
    big = fake_for(data, vec, agreement=5e-2).opener
    monkeypatch.setattr(run_mod, "open_vllm_readout", big)
    assert _invoke(ds, vec, tmp / "r2", "--dtype", "bf16").exit_code == 1  # far over any bf16 bar


def _one_line_error(res, pattern: str) -> None:
    assert res.exit_code == 1, res.output
    lines = [l for l in res.output.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert pattern in lines[0], lines[0]


def test_missing_vectors(setup) -> None:
    tmp, ds, _, _, _, _ = setup
    _one_line_error(_invoke(ds, tmp / "nope.safetensors", tmp / "r"), "FormatError")
    _one_line_error(_invoke(ds, tmp / "nope.bin", tmp / "r"), "must name a .safetensors file")


def test_manifest_mismatch(setup) -> None:
    tmp, ds, _, _, vec, _ = setup
    man = read_json(vec.with_suffix(".manifest.json"), ReadoutManifest)
    other = tmp / "other.manifest.json"
    other.write_bytes(encode_json(type(man)(**{**{f: getattr(man, f) for f in man.__struct_fields__},
                                               "layers": [2, 6],
                                               "calibration": {c: {"2": v["2"], "6": v["5"]}
                                                               for c, v in man.calibration.items()}})))
    res = _invoke(ds, vec, tmp / "r", "--manifest", str(other))
    _one_line_error(res, "manifest mismatch")
    assert "missing key(s) ['layer_6.vectors']" in res.output
    hidden = tmp / "hidden.manifest.json"
    hidden.write_bytes(encode_json(type(man)(**{**{f: getattr(man, f) for f in man.__struct_fields__},
                                                "hidden_size": 64})))
    _one_line_error(_invoke(ds, vec, tmp / "r", "--manifest", str(hidden)), "expected [3, 64] (concepts x hidden_size)")
    (tmp / "bad.manifest.json").write_text("{not json")
    _one_line_error(_invoke(ds, vec, tmp / "r", "--manifest", str(tmp / "bad.manifest.json")), "not valid JSON")


def test_dataset_without_heldout_texts(setup) -> None:
    tmp, ds, _, data, vec, _ = setup
    data.examples = [e for e in data.examples if e.split == "train"]
    write_dataset(ds, data)
    _one_line_error(_invoke(ds, vec, tmp / "r"), "has no held-out examples")


def test_bad_flags(setup) -> None:
    tmp, ds, _, _, vec, _ = setup
    _one_line_error(_invoke(ds, vec, tmp / "r", "--compare-methods"), "--compare-methods needs --activations")
    _one_line_error(_invoke(ds, vec, tmp / "r", "--min-auroc", "1.5"), "--min-auroc must be within [0, 1]")
    _one_line_error(_invoke(ds, vec, tmp / "r", "--dtype", "fp8"), "unknown --dtype")
    _one_line_error(_invoke(tmp / "nodir", vec, tmp / "r"), "does not exist")
    _one_line_error(_invoke(ds, vec, tmp / "r", "--ood", str(tmp / "none.txt")), "--ood file")


def test_validate_imports_no_vllm_or_torch() -> None:
    code = ("import sys; import amygdala_vllm.validate, amygdala_vllm.cli.validate_cmd; "
            "bad = [m for m in ('vllm', 'torch', 'matplotlib') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
