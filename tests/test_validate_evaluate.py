"""validate.evaluate/crosstalk/ood/report on synthetic projections: the metric works, and it can fail."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from amygdala_vllm.dataset import load_dataset
from amygdala_vllm.formats import ExampleRecord
from amygdala_vllm.pooling_modes import MODES
from amygdala_vllm.validate import evaluate, load_manifest, load_vectors, read_report, write_report
from amygdala_vllm.errors import FormatError, UsageError
from amygdala_vllm.validate.evaluate import agreement_of, agreement_tolerance
from amygdala_vllm.validate.ood import ood_report
from amygdala_vllm.validate.report import render_markdown
from amygdala_vllm.validate.run import pick_heldout
from amygdala_vllm.validate.schema import VALIDATE_FORMAT
from synthetic import SyntheticSpec, write_dataset
from validate_fakes import fake_for, reduced_run

SPEC = SyntheticSpec(train_per_class=40, heldout_per_class=60, noise=0.3, seed=3)


def _report(root: Path, ds: Path, vec: Path, data, agreement: float | None = 0.0, dtype: str = "fp32"):
    dataset = load_dataset(ds)
    man = load_manifest(vec.with_suffix(".manifest.json"))
    vectors = load_vectors(vec, man)
    ids = sorted({e.text_id for e in dataset.examples if e.split == "heldout"})
    fake = fake_for(data, vec, agreement)
    scores = fake.score_texts([dataset.texts[i].text for i in ids])
    return evaluate(dataset, man, vectors, scores, ids, dtype=dtype), man


def test_planted_concepts_score_high(tmp_path: Path) -> None:
    ds, _, data, vec = reduced_run(tmp_path, SPEC)
    report, man = _report(tmp_path, ds, vec, data)
    assert report.format == VALIDATE_FORMAT and report.heldout_texts == 3 * 2 * SPEC.heldout_per_class
    for c in report.concepts:
        assert c.status == "ok" and c.heldout_positive == c.heldout_negative == SPEC.heldout_per_class
        assert c.best_auroc is not None and c.best_auroc > 0.99
        for layer in c.layers:
            assert list(layer.pooled) == list(MODES)  # every registered mode is scored, max included
            assert layer.pooled["mean"].auroc > 0.99 and layer.pooled["last"].auroc > 0.99
            assert layer.pooled["mean"].cohens_d > 3
            assert layer.pooled["mean"].accuracy > 0.95  # the calibrated threshold transfers to held-out texts
            assert layer.pooled["last"].accuracy is None  # calibration exists for the manifest's pooling only
            assert layer.pooled["max"].accuracy is None
    assert set(report.best_layers) == set(man.concepts)
    assert report.agreement.checked and report.agreement.passed


def test_shuffled_labels_score_about_chance(tmp_path: Path) -> None:
    ds, _, data, vec = reduced_run(tmp_path, SPEC)
    # Shuffle held-out polarities within each concept: the vectors are as good as before,
    # the labels no longer mean anything, so AUROC must fall to ~0.5.
    rng = np.random.default_rng(7)
    shuffled = []
    for emo in SPEC.emotions:
        held = [e for e in data.examples if e.emotion == emo and e.split == "heldout"]
        pols = [e.polarity for e in held]
        rng.shuffle(pols)
        shuffled += [ExampleRecord(e.emotion, p, e.text_id, e.score, e.split) for e, p in zip(held, pols)]
    data.examples = [e for e in data.examples if e.split == "train"] + shuffled
    write_dataset(ds, data)
    report, _ = _report(tmp_path, ds, vec, data)
    aurocs = [l.pooled["mean"].auroc for c in report.concepts for l in c.layers]
    assert abs(float(np.mean(aurocs)) - 0.5) < 0.08
    assert max(abs(a - 0.5) for a in aurocs) < 0.2


def test_concept_without_heldout_negatives_is_na(tmp_path: Path) -> None:
    ds, _, data, vec = reduced_run(tmp_path, SPEC)
    data.examples = [e for e in data.examples
                     if not (e.emotion == "joy" and e.split == "heldout" and e.polarity == "negative")]
    write_dataset(ds, data)
    report, _ = _report(tmp_path, ds, vec, data)
    joy = next(c for c in report.concepts if c.concept == "joy")
    assert joy.status == "n/a" and joy.reason == "no held-out negatives" and joy.best_layer is None
    assert all(l.pooled["mean"].auroc is None and l.pooled["mean"].cohens_d is None for l in joy.layers)
    assert "joy" not in report.best_layers
    paths = write_report(tmp_path / "report", report)  # n/a renders, does not crash
    assert "n/a (no held-out negatives)" in paths["report.md"].read_text()


def test_report_files_written_and_parse(tmp_path: Path) -> None:
    ds, _, data, vec = reduced_run(tmp_path, SPEC)
    report, man = _report(tmp_path, ds, vec, data)
    ood = np.asarray(data.mean[:5], dtype=np.float64)
    report.ood = ood_report("ood.txt", man, np.einsum("nlh,elh->nle", ood, load_vectors(vec, man)))
    out = tmp_path / "nested" / "report"
    paths = write_report(out, report)
    assert sorted(p.name for p in out.iterdir()) == ["auroc.png", "crosstalk.png", "report.json", "report.md", "specificity.png"]
    back = read_report(paths["report.json"])
    assert back == report
    raw = json.loads(paths["report.json"].read_text())
    assert raw["format"] == "amygdala-validate/2" and raw["concepts"][0]["layers"][0]["pooled"]["mean"]["auroc"] > 0.9
    for png in ("auroc.png", "crosstalk.png"):
        assert paths[png].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["report.md"].read_text()
    assert "| anger |" in md and "Cross-talk at layer" in md and "Out-of-distribution" in md
    assert not list(out.glob(".*tmp"))  # no temporary leftovers


V1_REPORT = {
    "format": "amygdala-validate/1", "model": "m", "vectors": "v.safetensors", "manifest": "v.manifest.json",
    "dataset": "d", "dataset_sha256": "ab", "dataset_matches_manifest": True, "method": "caa", "pooling": "last",
    "skip_first_tokens": 1, "dtype": "fp32", "layers": [3], "heldout_texts": 4, "best_layers": {"joy": 3},
    "concepts": [{"concept": "joy", "status": "ok", "reason": None, "heldout_positive": 2, "heldout_negative": 2,
                  "best_layer": 3, "best_auroc": 0.75,
                  "layers": [{"layer": 3, "threshold": 0.5,
                              "mean": {"auroc": 1.0, "cohens_d": 2.5, "accuracy": None},
                              "last": {"auroc": 0.75, "cohens_d": 1.0, "accuracy": 0.5}}]}],
    "crosstalk_layer": 3, "crosstalk": [{"layer": 3, "cosine": [[1.0]], "correlation": [[1.0]]}],
    "agreement": {"checked": False, "max_abs_diff": None, "max_abs_projection": 1.0, "tolerance": 1e-6,
                  "dtype": "fp32", "passed": None},
    "ood": {"file": "o.txt", "texts": 2, "concepts": [{"concept": "joy", "layers": [
        {"layer": 3, "mean": 0.1, "std": 0.2, "quantiles": {"q05": 0.0, "q50": 0.1, "q95": 0.3}, "z_mean": -0.4,
         "fraction_positive": 0.5}]}]},
}


def test_a_version_1_report_reads_as_version_2(tmp_path: Path) -> None:
    """``report.json`` files of format 1 (fields ``mean``/``last`` per layer) still read, keyed by mode in memory."""
    path = tmp_path / "report.json"
    path.write_text(json.dumps(V1_REPORT))
    back = read_report(path)
    assert back.format == VALIDATE_FORMAT == "amygdala-validate/2"
    layer = back.concepts[0].layers[0]
    assert set(layer.pooled) == {"mean", "last"} and layer.layer == 3 and layer.threshold == 0.5
    assert layer.pooled["mean"].auroc == 1.0 and layer.pooled["last"].accuracy == 0.5
    assert back.ood is not None and back.ood.concepts[0].layers[0].fraction_positive == 0.5
    md = render_markdown(back)  # the manifest's pooling (last) first in every table
    assert "| AUROC last | AUROC mean |" in md and "| 0.75 / 1.00 |" in md
    path.write_text(json.dumps({**V1_REPORT, "format": "amygdala-validate/9"}))
    with pytest.raises(FormatError, match="amygdala-validate/9"):
        read_report(path)
    bad = json.loads(json.dumps(V1_REPORT))
    bad["concepts"][0]["layers"][0]["median"] = {"auroc": 1.0, "cohens_d": 1.0, "accuracy": None}
    path.write_text(json.dumps(bad))
    with pytest.raises(FormatError, match="median"):  # unknown fields still fail after the conversion
        read_report(path)


def test_a_non_linear_manifest_pooling_gets_no_accuracy(tmp_path: Path) -> None:
    """Calibration measured on max(rows) . v says nothing about max_t(row_t . v): accuracy and OOD z are null."""
    import msgspec

    ds, _, data, vec = reduced_run(tmp_path, SPEC)
    report, man = _report(tmp_path, ds, vec, data)
    as_max = msgspec.structs.replace(man, pooling="max")
    dataset = load_dataset(ds)
    ids = sorted({e.text_id for e in dataset.examples if e.split == "heldout"})
    scores = fake_for(data, vec, 0.0).score_texts([dataset.texts[i].text for i in ids])
    got = evaluate(dataset, as_max, load_vectors(vec, man), scores, ids, dtype="fp32")
    for c in got.concepts:
        assert all(m.accuracy is None for l in c.layers for m in l.pooled.values())
        assert c.best_auroc == max(l.pooled["max"].auroc for l in c.layers)
    got.ood = ood_report("ood.txt", as_max, np.zeros((3, len(man.layers), len(man.concepts))))
    assert all(l.z_mean is None and l.fraction_positive is None for oc in got.ood.concepts for l in oc.layers)
    md = render_markdown(got)
    assert md.count("accuracy and OOD z are n/a") == 1 and "| AUROC max | AUROC mean | AUROC last |" in md
    plain = render_markdown(report)
    assert "are n/a" not in plain and "| AUROC mean | AUROC last | AUROC max |" in plain


def test_crosstalk_matrices(tmp_path: Path) -> None:
    ds, _, data, vec = reduced_run(tmp_path, SPEC)
    report, man = _report(tmp_path, ds, vec, data)
    assert [t.layer for t in report.crosstalk] == man.layers
    t = report.crosstalk[0]
    cos = np.array(t.cosine)
    assert np.allclose(np.diag(cos), 1.0) and np.allclose(cos, cos.T)
    assert np.allclose(np.diag(np.array(t.correlation)), 1.0)
    assert report.crosstalk_layer in man.layers


def test_agreement_bars() -> None:
    u = 2.0 ** -24
    # K * u * (sqrt(H) + sqrt(T)) * S, the same in every model dtype (the rows are upcast exactly)
    assert agreement_tolerance("fp32", 1000.0, hidden_size=576, tokens=64) == pytest.approx(4 * u * 32 * 1000)
    assert agreement_tolerance("bf16", 1000.0, 576, 64) == agreement_tolerance("fp32", 1000.0, 576, 64)
    assert agreement_tolerance("fp32", 2000.0, 576, 64) == pytest.approx(2 * agreement_tolerance("fp32", 1000.0, 576, 64))
    with pytest.raises(UsageError):
        agreement_tolerance("int8", 1.0)

    @dataclasses.dataclass
    class S:
        mean: np.ndarray
        last: np.ndarray
        agreement: float | None
        agreement_scale: float | None = None
        token_ids: list[int] = dataclasses.field(default_factory=lambda: [1])

        @property
        def pooled(self) -> dict[str, np.ndarray]:  # max is not linear: never part of the fallback scale
            return {"mean": self.mean, "last": self.last, "max": self.mean * 100}

    one = np.ones((1, 1))
    ok = [S(one, one, 1e-7), S(one, -one * 3, 1e-8)]
    a = agreement_of(ok, "fp32")
    assert a.checked and a.passed and a.max_abs_diff == 1e-7 and a.max_abs_projection == 3.0
    assert a.max_activation_scale == 3.0  # no activation norm given: the largest |projection|
    assert agreement_of([S(one, one, 2e-4)], "fp32").passed is False
    none = agreement_of([S(one, one, None)], "bf16")
    assert not none.checked and none.passed is None


def test_agreement_bar_scales_with_the_activations_in_fp32() -> None:
    """The case that failed a fixed 1e-4 bar: SmolLM2 fp32 on tweets, 2.4e-4 at projections ~1,700."""
    from amygdala_vllm.readout.scorer import TextScores

    proj = np.full((4, 1), 1714.0, np.float32)

    def text(diff: float) -> TextScores:
        return TextScores(list(range(60)), ["x"] * 60, np.zeros((60, 4, 1), np.float32),
                          {"mean": proj, "last": proj, "max": proj}, diff, agreement_scale=2500.0)

    passed = agreement_of([text(2.4e-4)], "fp32", hidden_size=576)
    assert passed.passed and passed.tolerance < 2e-2, passed
    # A wrong layer or vector misses by about a projection, far over the bar.
    assert agreement_of([text(2.4e-4), text(35.0)], "fp32", hidden_size=576).passed is False


def test_pick_heldout_round_robin_keeps_every_class() -> None:
    classes = {"a": (np.arange(0, 10), np.arange(10, 20)), "b": (np.arange(20, 30), np.array([0, 1]))}
    ids = pick_heldout(classes, 8)
    assert len(ids) == 8
    assert all(any(i in set(arr.tolist()) for i in ids) for pair in classes.values() for arr in pair)
    assert pick_heldout(classes, None) == list(range(30))
