"""Reconcile a character folder with the database after a crash (issue 11, item 3).

An import renames each photo into the character's folder as soon as it is checked and
records the rows in batches as the files land (:func:`..importer.import_files`'s
``on_stored``); a kill -9 leaves at most the current batch's photos on disk with no row (the
trainers read the job's list from the database, so those are never trained on) and hidden
``.part`` temp files in the folder and the thumbnail cache. At start the library runs :func:`reconcile_folder` on each
character folder: photos it can use are adopted (rows made from the file), the rest are
reported as unusable (the library moves them to the trash), and stale temp files are removed.
Only files older than the app's start (``older_than``) are touched: an import that is running
now is never disturbed. Qt-free; runs on the database writer thread.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from isengard_desktop.core.dataset.captions import caption_problem, read_sidecar
from isengard_desktop.core.dataset.decode import SUPPORTED_EXTS, ImageProblem, open_image
from isengard_desktop.core.db.records import NewImage

TEMP_SUFFIX = ".part"            # fsutil's and the importer's temp files: ".<name>.<random>.part"
RECOVERED_SOURCE = "recovered"   # NewImage.source of an adopted photo (its origin is unknown)

__all__ = ["RECOVERED_SOURCE", "FolderReconciliation", "reconcile_folder",
           "remove_stale_temp_files"]


@dataclass(kw_only=True)
class FolderReconciliation:
    """What :func:`reconcile_folder` found: rows to add, files nobody can use (not images,
    or a second copy of a photo the character has), and the temp files it removed."""

    adopt: list[NewImage] = field(default_factory=list)
    unusable: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)


def _older(path: Path, older_than: float) -> bool:
    try:
        return path.stat().st_mtime < older_than
    except OSError:
        return False


def remove_stale_temp_files(folder: Path, *, older_than: float,
                            recursive: bool = False) -> list[Path]:
    """Delete hidden ``.<name>….part`` files in ``folder`` (and below, with ``recursive``)
    last written before ``older_than`` (a Unix time); returns the ones removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(f".*{TEMP_SUFFIX}") if recursive else folder.glob(f".*{TEMP_SUFFIX}")
    removed = []
    for path in sorted(found):
        if path.is_file() and not path.is_symlink() and _older(path, older_than):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed


def _describe(path: Path) -> NewImage:
    """A row for a stored photo (stored photos are upright: the header's size is theirs)."""
    with open(path, "rb") as fh:
        im = open_image(fh, ext=path.suffix)
        width, height = im.size
        fh.seek(0)
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    try:
        caption = read_sidecar(path) or ""
    except (OSError, ValueError):
        caption = ""
    if caption_problem(caption) is not None:
        caption = ""
    return NewImage(path=path, sha256=sha, width=width, height=height, caption=caption,
                    source=RECOVERED_SOURCE)


def reconcile_folder(folder: Path, *, known_paths: Collection[Path],
                     known_sha256: Collection[str], older_than: float) -> FolderReconciliation:
    """Compare ``folder`` (one character's photos) with its rows: ``known_paths`` are the
    recorded photos' paths, ``known_sha256`` their contents. Removes stale temp files; photos
    with no row become rows to add, or unusable files. Nothing written after ``older_than``
    is looked at."""
    folder = Path(folder)
    result = FolderReconciliation()
    if not folder.is_dir():
        return result
    result.removed = remove_stale_temp_files(folder, older_than=older_than)
    known = {os.path.normcase(os.path.abspath(p)) for p in known_paths}
    shas = set(known_sha256)
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if (path.name.startswith(".") or path.suffix.lower() not in SUPPORTED_EXTS
                or not path.is_file() or not _older(path, older_than)
                or os.path.normcase(os.path.abspath(path)) in known):
            continue
        try:
            row = _describe(path)
        except (ImageProblem, OSError):
            result.unusable.append(path)
            continue
        if row.sha256 in shas:
            result.unusable.append(path)
            continue
        shas.add(row.sha256)
        result.adopt.append(row)
    return result
