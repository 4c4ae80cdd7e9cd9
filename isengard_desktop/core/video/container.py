"""MP4 (H.264) and WebM (VP9) clips through PyAV, and the parameters stored with each clip.

PyAV's wheel bundles FFmpeg; checked here (av 18.1.0, FFmpeg 8.1): ``libx264`` encodes H.264
(``libopenh264`` is not in the wheel), ``libvpx-vp9`` encodes VP9, ``libsvtav1`` AV1. Licence:
the wheel's libavcodec says "LGPL version 3 or later" but is configured with
``--enable-libx264`` and carries libx264/libx265 (GPL). So only the clips child
(``analysis_runtime/clips.py``, in the trainer runtime the app installs from PyPI) imports this
module; the GUI process reads sidecars and previews through ``clip_record.py`` (no PyAV) and the
frozen app excludes ``av``.

What a clip carries, in two places (both written here, read back by :func:`read_clip_record`):

* container metadata, the way ComfyUI's ``SaveVideo`` writes it
  (``comfy_api/latest/_input_impl/video_types.py`` ``VideoFromComponents.save_to``: MP4 opened
  with ``movflags=use_metadata_tags`` so free-form keys survive, each value ``json.dumps``-ed):
  ``prompt`` = the ComfyUI graph, ``isengard`` = our parameters. Without ``use_metadata_tags``
  the MP4 muxer keeps only its known keys (``comment``, ``title`` ...); checked here. WebM
  (Matroska) keeps any key (it upper-cases them: ``PROMPT``, ``ISENGARD``);
* a sidecar ``<clip>.json`` beside the file (``{"version": 1, "parameters", "graph"}``), which
  survives tools that strip metadata (``clip_record.py``, re-exported here).

Everything here does blocking I/O: call it from a worker thread (never the UI thread).
PyAV is imported inside the functions so importing this module costs nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..fsutil import atomic_output, atomic_write_text
from .clip_record import (PREVIEW_VERSION, SIDECAR_VERSION, VIDEO_EXTENSIONS, ClipRecord,
                          PreviewInfo, VideoFileError, preview_dir, read_preview_info,
                          read_sidecar, record_from_metadata, sidecar_path, write_sidecar)

__all__ = ["CONTAINERS", "PREVIEW_MAX_SIDE", "SIDECAR_VERSION", "VIDEO_EXTENSIONS", "ClipInfo",
           "ClipRecord", "VideoFileError", "export_frames", "probe", "read_clip_record",
           "read_frames", "rewrite_metadata", "sidecar_path", "write_clip", "write_preview",
           "write_sidecar"]

# container -> (PyAV format name, encoder, pixel format, encoder options)
CONTAINERS: Mapping[str, tuple[str, str, str, dict[str, str]]] = {
    "mp4": ("mp4", "libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
    "webm": ("webm", "libvpx-vp9", "yuv420p", {"crf": "32", "b": "0"}),
}
PREVIEW_MAX_SIDE = 640
PREVIEW_JPEG_QUALITY = 85


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    width: int
    height: int
    frames: int
    fps: float
    duration_s: float
    codec: str
    metadata: Mapping[str, str] = field(default_factory=dict)


def _av() -> Any:
    import av  # PyAV: FFmpeg bundled in the wheel
    return av


def _rate(fps: float) -> Fraction:
    # ComfyUI's own rounding of the frame rate (video_types.py: Fraction(round(fps*1000), 1000))
    return Fraction(round(float(fps) * 1000), 1000)


def _as_rgb(frame: Any) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"a frame must be H×W×3 RGB (got shape {arr.shape})")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, :3])


def _meta_values(metadata: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            for k, v in metadata.items()}


def write_clip(path: Path, frames: Iterable[Any], fps: float, *, container: str = "",
               metadata: Mapping[str, Any] | None = None) -> Path:
    """Encode RGB frames (H×W×3 uint8 arrays or PIL images) into ``path`` atomically.

    ``container`` is ``mp4`` or ``webm`` (default: from the suffix). Odd sizes are cropped by
    one pixel (4:2:0 needs even sizes). ``metadata`` values that are not strings are stored as
    JSON. Returns ``path``."""
    av = _av()
    path = Path(path)
    kind = container or path.suffix.lower().lstrip(".")
    if kind not in CONTAINERS:
        raise VideoFileError(f"{path.name}: cannot write a {kind or 'suffix-less'} clip "
                             f"(known: {', '.join(CONTAINERS)})")
    if not fps or fps <= 0:
        raise ValueError(f"{path.name}: fps must be positive (got {fps})")
    fmt, codec, pix_fmt, options = CONTAINERS[kind]
    count = 0
    with atomic_output(path) as fh:
        out = av.open(fh, mode="w", format=fmt,
                      options={"movflags": "use_metadata_tags"} if fmt == "mp4" else {})
        try:
            for key, value in _meta_values(metadata or {}).items():
                out.metadata[key] = value
            stream = None
            for frame in frames:
                rgb = _as_rgb(frame)
                h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
                if stream is None:
                    if h < 2 or w < 2:
                        raise VideoFileError(f"{path.name}: frames of {rgb.shape[1]}×"
                                             f"{rgb.shape[0]} are too small to encode")
                    stream = out.add_stream(codec, rate=_rate(fps))
                    stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
                    stream.options = dict(options)
                elif (h, w) != (stream.height, stream.width):
                    raise VideoFileError(f"{path.name}: frame {count + 1} is {w}×{h}, the clip "
                                         f"is {stream.width}×{stream.height}")
                vf = av.VideoFrame.from_ndarray(rgb[:h, :w], format="rgb24")
                for packet in stream.encode(vf):
                    out.mux(packet)
                count += 1
            if stream is None:
                raise VideoFileError(f"{path.name}: no frames to encode")
            for packet in stream.encode():
                out.mux(packet)
        finally:
            out.close()
    return path


def probe(path: Path) -> ClipInfo:
    """Size, frame count, fps, duration, codec and container metadata of a clip."""
    av = _av()
    path = Path(path)
    try:
        with av.open(str(path)) as inp:
            if not inp.streams.video:
                raise VideoFileError(f"{path.name} has no video stream")
            stream = inp.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = int(stream.frames or 0)
            if frames <= 0:   # WebM does not store a frame count: count the packets
                frames = sum(1 for p in inp.demux(stream) if p.size)
            duration = frames / fps if fps else float(inp.duration or 0) / 1e6
            return ClipInfo(path=path, width=int(stream.codec_context.width),
                            height=int(stream.codec_context.height), frames=frames, fps=fps,
                            duration_s=duration, codec=str(stream.codec_context.name),
                            metadata={str(k).lower(): str(v) for k, v in inp.metadata.items()})
    except av.error.FFmpegError as exc:
        raise VideoFileError(f"{path.name} cannot be read as a video: {exc}") from None


def read_frames(path: Path, *, limit: int | None = None, max_side: int | None = None
                ) -> list[np.ndarray]:
    """Decoded RGB frames (H×W×3 uint8), at most ``limit``, scaled so the longer side is at most
    ``max_side`` when given."""
    av = _av()
    path = Path(path)
    out: list[np.ndarray] = []
    try:
        with av.open(str(path)) as inp:
            for frame in inp.decode(video=0):
                if max_side and max(frame.width, frame.height) > max_side:
                    s = max_side / max(frame.width, frame.height)
                    frame = frame.reformat(width=max(2, int(frame.width * s)),
                                           height=max(2, int(frame.height * s)))
                out.append(frame.to_ndarray(format="rgb24"))
                if limit is not None and len(out) >= limit:
                    break
    except av.error.FFmpegError as exc:
        raise VideoFileError(f"{path.name} cannot be decoded: {exc}") from None
    return out


def rewrite_metadata(src: Path, dest: Path, metadata: Mapping[str, Any]) -> Path:
    """Copy ``src``'s streams (no re-encoding) into ``dest`` (same container kind) with
    ``metadata`` added to what ``src`` already carries."""
    av = _av()
    src, dest = Path(src), Path(dest)
    kind = dest.suffix.lower().lstrip(".")
    if kind not in CONTAINERS:
        raise VideoFileError(f"{dest.name}: cannot write a {kind} clip")
    fmt = CONTAINERS[kind][0]
    try:
        with av.open(str(src)) as inp, atomic_output(dest) as fh:
            out = av.open(fh, mode="w", format=fmt,
                          options={"movflags": "use_metadata_tags"} if fmt == "mp4" else {})
            try:
                for key, value in inp.metadata.items():
                    if key.lower() not in ("encoder", "major_brand", "minor_version",
                                           "compatible_brands"):
                        out.metadata[key] = value
                for key, value in _meta_values(metadata).items():
                    out.metadata[key] = value
                stream = inp.streams.video[0]
                ostream = out.add_stream_from_template(stream)
                for packet in inp.demux(stream):
                    if packet.dts is None:
                        continue
                    packet.stream = ostream
                    out.mux(packet)
            finally:
                out.close()
    except av.error.FFmpegError as exc:
        raise VideoFileError(f"{src.name} cannot be copied to {dest.name}: {exc}") from None
    return dest


def read_clip_record(clip: Path) -> ClipRecord:
    """The clip's parameters and graph: from its sidecar, else from its container metadata."""
    found = read_sidecar(clip)
    if found is not None:
        return found
    return record_from_metadata(clip, probe(clip).metadata)


def export_frames(clip: Path, folder: Path, *, frames: Sequence[np.ndarray] | None = None
                  ) -> list[Path]:
    """Write every frame of ``clip`` as ``<stem>_00001.png`` ... into ``folder``."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(clip).stem
    out = []
    for i, arr in enumerate(frames if frames is not None else read_frames(clip), start=1):
        path = folder / f"{stem}_{i:05d}.png"
        with atomic_output(path, sync_dir=False) as fh:
            Image.fromarray(arr).save(fh, format="PNG", compress_level=4)
        out.append(path)
    return out


def write_preview(clip: Path, cache: Path, *, max_side: int = PREVIEW_MAX_SIDE) -> PreviewInfo:
    """The player's preview of ``clip``: every frame scaled to at most ``max_side`` px as JPEG
    in its cache folder (``clip_record.preview_dir``), ``info.json`` written last. A complete
    folder is reused as it is."""
    from PIL import Image

    folder = preview_dir(cache, clip)
    found = read_preview_info(folder)
    if found is not None:
        return found
    fps = probe(clip).fps
    frames = read_frames(clip, max_side=max_side)
    if not frames:
        raise VideoFileError(f"{Path(clip).name} has no frames to show")
    shutil.rmtree(folder, ignore_errors=True)          # a half-written earlier try
    folder.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(frames, start=1):
        with atomic_output(folder / f"frame_{i:05d}.jpg", sync_dir=False) as fh:
            Image.fromarray(arr).save(fh, format="JPEG", quality=PREVIEW_JPEG_QUALITY)
    height, width = frames[0].shape[:2]
    st = Path(clip).stat()
    atomic_write_text(folder / "info.json", json.dumps({
        "version": PREVIEW_VERSION, "fps": fps, "count": len(frames), "width": width,
        "height": height, "clip": str(Path(clip).absolute()), "size": st.st_size,
        "mtime_ns": st.st_mtime_ns}))
    return PreviewInfo(folder, fps, len(frames), width, height)
