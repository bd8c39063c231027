"""Write files and folders so that a crash never leaves half of one behind.

Every output of this tool goes through here: the bytes land under a temporary
name in the same directory (same filesystem, so ``os.replace`` is atomic) and
are renamed into place only once complete and flushed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import StoreError

__all__ = ["write_bytes", "write_text", "staged_dir", "temp_path"]


def _check_parent(path: Path) -> None:
    if not path.parent.is_dir():
        raise StoreError(f"cannot write {path}: directory {path.parent} does not exist")


@contextlib.contextmanager
def temp_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` on success.

    The caller writes the file itself (e.g. ``safetensors.save_file``). On any
    exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    _check_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    with temp_path(Path(path)) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """Atomically replace ``path`` with UTF-8 ``text``."""
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_dir(final: Path, *, replace: bool) -> Iterator[Path]:
    """Build a whole directory under a temporary name, then swap it into place.

    ``replace`` allows an existing ``final`` directory to be swapped out (it is
    renamed aside first and deleted only after the new one is in place), so a
    crash at any point leaves either the old complete directory or the new one.
    """
    final = Path(final)
    _check_parent(final)
    if final.exists() and not replace:
        raise StoreError(f"{final} already exists")
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".staging", dir=final.parent))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
