"""Video nodes of the ComfyUI test double: real small MP4/WebM/animated WebP files in the shape
ComfyUI returns them.

What ComfyUI really does (read in its source; the object_info of 0.3.64 recorded in
``tests/fixtures/comfyui/object_info/object_info_full.json`` lists every node named here, with
the inputs used below):

* Wan conditioning (``comfy_extras/nodes_wan.py`` @ 01646347): ``WanImageToVideo`` and
  ``WanFirstLastFrameToVideo`` return (positive, negative, LATENT); the latent has
  ``((length - 1) // 4) + 1`` frames (nodes_wan.py:34, the same formula in
  ``WanFirstLastFrameToVideo.encode``), so VAEDecode gives ``4n+1`` images.
  ``WanFirstLastFrameToVideo`` puts ``start_image`` at the first frames and ``end_image`` at the
  last (``image[-end_image.shape[0]:] = end_image``). ``EmptyHunyuanLatentVideo`` (Wan's
  text-to-video latent) has the same packing (step 4 in object_info).
* LTX-Video (``comfy_extras/nodes_lt.py``; object_info): ``LTXVImgToVideo`` / ``EmptyLTXVLatentVideo``
  ``length`` step 8 (min 9 for LTXVImgToVideo), latent frames ``((length - 1) // 8) + 1``;
  ``LTXVAddGuide`` ``frame_idx`` 0 = first frame, negative values count from the end (its
  tooltip); ``LTXVCropGuides`` removes the guide frames again before decoding.
* ``CreateVideo`` (``comfy_extras/nodes_video.py`` @ 0413db9d) wraps IMAGE + fps into VIDEO.
* ``SaveVideo`` (nodes_video.py:88-113 @ 0413db9d): file ``f"{filename}_{counter:05}_.{ext}"``
  (nodes_video.py:105; ``format`` auto/mp4 → ``mp4``, codec auto/h264), written by
  ``VideoFromComponents.save_to`` (``comfy_api/latest/_input_impl/video_types.py``): PyAV, MP4
  opened with ``movflags=use_metadata_tags``, each metadata value ``json.dumps``-ed
  (``prompt`` = the graph, plus every ``extra_pnginfo`` key), ``h264`` ``yuv420p`` at
  ``Fraction(round(fps*1000), 1000)``. Its ui is ``ui.PreviewVideo([SavedResult(file, subfolder,
  output)])`` (nodes_video.py:113), and ``PreviewVideo.as_dict()`` is
  ``{"images": [...], "animated": (True,)}`` (``comfy_api/latest/_ui.py``, class PreviewVideo):
  **a video arrives under "images"**, told apart only by ``"animated": [true]`` and the
  extension. That dict is the ``output`` of the ``executed`` WebSocket message and
  ``outputs[node_id]`` in ``/history/<prompt_id>``.
* ``SaveWEBM`` (nodes_video.py:14-66 @ 0413db9d): ``f"{filename}_{counter:05}_.webm"``, codec
  vp9 → ``libvpx-vp9`` / av1 → ``libsvtav1``, metadata ``prompt`` + extra_pnginfo keys, the same
  ``PreviewVideo`` ui (nodes_video.py:66).
* ``SaveAnimatedWEBP`` (``comfy_extras/nodes_images.py``): returns
  ``{"ui": {"images": results, "animated": (num_frames != 1,)}}``: one ``.webp`` per call.
* The counter comes from ``folder_paths.get_save_image_path``: the next number after the
  highest ``<prefix>_<digits>_`` file in the folder, whatever its extension.
* Third-party ``VHS_VideoCombine`` answers ``{"gifs": [...]}``; it is not a core node and the
  double does not offer it.

Frames here are real pictures: a start/end keyframe blend (or a seed colour) with a moving bar,
so a test can see motion and that the first/last frames are the keyframes.
"""

from __future__ import annotations

import json
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.helpers.comfy_double_nodes import NodeContext, NodeResult, Val, _images, _latent, color_for


def _video_latent(ctx: NodeContext, step: int, *, start: str = "", end: str = "",
                  end_key: str = "") -> NodeResult:
    length = int(ctx.value("length", step * 8 + 1) or 1)
    frames = ((length - 1) // step) * step + 1       # ((length-1)//step)+1 latent frames, decoded
    lat: dict[str, Any] = {"w": int(ctx.value("width", 512)), "h": int(ctx.value("height", 512)),
                           "batch": int(ctx.value("batch_size", 1) or 1), "color": (0, 0, 0),
                           "frames": frames}
    if start and isinstance(ctx.inputs.get(start), Val):
        lat["start"] = _images(ctx, start)[0]
    if end and isinstance(ctx.inputs.get(end), Val):
        lat["end"] = _images(ctx, end)[-1]
    outs: list[Val] = []
    for typ in ctx.entry.get("output", []):
        if typ == "LATENT":
            outs.append(Val("LATENT", lat))
        else:  # CONDITIONING passes through
            v = ctx.inputs.get("positive" if not any(o.type == typ for o in outs) else "negative")
            outs.append(v if isinstance(v, Val) else Val(typ, typ.lower()))
    return NodeResult(outs)


def _add_guide(ctx: NodeContext) -> NodeResult:
    lat = _latent(ctx, "latent")
    idx = int(ctx.value("frame_idx", 0) or 0)
    img = _images(ctx, "image")
    if idx == 0:
        lat["start"] = img[0]
    elif idx < 0 or idx >= int(lat.get("frames", 1)) - 1:
        lat["end"] = img[-1]
    pos, neg = ctx.inputs.get("positive"), ctx.inputs.get("negative")
    return NodeResult([pos if isinstance(pos, Val) else Val("CONDITIONING", ""),
                       neg if isinstance(neg, Val) else Val("CONDITIONING", ""),
                       Val("LATENT", lat)])


def _crop_guides(ctx: NodeContext) -> NodeResult:
    pos, neg = ctx.inputs.get("positive"), ctx.inputs.get("negative")
    return NodeResult([pos if isinstance(pos, Val) else Val("CONDITIONING", ""),
                       neg if isinstance(neg, Val) else Val("CONDITIONING", ""),
                       Val("LATENT", _latent(ctx, "latent"))])


def decode_video(lat: dict[str, Any]) -> list[Image.Image]:
    """Frames of a video latent: first = start keyframe, last = end keyframe (when given),
    a blend between, plus a bar that moves left to right."""
    w, h, n = int(lat["w"]), int(lat["h"]), int(lat["frames"])
    base = np.zeros((h, w, 3), np.float32) + np.array(lat.get("color", (0, 0, 0)), np.float32)
    start = lat.get("start")
    end = lat.get("end")
    a = np.asarray(start.convert("RGB").resize((w, h)), np.float32) if start is not None else base
    b = np.asarray(end.convert("RGB").resize((w, h)), np.float32) if end is not None else a
    out = []
    for i in range(n):
        t = i / (n - 1) if n > 1 else 0.0
        frame = a * (1 - t) + b * t
        if 0 < i < n - 1:     # the keyframes stay exact; frames between get a moving bar
            x = int(t * (w - 4))
            frame[:, x:x + 4] = 255.0 - frame[:, x:x + 4]
        out.append(Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)))
    return out


def _counter(folder: Path, name: str) -> int:
    """folder_paths.get_save_image_path: after the highest ``<name>_<digits>_`` of any type."""
    pat = re.compile(re.escape(name) + r"_(\d+)_")
    highest = 0
    try:
        entries = os.listdir(folder)
    except OSError:
        return 1
    for entry in entries:
        m = pat.match(entry)
        if m:
            highest = max(highest, int(m.group(1)))
    return highest + 1


def _target(ctx: NodeContext, default: str, ext: str) -> tuple[Path, str, str]:
    prefix = str(ctx.value("filename_prefix", default) or default).replace("\\", "/")
    sub, _, name = prefix.rpartition("/")
    folder = ctx.output_dir / sub if sub else ctx.output_dir
    folder.mkdir(parents=True, exist_ok=True)
    filename = f"{name}_{_counter(folder, name):05}_.{ext}"
    return folder / filename, filename, sub


def _metadata(ctx: NodeContext) -> dict[str, str]:
    meta = {k: json.dumps(v) for k, v in (ctx.extra_data.get("extra_pnginfo") or {}).items()}
    meta["prompt"] = json.dumps(ctx.prompt)
    return meta


def _encode(path: Path, frames: list[Image.Image], fps: float, codec: str, fmt: str,
            metadata: dict[str, str]) -> None:
    import av

    opts = {"movflags": "use_metadata_tags"} if fmt == "mp4" else {}
    with av.open(str(path), mode="w", format=fmt, options=opts) as out:
        for k, v in metadata.items():
            out.metadata[k] = v
        stream = out.add_stream(codec, rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height = frames[0].size[0] // 2 * 2, frames[0].size[1] // 2 * 2
        stream.pix_fmt = "yuv420p"
        for img in frames:
            arr = np.asarray(img.convert("RGB"))[:stream.height, :stream.width]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr),
                                                                   format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _video_ui(filename: str, sub: str) -> dict[str, Any]:
    return {"images": [{"filename": filename, "subfolder": sub, "type": "output"}],
            "animated": [True]}


def _create_video(ctx: NodeContext) -> NodeResult:
    return NodeResult([Val("VIDEO", {"frames": list(_images(ctx, "images")),
                                     "fps": float(ctx.value("fps", 30.0))})])


def _save_video(ctx: NodeContext) -> NodeResult:
    v = ctx.inputs.get("video")
    data = v.data if isinstance(v, Val) and isinstance(v.data, dict) else {
        "frames": [Image.new("RGB", (64, 64))], "fps": 30.0}
    path, filename, sub = _target(ctx, "video/ComfyUI", "mp4")
    _encode(path, data["frames"], data["fps"], "h264", "mp4", _metadata(ctx))
    return NodeResult([], _video_ui(filename, sub))


def _save_webm(ctx: NodeContext) -> NodeResult:
    path, filename, sub = _target(ctx, "ComfyUI", "webm")
    codec = {"vp9": "libvpx-vp9", "av1": "libsvtav1"}[str(ctx.value("codec", "vp9"))]
    _encode(path, list(_images(ctx, "images")), float(ctx.value("fps", 24.0)), codec, "webm",
            _metadata(ctx))
    return NodeResult([], _video_ui(filename, sub))


def _save_animated_webp(ctx: NodeContext) -> NodeResult:
    frames = list(_images(ctx, "images"))
    path, filename, sub = _target(ctx, "ComfyUI", "webp")
    fps = float(ctx.value("fps", 6.0))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000 / fps),
                   lossless=bool(ctx.value("lossless", True)), quality=int(ctx.value("quality", 80)))
    return NodeResult([], {"images": [{"filename": filename, "subfolder": sub, "type": "output"}],
                           "animated": [len(frames) != 1]})


def video_aware_decode(ctx: NodeContext, plain: Any) -> NodeResult:
    lat = _latent(ctx, "samples")
    if "frames" in lat:
        if "start" not in lat and "end" not in lat:
            lat["color"] = lat.get("color") or color_for("video")
        return NodeResult([Val("IMAGE", decode_video(lat))])
    return plain(ctx)


VIDEO_NODE_FUNCTIONS = {
    "WanImageToVideo": lambda ctx: _video_latent(ctx, 4, start="start_image"),
    "WanFirstLastFrameToVideo": lambda ctx: _video_latent(ctx, 4, start="start_image", end="end_image"),
    "EmptyHunyuanLatentVideo": lambda ctx: _video_latent(ctx, 4),
    "LTXVImgToVideo": lambda ctx: _video_latent(ctx, 8, start="image"),
    "EmptyLTXVLatentVideo": lambda ctx: _video_latent(ctx, 8),
    "LTXVAddGuide": _add_guide,
    "LTXVCropGuides": _crop_guides,
    "CreateVideo": _create_video,
    "SaveVideo": _save_video,
    "SaveWEBM": _save_webm,
    "SaveAnimatedWEBP": _save_animated_webp,
}
