"""shards: activation shards round-trip, and a foreign or damaged shard is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from amygdala_vllm.errors import CaptureError
from amygdala_vllm.shards import Shard, file_sha256, read_shard, shard_name, write_shard


def _shard(n: int = 3, L: int = 2, H: int = 4) -> Shard:
    rng = np.random.default_rng(0)
    return Shard(np.arange(n) + 10, np.full(n, 7), rng.standard_normal((n, L, H)), rng.standard_normal((n, L, H)))


def test_round_trip_with_dtypes_and_checksum(tmp_path: Path) -> None:
    s = _shard()
    path = tmp_path / shard_name(3)
    assert path.name == "shard-00003.safetensors"
    info = write_shard(path, s)
    assert info.file == path.name and info.num_texts == 3 and info.sha256 == file_sha256(path)
    back = read_shard(path)
    assert back.text_ids.dtype == np.int64 and back.num_tokens.dtype == np.int32 and back.mean.dtype == np.float32
    for key in ("text_ids", "num_tokens", "mean", "last"):
        np.testing.assert_array_equal(getattr(back, key), getattr(s, key))
    assert back.pooled("last") is back.last and len(back) == 3
    with pytest.raises(CaptureError, match="unknown pooling 'max'"):
        back.pooled("max")


def test_an_extra_pooling_mode_round_trips_and_unknown_names_are_refused(tmp_path: Path) -> None:
    s = _shard()
    more = Shard(s.text_ids, s.num_tokens, s.mean, s.last, {"max": s.mean + 1})
    write_shard(tmp_path / "a.safetensors", s)
    write_shard(tmp_path / "b.safetensors", more)
    back = read_shard(tmp_path / "b.safetensors", ("mean", "last", "max"))
    assert back.modes == ("mean", "last", "max") and read_shard(tmp_path / "a.safetensors").modes == ("mean", "last")
    np.testing.assert_array_equal(back.pooled("max"), s.mean + 1)
    with pytest.raises(CaptureError, match=r"unexpected key\(s\) \['max'\]"):
        read_shard(tmp_path / "b.safetensors")  # a shard must hold exactly the modes its capture lists
    with pytest.raises(CaptureError, match="unknown pooling 'median'"):
        Shard(s.text_ids, s.num_tokens, s.mean, s.last, {"median": s.mean})
    with pytest.raises(CaptureError, match=r"must be \[n, L, H\] with n=3"):
        Shard(s.text_ids, s.num_tokens, s.mean, s.last, {"max": s.mean[:, :1]})


def test_inconsistent_shapes_are_refused() -> None:
    with pytest.raises(CaptureError, match="1-D of equal length"):
        Shard(np.arange(3), np.arange(2), np.zeros((3, 1, 2)), np.zeros((3, 1, 2)))
    with pytest.raises(CaptureError, match=r"must be \[n, L, H\] with n=3"):
        Shard(np.arange(3), np.arange(3), np.zeros((3, 1, 2)), np.zeros((3, 2, 2)))


def test_damaged_or_foreign_shards_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / shard_name(0)
    with pytest.raises(CaptureError, match=r"shard .*shard-00000.safetensors does not exist"):
        read_shard(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CaptureError, match="is not a readable safetensors file"):
        read_shard(path)
    save_file({"text_ids": np.arange(2), "mean": np.zeros((2, 1, 1), np.float32), "max": np.zeros(1)}, str(path))
    with pytest.raises(CaptureError, match=r"missing key\(s\) \['num_tokens', 'last'\], unexpected key\(s\) \['max'\]"):
        read_shard(path)
    save_file({"text_ids": np.arange(2), "num_tokens": np.arange(2), "mean": np.zeros((2, 1, 1), np.float32),
               "last": np.zeros((2, 2, 1), np.float32)}, str(path))
    with pytest.raises(CaptureError, match=r"shard .*shard-00000.safetensors: shard mean/last"):
        read_shard(path)
