"""File helpers: every file the app writes goes through one of these atomic writers."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from collections.abc import Callable, Iterator


SHARED_MODE = 0o666    # like any file a program creates: the umask applies (the default)
PRIVATE_MODE = 0o600   # only the user (ask for it where a file must stay private)
_TEMP_NAME_TRIES = 100
_WINDOWS = sys.platform == "win32"   # seam: tests set it to drive the Windows branches
# os.replace onto a file another program holds open (an antivirus scan, a viewer, ComfyUI
# reading a LoRA) fails on Windows with PermissionError for a moment: retry with these waits.
REPLACE_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


def make_temp_file(folder: Path, *, prefix: str, suffix: str,
                   mode: int = SHARED_MODE) -> tuple[int, str]:
    """A new, empty file ``<prefix><random><suffix>`` in ``folder``, opened for writing (the OS
    applies the umask to ``mode``). The folder (and its parents) is created only when missing:
    one system call per file in the usual case."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_NOINHERIT", 0) | getattr(os, "O_CLOEXEC", 0))
    folder = Path(folder)
    for _ in range(_TEMP_NAME_TRIES):
        tmp = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(tmp, flags, mode), str(tmp)
        except FileExistsError:
            continue
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                return os.open(tmp, flags, mode), str(tmp)
            except FileExistsError:
                continue
    raise FileExistsError(f"no free temp file name in {folder}")


def _create_temp(path: Path, mode: int) -> tuple[int, str]:
    """A new temp file beside ``path`` (``.<name>.<random>.part``) opened for writing."""
    return make_temp_file(path.parent, prefix=f".{path.name}.", suffix=".part", mode=mode)


@contextmanager
def atomic_output(path: Path, *, mode: int = SHARED_MODE, sync_dir: bool = True,
                  sync_file: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only when the block succeeds.

    This is the app's one atomic writer (the trainer runtime uses it too). The data goes to a
    temp file in the same folder; the write handle is flushed and fsynced, the temp file is
    renamed over ``path`` and the folder fsynced, so readers see the old file or the new one,
    never half. On error the temp file is removed and ``path`` is untouched. ``mode``: the
    new file's permissions before the umask: by default those of a normal file write, so a
    ComfyUI running as another user can read a generated picture or a LoRA (issue 10, 14);
    :data:`PRIVATE_MODE` keeps a file to the user.

    ``sync_dir=False`` leaves the folder's fsync to the caller (one :func:`fsync_dir` after a
    batch of files, or none for a cache whose lost entry is simply made again): the file is
    still whole or absent. ``sync_file=False`` (caches only) skips the file's fsync too:
    readers still never see a half-written file, but after a power cut the file may come back
    empty, so a cache written this way must treat an empty file as missing.
    """
    path = Path(path)
    fd, tmp = _create_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if sync_file:
                os.fsync(fh.fileno())
        replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = SHARED_MODE,
                       sync_dir: bool = True, sync_file: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path, mode=mode, sync_dir=sync_dir, sync_file=sync_file) as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_output`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: Path, dest: Path, chunk: int = 1 << 20) -> None:
    """Copy ``src`` to ``dest`` atomically (see :func:`atomic_output`)."""
    with atomic_output(dest) as out, open(src, "rb") as inp:
        while block := inp.read(chunk):
            out.write(block)


def link_or_copy(src: Path, dest: Path) -> None:
    """Make ``dest`` hold ``src``'s content: a hard link when both are on one disk (instant,
    no space), else an atomic copy with ``src``'s times. ``dest`` is replaced atomically,
    never seen half-written. The one way the app puts a file where a trainer or ComfyUI
    reads it (staged dataset media, published LoRAs)."""
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    try:
        os.link(src, tmp)
    except OSError:
        atomic_copy(src, dest)
        shutil.copystat(src, dest)
        return
    try:
        replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace(src: str | os.PathLike[str], dest: str | os.PathLike[str], *,
            windows: bool | None = None,
            sleep: Callable[[float], None] = time.sleep) -> None:
    """``os.replace(src, dest)``; on Windows a PermissionError (the target is open in another
    program for a moment: a virus scan, a viewer) is retried with growing waits (about 3 s in
    all) before it is raised. Elsewhere a PermissionError is a real one and raised at once.
    ``windows``/``sleep`` are seams for tests (None: this OS)."""
    on_windows = _WINDOWS if windows is None else windows
    delays = REPLACE_RETRY_DELAYS_S if on_windows else ()
    for delay in delays:
        try:
            os.replace(src, dest)
            return
        except PermissionError:
            sleep(delay)
    os.replace(src, dest)


def fsync_file(path: Path, *, windows: bool | None = None) -> None:
    """Flush a file that was written (and closed) elsewhere to disk by its path.

    Prefer ``os.fsync(fh.fileno())`` on the write handle before closing it; this is for files
    a library wrote by path (``torch.save``). On Windows the handle is opened for writing:
    ``FlushFileBuffers`` refuses a read-only handle (EBADF), which would fail every save.
    ``windows`` is a seam for tests (None: this OS)."""
    on_windows = _WINDOWS if windows is None else windows
    flags = (os.O_RDWR | getattr(os, "O_BINARY", 0)) if on_windows else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path, *, windows: bool | None = None) -> None:
    """Make a rename or new file in ``folder`` durable (POSIX; a no-op on Windows, which can
    neither open nor fsync a folder). ``windows`` is a seam for tests (None: this OS)."""
    on_windows = _WINDOWS if windows is None else windows
    if on_windows or os.name != "posix":
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
