"""usage.json: where it goes, what it holds, and that a strict reader reads it back."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from amygdala_vllm.usage import USAGE_FORMAT, Meter, read_usage, usage_line, usage_path_for, write_usage


def test_usage_is_written_beside_the_output_and_read_back(tmp_path: Path) -> None:
    out_dir = tmp_path / "dataset"
    out_dir.mkdir()
    vectors = tmp_path / "amygdala.safetensors"
    assert usage_path_for(out_dir) == out_dir / "usage.json"
    assert usage_path_for(vectors) == tmp_path / "amygdala.usage.json"
    usage = Meter("pairs").finish({"texts": 10})
    assert usage.format == USAGE_FORMAT and usage.stage == "pairs" and usage.counts == {"texts": 10}
    assert usage.peak_rss_bytes > 10 << 20 and usage.wall_s >= 0 and set(usage.per_second) <= {"texts"}  # bytes, not KiB
    path = write_usage(out_dir, usage)
    assert read_usage(path) == usage
    assert usage_line(usage).startswith("used: ") and "peak RSS" in usage_line(usage)
    path.write_bytes(path.read_bytes().replace(b'"stage"', b'"stage": "x", "extra"'))
    with pytest.raises(msgspec.ValidationError):
        read_usage(path)
