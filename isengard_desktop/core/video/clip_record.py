"""What is stored with a clip, read and written without PyAV: the ``<clip>.json`` sidecar, the
parameters kept in container metadata (as strings the clips child reads out), and the
player's preview cache.

The GUI process uses this module; decoding and encoding (``container.py``, PyAV) run only in
the clips child (``analysis_runtime/clips.py``). Stdlib only, blocking file I/O: call it from
a worker thread.

Preview cache: ``<cache>/clip-previews/<key>/`` holds ``frame_00001.jpg`` … and ``info.json``
(``{"version": 1, "fps", "count", "width", "height", "clip", "size", "mtime_ns"}``), written
last, so a folder with ``info.json`` is complete. ``key`` is made from the clip's absolute
path, size and modification time: a clip that changes gets a new folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_text

__all__ = ["FINISH_SPEC_VERSION", "METADATA_GRAPH", "METADATA_PARAMS", "PREVIEW_FOLDER",
           "PREVIEW_VERSION", "SIDECAR_VERSION", "VIDEO_EXTENSIONS", "ClipRecord", "PreviewInfo", "VideoFileError",
           "preview_dir", "read_preview_info", "read_sidecar", "record_from_metadata",
           "sidecar_path", "write_sidecar"]

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov")
SIDECAR_VERSION = 1
FINISH_SPEC_VERSION = 1          # the clips child's ``finish --spec`` file (video service → child)
METADATA_GRAPH = "prompt"        # ComfyUI's key for the API-format graph
METADATA_PARAMS = "isengard"     # ours: the clip's parameters
PREVIEW_FOLDER = "clip-previews"
PREVIEW_VERSION = 1


class VideoFileError(OSError):
    """A clip cannot be read or written; ``str(e)`` names the file and why."""


@dataclass(frozen=True)
class ClipRecord:
    """What is stored with a clip: our parameters and the ComfyUI graph(s) that made it."""

    parameters: Mapping[str, Any]
    graph: Any            # one API-format graph, or a list of them for a keyframe sequence
    source: str           # "sidecar" | "container" | ""
    # the clip's size, frames, fps ... as the clips child probed it when it wrote the sidecar
    # (``clip_info``: width, height, frames, fps, duration_s, codec, size); None when unknown
    info: Mapping[str, Any] | None = None

    def info_for(self, clip: Path) -> Mapping[str, Any] | None:
        """(stat) ``info`` when it still describes ``clip`` (same byte size), else None."""
        if not self.info:
            return None
        try:
            return self.info if Path(clip).stat().st_size == self.info.get("size") else None
        except OSError:
            return None


def sidecar_path(clip: Path) -> Path:
    clip = Path(clip)
    return clip.with_name(clip.name + ".json")


def write_sidecar(clip: Path, parameters: Mapping[str, Any], graph: Any,
                  info: Mapping[str, Any] | None = None) -> Path:
    """``<clip>.json``; ``info`` (the clip's probe, ``clip_info``) lets the gallery list the
    clip without decoding it; the clip's byte size is added to it."""
    path = sidecar_path(clip)
    doc: dict[str, Any] = {"version": SIDECAR_VERSION, "clip": Path(clip).name,
                           "parameters": dict(parameters), "graph": graph}
    if info is not None:
        doc["clip_info"] = {k: v for k, v in info.items() if k != "metadata"} | {
            "size": Path(clip).stat().st_size}
    atomic_write_text(path, json.dumps(doc, indent=1, ensure_ascii=False))
    return path


def read_sidecar(clip: Path) -> ClipRecord | None:
    """The record in ``<clip>.json``; None when there is no sidecar. A sidecar that cannot be
    used raises :class:`VideoFileError` naming it and the field."""
    side = sidecar_path(clip)
    if not side.is_file():
        return None
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VideoFileError(f"{side.name} cannot be read: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters"), dict):
        raise VideoFileError(f"{side.name}: field 'parameters' is missing or not a mapping")
    if doc.get("version") != SIDECAR_VERSION:
        raise VideoFileError(f"{side.name}: field 'version' is {doc.get('version')!r}; "
                             f"this app reads version {SIDECAR_VERSION}")
    info = doc.get("clip_info")
    return ClipRecord(doc["parameters"], doc.get("graph"), "sidecar",
                      info if isinstance(info, dict) else None)


def record_from_metadata(clip: Path, metadata: Mapping[str, str]) -> ClipRecord:
    """The record kept in a clip's container metadata (keys lower-cased; values JSON text, the
    way ComfyUI's ``SaveVideo`` and :func:`~.container.write_clip` store them)."""
    params: Any = {}
    graph: Any = None
    try:
        params = json.loads(metadata.get(METADATA_PARAMS, "{}"))
        graph = json.loads(metadata[METADATA_GRAPH]) if METADATA_GRAPH in metadata else None
    except json.JSONDecodeError as exc:
        raise VideoFileError(f"{Path(clip).name}: its metadata is not JSON: {exc}") from None
    return ClipRecord(params if isinstance(params, dict) else {}, graph,
                      "container" if params or graph else "")


@dataclass(frozen=True)
class PreviewInfo:
    """A complete preview folder of one clip (frames scaled to at most 640 px, as JPEG)."""

    folder: Path
    fps: float
    count: int
    width: int
    height: int

    def frame_paths(self) -> list[Path]:
        return [self.folder / f"frame_{i:05d}.jpg" for i in range(1, self.count + 1)]


def preview_dir(cache: Path, clip: Path) -> Path:
    """The preview folder of ``clip`` in its current state (stat only; raises OSError when the
    clip is gone)."""
    clip = Path(clip).absolute()
    st = clip.stat()
    key = hashlib.sha256(f"{clip}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]
    return Path(cache) / PREVIEW_FOLDER / key


def read_preview_info(folder: Path) -> PreviewInfo | None:
    """The preview in ``folder`` when it is complete and readable, else None."""
    try:
        doc = json.loads((Path(folder) / "info.json").read_text(encoding="utf-8"))
        if doc.get("version") != PREVIEW_VERSION:
            return None
        return PreviewInfo(Path(folder), float(doc["fps"]), int(doc["count"]),
                           int(doc["width"]), int(doc["height"]))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None
