"""Unpack a ComfyUI release archive (zip or tar) without letting it write outside the target.

GitHub's archives hold one top folder (``ComfyUI-0.8.1/``); it is stripped, so ``main.py`` lands
at ``dest/main.py``. Refused, naming the archive and the member: absolute paths, drive letters,
``..``, links (symlinks and hard links) and device files. The archive is unpacked into
``dest.partial`` and renamed onto ``dest`` at the end, so a cut-short unpack never looks done.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

__all__ = ["ArchiveError", "safe_extract"]


class ArchiveError(ValueError):
    """The archive cannot be unpacked safely (the message names the archive and member)."""


def _clean(archive: Path, name: str) -> PurePosixPath:
    text = name.replace("\\", "/")
    path = PurePosixPath(text)
    if (text.startswith("/") or (len(text) > 1 and text[1] == ":")
            or ".." in path.parts):
        raise ArchiveError(f"{archive.name}: member {name!r} would be written outside the "
                           "ComfyUI folder; the archive is refused (download it again from "
                           "the release page)")
    return path


def _strip(members: list[PurePosixPath]) -> int:
    """1 when every member lies under the same top folder, else 0."""
    tops = {m.parts[0] for m in members if m.parts}
    if len(tops) == 1 and any(len(m.parts) > 1 for m in members):
        return 1
    return 0


def safe_extract(archive: Path, dest: Path,
                 progress: Callable[[int, int], None] | None = None,
                 cancelled: Callable[[], bool] = lambda: False) -> Path:
    """Unpack ``archive`` into ``dest`` (replacing it); returns ``dest``.
    ``progress(members_done, members_total)``; ``cancelled()`` stops between members
    (raises :class:`InterruptedError`, ``dest`` untouched)."""
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            _unzip(archive, partial, progress, cancelled)
        elif tarfile.is_tarfile(archive):
            _untar(archive, partial, progress, cancelled)
        else:
            raise ArchiveError(f"{archive} is neither a zip nor a tar archive (a download "
                               "cut short?); delete it and install again")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(partial, dest)
    return dest


@dataclass(frozen=True)
class _Member:
    """One archive member, read the same way from a zip or a tar."""

    rel: PurePosixPath
    is_dir: bool
    executable: bool
    open: Callable[[], IO[bytes] | None]


def _write(members: list[_Member], root: Path, progress: Callable[[int, int], None] | None,
           cancelled: Callable[[], bool]) -> None:
    """Write the (already checked) members under ``root``, their common top folder stripped."""
    strip = _strip([m.rel for m in members])
    for n, member in enumerate(members):
        if cancelled():
            raise InterruptedError("cancelled")
        parts = member.rel.parts[strip:]
        if parts:
            target = root.joinpath(*parts)
            if member.is_dir:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                src = member.open()
                if src is not None:
                    with src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    if member.executable:
                        target.chmod(0o755)
        if progress is not None:
            progress(n + 1, len(members))


def _unzip(archive: Path, root: Path, progress: Callable[[int, int], None] | None,
           cancelled: Callable[[], bool]) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = []
        for info in zf.infolist():
            kind = stat.S_IFMT(info.external_attr >> 16)   # 0: no Unix type recorded
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise ArchiveError(f"{archive.name}: member {info.filename!r} is a link or a "
                                   "special file; the archive is refused")
            members.append(_Member(_clean(archive, info.filename), info.is_dir(),
                                   bool((info.external_attr >> 16) & 0o111),
                                   functools.partial(zf.open, info)))
        _write(members, root, progress, cancelled)


def _untar(archive: Path, root: Path, progress: Callable[[int, int], None] | None,
           cancelled: Callable[[], bool]) -> None:
    with tarfile.open(archive) as tf:
        members = []
        for m in tf.getmembers():
            if not (m.isfile() or m.isdir()):
                raise ArchiveError(f"{archive.name}: member {m.name!r} is a link or a special "
                                   "file; the archive is refused")
            members.append(_Member(_clean(archive, m.name), m.isdir(), bool(m.mode & 0o111),
                                   functools.partial(tf.extractfile, m)))
        _write(members, root, progress, cancelled)
