"""reduce over several activations dirs: byte-identical merges and refused mismatches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from amygdala_vllm.errors import CaptureError
from amygdala_vllm.reduce import ReduceOptions, open_activations, reduce
from amygdala_vllm.reduce import stats
from synthetic import SyntheticSpec, make_run, make_synthetic, write_activations

SPEC = SyntheticSpec(emotions=("anger", "fear", "joy", "warmth"), train_per_class=100, heldout_per_class=10,
                     offset=0.5, dynamic_range=8.0)


def _outputs(path: Path) -> tuple[bytes, bytes]:
    return path.read_bytes(), path.with_suffix(".manifest.json").read_bytes()


@pytest.mark.parametrize("method", ["caa", "lda"])
@pytest.mark.parametrize(("parts", "mode", "shard_size"), [(2, "contiguous", 37), (3, "strided", 50), (3, "contiguous", 1000)])
def test_merge_equals_single_run_byte_for_byte(tmp_path: Path, method: str, parts: int, mode: str, shard_size: int) -> None:
    ds, single, data = make_run(tmp_path / "one", SPEC, shard_size=64)
    _, split, _ = make_run(tmp_path / "many", SPEC, parts=parts, mode=mode, shard_size=shard_size)
    assert len(data.ids("train")) > 2 * stats.BLOCK  # several canonical blocks
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    reduce(single, ds, a, ReduceOptions(method=method))
    reduce(split, ds, b, ReduceOptions(method=method))
    assert _outputs(a) == _outputs(b)


def test_the_merge_check_is_sensitive_to_summation_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard for the test above: on this data, summing in other chunks changes the output bytes."""
    ds, dirs, _ = make_run(tmp_path, SPEC)
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    reduce(dirs, ds, a, ReduceOptions())
    monkeypatch.setattr(stats, "BLOCK", 37)
    reduce(dirs, ds, b, ReduceOptions())
    assert _outputs(a) != _outputs(b)


def test_refuses_dirs_that_disagree(tmp_path: Path) -> None:
    ds, dirs, data = make_run(tmp_path, parts=2)
    sha = json.loads((dirs[0] / "capture.json").read_text())["dataset_sha256"]
    for field, value in [("model_fingerprint", "fp-other"), ("layers", [1, 5]), ("skip_first_tokens", 0),
                         ("dtype", "float16"), ("dataset_sha256", "0" * 64)]:
        other = tmp_path / f"other-{field}"
        fields = {"dataset_sha256": sha, field: value}
        write_activations(other, data, text_ids=data.ids()[::2], **fields)  # type: ignore[arg-type]
        with pytest.raises(CaptureError, match=f"disagree on {field}: .*{dirs[0]}.*{other}"):
            open_activations([dirs[0], other])


def test_duplicate_text_ids_are_refused(tmp_path: Path) -> None:
    ds, dirs, data = make_run(tmp_path, parts=2)
    sha = json.loads((dirs[0] / "capture.json").read_text())["dataset_sha256"]
    extra = tmp_path / "extra"
    write_activations(extra, data, dataset_sha256=sha, text_ids=[3, 4, 200])
    with pytest.raises(CaptureError, match=r"3 text id\(s\) occur in more than one shard, e.g. \[3, 4, 200\]"):
        open_activations([*dirs, extra])


def test_missing_train_texts(tmp_path: Path) -> None:
    data_ids = make_synthetic(SyntheticSpec()).ids()
    ds, dirs, data = make_run(tmp_path, text_ids=np.setdiff1d(data_ids, [5, 7]))
    out = tmp_path / "v.safetensors"
    with pytest.raises(CaptureError, match=r"2 train text\(s\) .* in no shard, e.g. ids \[5, 7\]"):
        reduce(dirs, ds, out, ReduceOptions())
    assert not out.exists()
    res = reduce(dirs, ds, out, ReduceOptions(allow_missing=True))
    assert res.summary.missing_texts == 2
    assert res.manifest.counts["anger"].positive == SyntheticSpec().train_per_class - 2


def test_refuses_a_pooling_one_dir_lacks(tmp_path: Path) -> None:
    ds, dirs, data = make_run(tmp_path)
    sha = json.loads((dirs[0] / "capture.json").read_text())["dataset_sha256"]
    write_activations(dirs[0], data, dataset_sha256=sha, pooling=["mean"])
    reduce(dirs, ds, tmp_path / "v.safetensors", ReduceOptions(pooling="mean"))
    with pytest.raises(CaptureError, match=r"holds pooling \['mean'\], not 'last'"):
        reduce(dirs, ds, tmp_path / "w.safetensors", ReduceOptions(pooling="last"))
    assert not (tmp_path / "w.safetensors").exists()


def test_a_version_1_dir_reduces_exactly_as_its_version_2_twin(tmp_path: Path) -> None:
    """capture/1 (what the code wrote before the pooling-mode registry) still reads, with the same bytes out."""
    ds, dirs, data = make_run(tmp_path, SPEC)
    sha = json.loads((dirs[0] / "capture.json").read_text())["dataset_sha256"]
    v1 = tmp_path / "v1"
    write_activations(v1, data, dataset_sha256=sha, format="amygdala-capture/1")
    assert json.loads((v1 / "capture.json").read_text())["format"] == "amygdala-capture/1"
    assert json.loads((dirs[0] / "capture.json").read_text())["format"] == "amygdala-capture/2"
    for a, b in zip(sorted(v1.glob("shard-*")), sorted(dirs[0].glob("shard-*"))):
        assert a.read_bytes() == b.read_bytes()  # the bump changed capture.json's format only
    out1, out2 = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    reduce([v1], ds, out1, ReduceOptions())
    reduce(dirs, ds, out2, ReduceOptions())
    assert _outputs(out1) == _outputs(out2)


def test_a_version_1_dir_must_list_exactly_mean_and_last(tmp_path: Path) -> None:
    _, dirs, data = make_run(tmp_path, SPEC)
    sha = json.loads((dirs[0] / "capture.json").read_text())["dataset_sha256"]
    write_activations(tmp_path / "odd", data, dataset_sha256=sha, format="amygdala-capture/1", pooling=["mean"])
    with pytest.raises(CaptureError, match="must list pooling mean, last"):
        open_activations([tmp_path / "odd"])


def test_reduce_by_an_extra_mode_reads_that_tensor(tmp_path: Path) -> None:
    """A dir captured with ``--pooling mean,last,max`` reduces by max; here max holds last's rows, so the vectors match."""
    from amygdala_vllm.vectors_file import load

    ds, dirs, data = make_run(tmp_path, SPEC)
    sha = json.loads((dirs[0] / "capture.json").read_text())["dataset_sha256"]
    write_activations(tmp_path / "mx", data, dataset_sha256=sha, more_modes={"max": data.last})
    a, b = tmp_path / "max.safetensors", tmp_path / "last.safetensors"
    reduce([tmp_path / "mx"], ds, a, ReduceOptions(pooling="max"))
    reduce([tmp_path / "mx"], ds, b, ReduceOptions(pooling="last"))
    for x, y in zip(load(a).matrices, load(b).matrices):
        np.testing.assert_array_equal(x, y)
    assert json.loads(a.with_suffix(".manifest.json").read_text())["pooling"] == "max"
    with pytest.raises(CaptureError, match=r"holds pooling \['mean', 'last'\], not 'max'"):
        reduce(dirs, ds, tmp_path / "c.safetensors", ReduceOptions(pooling="max"))
