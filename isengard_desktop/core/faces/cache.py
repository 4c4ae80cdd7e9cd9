"""The face-analysis cache: one small JSON file per photo content (sha256), so a photo is
analysed once however many characters or folders hold it, and adding photos analyses only
the new ones. Written by the analysis child (atomically); read by it before analysing.

Layout: ``<cache>/faces/v<ANALYSIS_VERSION>/<detector>/<sha[:2]>/<sha>.json`` (the HOG
and CNN detectors find different boxes, so their results are kept apart). A file that cannot be
read or is of another version counts as absent (the photo is analysed again).

:func:`prune_cache` removes the records no photo of the library has any more (and every
record of another analysis version, which is never read again); the face analysis service
runs it once per app start, never while an analysis child runs (see its ``allowed`` gate).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from ..fsutil import atomic_write_bytes
from .records import ANALYSIS_VERSION, PhotoFaces, RecordError

__all__ = ["FaceCache", "PruneResult", "prune_cache"]

_SHA = re.compile(r"^[0-9a-f]{64}$")


class FaceCache:
    """Face results by content hash under ``root`` (the app's cache folder)."""

    def __init__(self, root: Path, detector: str = "hog") -> None:
        if detector not in ("hog", "cnn"):
            raise ValueError(f"unknown face detector {detector!r}")
        self.folder = Path(root) / "faces" / f"v{ANALYSIS_VERSION}" / detector

    def path_for(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.folder / sha256[:2] / f"{sha256}.json"

    def get(self, sha256: str) -> PhotoFaces | None:
        try:
            data = json.loads(self.path_for(sha256).read_text(encoding="utf-8"))
            found = PhotoFaces.from_json(data)
        except (OSError, ValueError, RecordError):
            return None
        if found.version != ANALYSIS_VERSION or found.sha256 != sha256:
            return None
        return found

    def put(self, result: PhotoFaces) -> None:
        path = self.path_for(result.sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        # atomic (never a torn file) but not fsynced: a cache entry lost in a power cut is
        # analysed again; fsync cost ~12 ms a photo here (2 % of the analysis)
        atomic_write_bytes(path, json.dumps(result.to_json(), separators=(",", ":")).encode(),
                           sync_file=False, sync_dir=False)


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune_cache` did: records removed, their bytes, records kept, and whether
    it stopped early because ``allowed`` said no (the rest stays for the next prune)."""

    removed: int = 0
    freed_bytes: int = 0
    kept: int = 0
    stopped: bool = False


def _records(faces: Path) -> list[tuple[Path, bool]]:
    """Every record file under ``faces`` (``<cache>/faces``) and whether its version is
    the current one."""
    out: list[tuple[Path, bool]] = []
    if not faces.is_dir():
        return out
    for version in sorted(faces.iterdir()):
        if not (version.is_dir() and re.fullmatch(r"v\d+", version.name)):
            continue
        current = version.name == f"v{ANALYSIS_VERSION}"
        out += [(p, current) for p in version.glob("*/??/*.json") if _SHA.match(p.stem)]
    return out


def prune_cache(root: Path, keep: Collection[str], lock: threading.Lock,
                allowed: Callable[[], bool]) -> PruneResult:
    """Remove the face records under ``root`` (the app's cache folder) whose sha256 is not in
    ``keep``, and every record of another analysis version; then the emptied folders.

    Each removal happens holding ``lock`` and only while ``allowed()`` (asked under the lock)
    is true: whoever starts an analysis child takes the same lock to make ``allowed()``
    false first, so no record is removed while a child may be writing one. When it turns
    false the prune stops (``stopped``). Slow on a big cache: run it off the UI thread."""
    faces = Path(root) / "faces"
    removed = freed = kept = 0
    emptied: set[Path] = set()        # folders that lost a record: maybe empty now
    for path, current in _records(faces):
        if current and path.stem in keep:
            kept += 1
            if kept % 256 == 0:       # a long walk past kept records also stops when asked
                with lock:
                    if not allowed():
                        return PruneResult(removed, freed, kept, stopped=True)
            continue
        with lock:
            if not allowed():
                return PruneResult(removed, freed, kept, stopped=True)
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
        removed += 1
        freed += size
        emptied.add(path.parent)
    # the emptied folders, deepest first, up to ``faces`` (a failed rmdir costs ~0.3 ms
    # here, so only the folders that lost a record are tried, and only when empty)
    folders = {f for p in emptied for f in (p, p.parent, p.parent.parent)}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with lock:                    # a child may be about to write into it
            if not allowed():
                return PruneResult(removed, freed, kept, stopped=True)
            try:
                with os.scandir(folder) as entries:
                    if next(entries, None) is None:
                        folder.rmdir()
            except OSError:
                pass
    return PruneResult(removed, freed, kept)
