"""`amygdala-vllm reduce` through typer's CliRunner: success, summary, and every bad input."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from amygdala_vllm.cli import app
from amygdala_vllm.formats import ReadoutManifest, read_json
from synthetic import SyntheticSpec, make_run, make_synthetic, write_activations, write_dataset

runner = CliRunner()


def _invoke(ds: Path, dirs: list[Path], out: Path, *extra: str):
    args = ["reduce", "--training-data-dir", str(ds), "--output", str(out)]
    for d in dirs:
        args += ["--activations", str(d)]
    return runner.invoke(app, [*args, *extra])


def test_cli_writes_both_files_and_prints_the_summary(tmp_path: Path) -> None:
    ds, dirs, _ = make_run(tmp_path, parts=2)
    out = tmp_path / "out" / "vectors.safetensors"
    out.parent.mkdir()
    res = _invoke(ds, dirs, out, "--json-summary", str(tmp_path / "summary.json"), "--method", "lda")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["vectors.manifest.json", "vectors.safetensors",
                                                            "vectors.usage.json"]
    man = read_json(out.with_suffix(".manifest.json"), ReadoutManifest)
    assert man.method == "lda" and man.concepts == ["anger", "joy", "warmth"]
    assert "3 kept, 0 dropped" in res.output and "cross-talk" in res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [t["layer"] for t in summary["cross_talk"]] == man.layers
    assert set(summary["raw_norms"]) == set(man.concepts)


def test_cli_lists_dropped_concepts(tmp_path: Path) -> None:
    data = make_synthetic(SyntheticSpec())
    data.examples = [e for e in data.examples if not (e.emotion == "joy" and e.polarity == "positive")]
    sha = write_dataset(tmp_path / "ds", data)
    write_activations(tmp_path / "acts", data, dataset_sha256=sha)
    out = tmp_path / "v.safetensors"
    res = _invoke(tmp_path / "ds", [tmp_path / "acts"], out)
    assert res.exit_code == 0, res.output
    assert "dropped joy: no train positives" in res.output
    assert read_json(out.with_suffix(".manifest.json"), ReadoutManifest).dropped == {"joy": "no train positives"}
    res = _invoke(tmp_path / "ds", [tmp_path / "acts"], tmp_path / "w.safetensors", "--emotions", "anger,joy")
    assert res.exit_code == 1 and "requested emotion 'joy' cannot be built: no train positives" in res.output


def _nan_in_train_text(root: Path, ds: Path, dirs: list[Path]) -> list[Path]:
    data = make_synthetic(SyntheticSpec())
    data.mean[41, 1, 3] = np.nan
    sha = json.loads((dirs[0] / "capture.json").read_text())["dataset_sha256"]
    write_activations(root / "nan", data, dataset_sha256=sha, shard_size=30)
    return [root / "nan"]


def _other_dataset(root: Path, ds: Path, dirs: list[Path]) -> list[Path]:
    data = make_synthetic(SyntheticSpec(seed=1, train_per_class=41))
    sha = write_dataset(root / "ds2", data)
    write_activations(root / "acts2", data, dataset_sha256=sha)
    return [root / "acts2"]


def _fingerprint(root: Path, ds: Path, dirs: list[Path]) -> list[Path]:
    info = json.loads((dirs[1] / "capture.json").read_text())
    info["model_fingerprint"] = "fp-other"
    (dirs[1] / "capture.json").write_text(json.dumps(info))
    return dirs


def _empty_dir(root: Path, ds: Path, dirs: list[Path]) -> list[Path]:
    (root / "empty").mkdir()
    return [root / "empty"]


def _no_shards(root: Path, ds: Path, dirs: list[Path]) -> list[Path]:
    info = json.loads((dirs[0] / "capture.json").read_text())
    info["shards"] = []
    (dirs[0] / "capture.json").write_text(json.dumps(info))
    return dirs[:1]


def _missing_texts(root: Path, ds: Path, dirs: list[Path]) -> list[Path]:
    return dirs[:1]


def _duplicates(root: Path, ds: Path, dirs: list[Path]) -> list[Path]:
    return [dirs[0], dirs[0]]


BAD: list[tuple[str, Callable[[Path, Path, list[Path]], list[Path]], list[str], str]] = [
    ("missing dir", lambda r, d, a: [r / "nope"], [], r"CaptureError: activations dir .*nope does not exist"),
    ("empty dir", _empty_dir, [], r"CaptureError: activations dir .*empty has no capture.json"),
    ("no shards", _no_shards, [], r"CaptureError: activations dir .* holds no shards"),
    ("other dataset", _other_dataset, [], r"CaptureError: .*captured from dataset sha256 .*a different dataset"),
    ("nan", _nan_in_train_text, [], r"CaptureError: shard .*nan/shard-00001.safetensors: non-finite .* text id 41"),
    ("fingerprint", _fingerprint, [], r"CaptureError: activations dirs disagree on model_fingerprint: .*'fp-synthetic'.*'fp-other'"),
    ("missing texts", _missing_texts, [], r"CaptureError: \d+ train text\(s\) the dataset needs are in no shard"),
    ("duplicates", _duplicates, [], r"CaptureError: \d+ text id\(s\) occur in more than one shard"),
    ("unknown emotion", lambda r, d, a: a, ["--emotions", "anger,grief"], r"UsageError: --emotions names \['grief'\]"),
    ("bad method", lambda r, d, a: a, ["--method", "pca"], r"UsageError: unknown --method 'pca'"),
    ("bad dtype", lambda r, d, a: a, ["--dtype", "int8"], r"UsageError: unknown --dtype 'int8'"),
    ("bad pooling", lambda r, d, a: a, ["--pooling", "median"], r"UsageError: unknown --pooling 'median'"),
    ("min examples", lambda r, d, a: a, ["--min-examples", "1000"], r"UsageError: no concept has at least 1000"),
]


@pytest.mark.parametrize(("case", "make", "extra", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_1_and_no_output(tmp_path: Path, case: str, make, extra: list[str], message: str) -> None:
    ds, dirs, _ = make_run(tmp_path / "in", parts=2)
    acts = make(tmp_path / "in", ds, dirs)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = _invoke(ds, acts, out_dir / "v.safetensors", *extra)
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert re.search(message, lines[0]), lines[0]
    assert list(out_dir.iterdir()) == []


def test_output_problems(tmp_path: Path) -> None:
    ds, dirs, _ = make_run(tmp_path)
    res = _invoke(ds, dirs, tmp_path / "no" / "such" / "v.safetensors")
    assert res.exit_code == 1 and "StoreError: cannot write" in res.output and "does not exist" in res.output
    assert not (tmp_path / "no").exists()
    res = _invoke(ds, dirs, tmp_path / "v.bin")
    assert res.exit_code == 1 and "--output must name a .safetensors file" in res.output
    out = tmp_path / "v.safetensors"
    out.write_bytes(b"old")
    res = _invoke(ds, dirs, out)
    assert res.exit_code == 1 and "already exists (pass --force" in res.output
    assert out.read_bytes() == b"old" and not out.with_suffix(".manifest.json").exists()
    res = _invoke(ds, dirs, out, "--force")
    assert res.exit_code == 0 and out.read_bytes() != b"old"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_missing_texts_with_allow_missing_warns_and_proceeds(tmp_path: Path) -> None:
    ds, dirs, _ = make_run(tmp_path, parts=2, mode="strided")
    out = tmp_path / "v.safetensors"
    res = _invoke(ds, dirs[:1], out, "--allow-missing", "--min-examples", "10")
    assert res.exit_code == 0, res.output
    assert "train texts were in no shard and left out" in res.output
    assert read_json(out.with_suffix(".manifest.json"), ReadoutManifest).counts["anger"].positive == 20


def test_reduce_imports_neither_torch_nor_vllm() -> None:
    import subprocess
    import sys

    code = ("import sys, amygdala_vllm.cli, amygdala_vllm.reduce; "
            "bad = [m for m in ('torch', 'vllm') if m in sys.modules]; sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
