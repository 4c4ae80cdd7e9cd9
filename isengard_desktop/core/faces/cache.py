"""The face-analysis cache: one small JSON file per photo content (sha256), so a photo is
analysed once however many characters or folders hold it, and adding photos analyses only
the new ones. Written by the analysis child (atomically); read by it before analysing.

Layout: ``<cache>/faces/v<ANALYSIS_VERSION>/<detector>/<sha[:2]>/<sha>.json`` (the HOG
and CNN detectors find different boxes, so their results are kept apart). A file that cannot be
read or is of another version counts as absent (the photo is analysed again).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..fsutil import atomic_write_bytes
from .records import ANALYSIS_VERSION, PhotoFaces, RecordError

__all__ = ["FaceCache"]

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
