"""Video files in the clips child (``python -m isengard_desktop.analysis_runtime clips <op>``):
probe, read the stored record, finish a Video tab job, export frames as PNG, and make the
player's preview frames. The only code that imports PyAV (through ``core/video/container.py``)
runs here, in the trainer runtime's Python: PyAV's FFmpeg carries GPL libx264/libx265, which
the GUI bundle must not ship.

Each op writes its events through the ``Channel`` of ``__main__`` (one JSON object per line,
version 1) and returns the exit status; a clip that cannot be read raises
:class:`~..core.video.clip_record.VideoFileError` (its text names the file), which ``__main__``
reports as ``{"event":"error","kind":"video","message":...}``.

Finish spec (``--spec FILE``, JSON, written by ``services/video/service.py``)::

    {"version": 1, "segments": ["<downloaded clip>", ...], "dest": "<outputs/video/x.mp4>",
     "fps": 16.0, "parameters": {...}, "graph": <graph or list of graphs>, "save_frames": false}

One segment in the destination's container: its streams are copied with our metadata added
(no re-encoding). Several segments (a keyframe sequence) or another container: decoded, joined
at their shared frames (``core/video/keyframes.py`` ``join_frames``) and encoded again. Then
the sidecar (with the clip's probe as ``clip_info``, so the gallery lists it without a child),
and the frames as PNG when asked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..core.video import container
from ..core.video.clip_record import FINISH_SPEC_VERSION, VideoFileError
from . import reason
from ..core.video.keyframes import join_frames

__all__ = ["clip_info_json", "export_frames", "finish", "preview",
           "probe", "record", "read_finish_spec"]

Emit = Callable[..., None]


def clip_info_json(info: container.ClipInfo) -> dict[str, Any]:
    return {"width": info.width, "height": info.height, "frames": info.frames, "fps": info.fps,
            "duration_s": info.duration_s, "codec": info.codec, "metadata": dict(info.metadata)}


def probe(clips: list[Path], emit: Emit) -> int:
    """One ``clip`` (or ``clip_error``) event per clip, then ``done``; exit 0."""
    ok = failed = 0
    for clip in clips:
        try:
            info = container.probe(clip)
        except (OSError, ValueError) as exc:
            failed += 1
            emit("clip_error", path=str(clip), message=_named(clip, exc))
            continue
        ok += 1
        emit("clip", path=str(clip), info=clip_info_json(info))
    emit("done", ok=ok, failed=failed)
    return 0


def record(clip: Path, emit: Emit) -> int:
    found = container.read_clip_record(clip)
    emit("record", path=str(clip), parameters=dict(found.parameters), graph=found.graph,
         source=found.source)
    return 0


def read_finish_spec(path: Path) -> dict[str, Any]:
    """The finish spec; a bad one raises ValueError naming the file and the field."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != FINISH_SPEC_VERSION:
        raise ValueError(f"{path}: field 'version' must be {FINISH_SPEC_VERSION}")
    segments = doc.get("segments")
    if not isinstance(segments, list) or not segments or not all(
            isinstance(s, str) and s for s in segments):
        raise ValueError(f"{path}: field 'segments' must be a non-empty list of clip paths")
    if not isinstance(doc.get("dest"), str) or not doc["dest"]:
        raise ValueError(f"{path}: field 'dest' must be the clip to write")
    if not isinstance(doc.get("parameters"), Mapping):
        raise ValueError(f"{path}: field 'parameters' must be a mapping")
    fps = doc.get("fps")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or fps <= 0:
        raise ValueError(f"{path}: field 'fps' must be a positive number (got {fps!r})")
    return doc


def finish(spec: dict[str, Any], emit: Emit) -> int:
    """Write the job's clip from a spec :func:`read_finish_spec` read."""
    segments = [Path(s) for s in spec["segments"]]
    dest = Path(spec["dest"])
    params, graph = dict(spec["parameters"]), spec.get("graph")
    meta = {"isengard": params, "prompt": graph}
    dest.parent.mkdir(parents=True, exist_ok=True)
    joined = None                # the frames in memory when they were joined here
    if len(segments) == 1 and segments[0].suffix.lower() == dest.suffix.lower():
        emit("phase", phase="copying", done=0, total=1)
        container.rewrite_metadata(segments[0], dest, meta)
    else:
        decoded = []
        for i, seg in enumerate(segments):
            emit("phase", phase="decoding", done=i, total=len(segments))
            decoded.append(container.read_frames(seg))
        fps = container.probe(segments[0]).fps or float(spec["fps"])
        emit("phase", phase="encoding", done=0, total=1)
        joined = join_frames(decoded)
        container.write_clip(dest, joined, fps, metadata=meta)
    info = clip_info_json(container.probe(dest))
    container.write_sidecar(dest, params, graph, info)
    frames_folder = None
    if spec.get("save_frames"):
        emit("phase", phase="frames", done=0, total=1)
        frames_folder = dest.with_name(dest.stem + "_frames")
        container.export_frames(dest, frames_folder, frames=joined)   # (no re-decode)
    emit("finished", path=str(dest), info=info,
         frames_folder=str(frames_folder) if frames_folder else None)
    return 0


def export_frames(clip: Path, folder: Path | None, emit: Emit) -> int:
    folder = folder or clip.with_name(clip.stem + "_frames")
    written = container.export_frames(clip, folder)
    emit("frames", path=str(clip), folder=str(folder), count=len(written))
    return 0


def preview(clip: Path, cache: Path, max_side: int, emit: Emit) -> int:
    if not clip.is_file():
        raise VideoFileError(f"{clip.name}: the file is missing")
    info = container.write_preview(clip, cache, max_side=max_side)
    emit("preview", path=str(clip), folder=str(info.folder), fps=info.fps, count=info.count,
         width=info.width, height=info.height)
    return 0


def _named(clip: Path, exc: BaseException) -> str:
    text = reason(exc)
    return text if clip.name in text else f"{clip.name}: {text}"
