"""File helpers: every file the app writes goes through one of these atomic writers."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


@contextmanager
def atomic_output(path: Path, *, sync_dir: bool = True,
                  sync_file: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only when the block succeeds.

    The data goes to a temp file in the same folder, is fsynced, then renamed over ``path``
    (and the folder fsynced), so readers see the old file or the new one, never half. On
    error the temp file is removed and ``path`` is untouched. ``sync_dir=False`` leaves the
    folder's fsync to the caller (one :func:`fsync_dir` after a batch of files, or none for a
    cache whose lost entry is simply made again): the file is still whole or absent.
    ``sync_file=False`` (caches only) skips the file's fsync too: readers still never see a
    half-written file, but after a power cut the file may come back empty, so a cache
    written this way must treat an empty file as missing.
    """
    path = Path(path)
    fd, tmp = make_temp_file(path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if sync_file:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        fsync_dir(path.parent)


def make_temp_file(folder: Path, *, prefix: str, suffix: str) -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``folder``, creating the folder (and parents) only when it is
    missing: one system call per file instead of a mkdir and a create."""
    try:
        return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    except FileNotFoundError:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)


def atomic_write_bytes(path: Path, data: bytes, *, sync_dir: bool = True,
                       sync_file: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path, sync_dir=sync_dir, sync_file=sync_file) as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: Path, dest: Path, chunk: int = 1 << 20) -> None:
    """Copy ``src`` to ``dest`` atomically (see :func:`atomic_output`)."""
    with atomic_output(dest) as out, open(src, "rb") as inp:
        while block := inp.read(chunk):
            out.write(block)


def fsync_dir(folder: Path) -> None:
    """Make a rename or new file in ``folder`` durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
