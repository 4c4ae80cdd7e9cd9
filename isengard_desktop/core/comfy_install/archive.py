"""Unpack a ComfyUI release archive (zip or tar) without letting it write outside the target.

GitHub's archives hold one top folder (``ComfyUI-0.8.1/``); it is stripped, so ``main.py`` lands
at ``dest/main.py``. Refused, naming the archive and the member: absolute paths, drive letters,
``..``, links (symlinks and hard links) and device files. The archive is unpacked into
``dest.partial`` and renamed onto ``dest`` at the end, so a cut-short unpack never looks done.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

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


def _target(root: Path, rel: PurePosixPath, strip: int) -> Path | None:
    parts = rel.parts[strip:]
    return root.joinpath(*parts) if parts else None


def _unzip(archive: Path, root: Path, progress: Callable[[int, int], None] | None,
           cancelled: Callable[[], bool]) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        names = [_clean(archive, i.filename) for i in infos]
        for info in infos:
            kind = stat.S_IFMT(info.external_attr >> 16)   # 0: no Unix type recorded
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise ArchiveError(f"{archive.name}: member {info.filename!r} is a link or a "
                                   "special file; the archive is refused")
        strip = _strip(names)
        for n, (info, rel) in enumerate(zip(infos, names, strict=True)):
            if cancelled():
                raise InterruptedError("cancelled")
            target = _target(root, rel, strip)
            if target is None:
                continue
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                if (info.external_attr >> 16) & 0o111:
                    target.chmod(0o755)
            if progress is not None:
                progress(n + 1, len(infos))


def _untar(archive: Path, root: Path, progress: Callable[[int, int], None] | None,
           cancelled: Callable[[], bool]) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        names = [_clean(archive, m.name) for m in members]
        for m in members:
            if not (m.isfile() or m.isdir()):
                raise ArchiveError(f"{archive.name}: member {m.name!r} is a link or a special "
                                   "file; the archive is refused")
        strip = _strip(names)
        for n, (member, rel) in enumerate(zip(members, names, strict=True)):
            if cancelled():
                raise InterruptedError("cancelled")
            target = _target(root, rel, strip)
            if target is None:
                continue
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                if src is None:
                    continue
                with src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                if member.mode & 0o111:
                    target.chmod(0o755)
            if progress is not None:
                progress(n + 1, len(members))
