"""atomic: a crash never leaves half a file or half a folder behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from amygdala_vllm import atomic
from amygdala_vllm.errors import StoreError


def test_write_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    p = tmp_path / "f.txt"
    atomic.write_text(p, "one")
    atomic.write_bytes(p, b"two")
    assert p.read_bytes() == b"two" and os.listdir(tmp_path) == ["f.txt"]


def test_failure_inside_temp_path_keeps_the_old_file(tmp_path: Path) -> None:
    p = tmp_path / "f.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic.temp_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_files_get_the_umask_permissions_not_mkstemps_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


def test_missing_parent_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"directory .*nope does not exist"):
        atomic.write_text(tmp_path / "nope" / "f.txt", "x")


def test_staged_dir_swaps_in_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic.staged_dir(final, replace=False) as d:
        (d / "a").write_text("1")
    assert sorted(os.listdir(final)) == ["a"]
    with pytest.raises(StoreError, match="already exists"):
        with atomic.staged_dir(final, replace=False):
            pass
    with pytest.raises(RuntimeError):
        with atomic.staged_dir(final, replace=True) as d:
            (d / "b").write_text("2")
            raise RuntimeError("crash")
    assert sorted(os.listdir(final)) == ["a"] and sorted(os.listdir(tmp_path)) == ["out"]
    with atomic.staged_dir(final, replace=True) as d:
        (d / "b").write_text("2")
    assert sorted(os.listdir(final)) == ["b"] and sorted(os.listdir(tmp_path)) == ["out"]
