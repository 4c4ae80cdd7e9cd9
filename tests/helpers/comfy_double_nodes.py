"""Node simulation for the ComfyUI test double (see comfy_double.py).

Values that flow between simulated nodes are :class:`Val` objects: images are real Pillow images,
latents carry their pixel size and batch, everything else is an opaque token. Pictures are flat
colours derived from the seed, at the requested size.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter
from PIL.PngImagePlugin import PngInfo

from tests.helpers.comfy_double_info import (  # noqa: F401 - re-exported
    FIXTURES,
    FOLDER_INPUTS,
    MODEL_FOLDERS,
    build_object_info,
    normalize_models,
)

SAMPLER_CLASSES = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}


# ----------------------------------------------------------------------------------------------
# input helpers used by validation and execution


def input_spec(entry: dict[str, Any], name: str) -> tuple[Any, str, dict[str, Any]] | None:
    """(type, category, extra) of one input of a node's object_info entry, or None."""
    for cat in ("required", "optional", "hidden"):
        cfg = entry.get("input", {}).get(cat, {}).get(name)
        if cfg is not None:
            if cat == "hidden":
                return cfg, cat, {}
            extra = cfg[1] if len(cfg) > 1 and isinstance(cfg[1], dict) else {}
            return cfg[0], cat, extra
    return None


def declared_inputs(entry: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for cat in ("required", "optional"):
        order = entry.get("input_order", {}).get(cat)
        declared = entry.get("input", {}).get(cat, {})
        for name in (order or list(declared)):
            if name in declared and name not in names:
                names.append(name)
        for name in declared:
            if name not in names:
                names.append(name)
    return names


def is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


# ----------------------------------------------------------------------------------------------
# values


@dataclass
class Val:
    type: str
    data: Any = None  # images: list[Image]; LATENT: dict(w, h, batch, color); SIGMAS: steps; else str

    def describe(self) -> str:
        if self.type == "IMAGE" and isinstance(self.data, list) and self.data:
            w, h = self.data[0].size
            return f"<IMAGE {len(self.data)}x{w}x{h}>"
        if self.type == "LATENT" and isinstance(self.data, dict):
            d = self.data
            return f"<LATENT {d['batch']}x{d['w'] // 8}x{d['h'] // 8}>"
        return f"<{self.type} {self.data}>"


@dataclass
class NodeResult:
    outputs: list[Val]
    ui: dict[str, Any] | None = None


class NodeRuntimeError(Exception):
    """A node failed at run time; carries what execution_error reports."""

    def __init__(self, exc: BaseException, traceback_lines: list[str] | None = None,
                 type_name: str | None = None):
        super().__init__(str(exc))
        self.exc = exc
        self.traceback_lines = traceback_lines or []
        self.type_name = type_name or full_type_name(exc)


def full_type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    if module in ("builtins", "__builtin__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def color_for(*parts: Any) -> tuple[int, int, int]:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return digest[0], digest[1], digest[2]


def flat_images(w: int, h: int, batch: int, color: tuple[int, int, int]) -> list[Image.Image]:
    w, h, batch = max(1, int(w)), max(1, int(h)), max(1, int(batch))
    return [Image.new("RGB", (w, h), color) for _ in range(batch)]


def png_bytes(img: Image.Image, pnginfo: PngInfo | None = None, compress_level: int = 4) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=pnginfo, compress_level=compress_level)
    return buf.getvalue()


def jpeg_preview(img: Image.Image, limit: int = 512) -> bytes:
    w, h = img.size
    scale = limit / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    buf = io.BytesIO()
    img.convert("RGB").resize(size).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def blank(typ: str) -> Val:
    if typ == "IMAGE":
        return Val("IMAGE", flat_images(512, 512, 1, (128, 128, 128)))
    if typ == "LATENT":
        return Val("LATENT", {"w": 512, "h": 512, "batch": 1, "color": (0, 0, 0)})
    return Val(typ, typ.lower())


# ----------------------------------------------------------------------------------------------
# execution context handed to node functions


@dataclass
class NodeContext:
    node_id: str
    class_type: str
    inputs: dict[str, Any]          # constants and resolved Val for links
    entry: dict[str, Any]           # object_info entry
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    output_dir: Path
    input_dir: Path
    temp_dir: Path
    state: dict[str, Any] = field(default_factory=dict)

    def value(self, name: str, default: Any = None) -> Any:
        v = self.inputs.get(name, default)
        return v.data if isinstance(v, Val) else v


def _images(ctx: NodeContext, name: str) -> list[Image.Image]:
    v = ctx.inputs.get(name)
    if isinstance(v, Val) and v.type == "IMAGE" and isinstance(v.data, list):
        return v.data
    return flat_images(512, 512, 1, (128, 128, 128))


def _latent(ctx: NodeContext, name: str) -> dict[str, Any]:
    v = ctx.inputs.get(name)
    if isinstance(v, Val) and v.type == "LATENT" and isinstance(v.data, dict):
        return dict(v.data)
    return {"w": 512, "h": 512, "batch": 1, "color": (0, 0, 0)}


def next_counter(folder: Path, prefix: str) -> int:
    highest = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 1
    start = prefix + "_"
    for name in names:
        if name.startswith(start) and name.endswith("_.png"):
            middle = name[len(start):-len("_.png")]
            if middle.isdigit():
                highest = max(highest, int(middle))
    return highest + 1


def save_images(ctx: NodeContext, images: list[Image.Image], prefix: str, base: Path,
                type_: str) -> dict[str, Any]:
    prefix = prefix or "ComfyUI"
    sub, _, name = prefix.replace("\\", "/").rpartition("/")
    folder = (base / sub) if sub else base
    folder.mkdir(parents=True, exist_ok=True)
    counter = next_counter(folder, name)
    results = []
    for img in images:
        info = PngInfo()
        info.add_text("prompt", json.dumps(ctx.prompt))
        for key, value in (ctx.extra_data.get("extra_pnginfo") or {}).items():
            info.add_text(key, json.dumps(value))
        filename = f"{name}_{counter:05}_.png"
        (folder / filename).write_bytes(png_bytes(img, info))
        results.append({"filename": filename, "subfolder": sub, "type": type_})
        counter += 1
    return {"images": results}


# ----------------------------------------------------------------------------------------------
# node functions


def _empty_image(ctx: NodeContext) -> NodeResult:
    c = int(ctx.value("color", 0) or 0)
    rgb = ((c >> 16) & 255, (c >> 8) & 255, c & 255)
    return NodeResult([Val("IMAGE", flat_images(ctx.value("width", 512), ctx.value("height", 512),
                                                ctx.value("batch_size", 1), rgb))])


def _load_image(ctx: NodeContext) -> NodeResult:
    name = str(ctx.value("image"))
    base = ctx.input_dir
    for tag, folder in ((" [input]", ctx.input_dir), (" [output]", ctx.output_dir),
                        (" [temp]", ctx.temp_dir)):
        if name.endswith(tag):
            name, base = name[: -len(tag)], folder
    path = base / name
    try:
        with Image.open(str(path)) as img:
            img.load()
            rgb = img.convert("RGB")
    except Exception as exc:
        raise NodeRuntimeError(exc, ctx.state.get("load_image_traceback")) from exc
    mask = Val("MASK", f"mask {rgb.size[0]}x{rgb.size[1]}")
    return NodeResult([Val("IMAGE", [rgb]), mask])


def _blur(ctx: NodeContext) -> NodeResult:
    radius = int(ctx.value("blur_radius", 1) or 1)
    out = [img.filter(ImageFilter.GaussianBlur(radius)) if img.size[0] * img.size[1] <= 262144
           else img.copy() for img in _images(ctx, "image")]
    return NodeResult([Val("IMAGE", out)])


def _scale_to(img: Image.Image, w: int, h: int) -> Image.Image:
    return img.resize((max(1, int(w)), max(1, int(h))))


def _image_scale(ctx: NodeContext) -> NodeResult:
    out = []
    for img in _images(ctx, "image"):
        w, h = int(ctx.value("width", 0) or 0), int(ctx.value("height", 0) or 0)
        if w == 0 and h == 0:
            w, h = img.size
        elif w == 0:
            w = max(1, round(img.size[0] * h / img.size[1]))
        elif h == 0:
            h = max(1, round(img.size[1] * w / img.size[0]))
        out.append(_scale_to(img, w, h))
    return NodeResult([Val("IMAGE", out)])


def _image_scale_by(ctx: NodeContext) -> NodeResult:
    s = float(ctx.value("scale_by", 1.0) or 1.0)
    out = [_scale_to(img, round(img.size[0] * s), round(img.size[1] * s))
           for img in _images(ctx, "image")]
    return NodeResult([Val("IMAGE", out)])


def _upscale_with_model(ctx: NodeContext) -> NodeResult:
    model = str(ctx.value("upscale_model", ""))
    factor = 2 if ("2x" in model.lower() or "x2" in model.lower()) else 4
    out = [_scale_to(img, img.size[0] * factor, img.size[1] * factor)
           for img in _images(ctx, "image")]
    return NodeResult([Val("IMAGE", out)])


def _vae_decode(ctx: NodeContext) -> NodeResult:
    lat = _latent(ctx, "samples")
    return NodeResult([Val("IMAGE", flat_images(lat["w"], lat["h"], lat["batch"], lat["color"]))])


def _vae_encode(ctx: NodeContext) -> NodeResult:
    imgs = _images(ctx, "pixels")
    w, h = imgs[0].size
    color = imgs[0].resize((1, 1)).getpixel((0, 0))
    return NodeResult([Val("LATENT", {"w": max(8, w // 8 * 8), "h": max(8, h // 8 * 8),
                                      "batch": len(imgs), "color": tuple(color)[:3]})])


def _checkpoint_loader(ctx: NodeContext) -> NodeResult:
    name = ctx.value("ckpt_name")
    outs = [Val(t, f"{t.lower()}:{name}") for t in ctx.entry.get("output", [])]
    return NodeResult(outs)


def _text_encode(ctx: NodeContext) -> NodeResult:
    return NodeResult([Val("CONDITIONING", str(ctx.value("text", "")))])


def _save_image(ctx: NodeContext) -> NodeResult:
    ui = save_images(ctx, _images(ctx, "images"), str(ctx.value("filename_prefix", "ComfyUI")),
                     ctx.output_dir, "output")
    return NodeResult([], ui)


def _preview_image(ctx: NodeContext) -> NodeResult:
    prefix = "ComfyUI_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    ui = save_images(ctx, _images(ctx, "images"), prefix, ctx.temp_dir, "temp")
    return NodeResult([], ui)


def _preview_any(ctx: NodeContext) -> NodeResult:
    v = ctx.inputs.get("source")
    text = v.describe() if isinstance(v, Val) else json.dumps(v)
    return NodeResult([], {"text": [text]})


def _random_noise(ctx: NodeContext) -> NodeResult:
    return NodeResult([Val("NOISE", int(ctx.value("noise_seed", 0) or 0))])


NODE_FUNCTIONS: dict[str, Callable[[NodeContext], NodeResult]] = {
    "EmptyImage": _empty_image,
    "LoadImage": _load_image,
    "ImageBlur": _blur,
    "ImageSharpen": lambda ctx: NodeResult([Val("IMAGE", list(_images(ctx, "image")))]),
    "ImageScale": _image_scale,
    "ImageScaleBy": _image_scale_by,
    "ImageUpscaleWithModel": _upscale_with_model,
    "VAEDecode": _vae_decode,
    "VAEDecodeTiled": _vae_decode,
    "VAEEncode": _vae_encode,
    "CheckpointLoaderSimple": _checkpoint_loader,
    "CheckpointLoader": _checkpoint_loader,
    "CLIPTextEncode": _text_encode,
    "SaveImage": _save_image,
    "PreviewImage": _preview_image,
    "PreviewAny": _preview_any,
    "RandomNoise": _random_noise,
}


def sampler_plan(ctx: NodeContext) -> tuple[int, dict[str, Any]]:
    """(steps to run, output latent) for a sampler node."""
    cls = ctx.class_type
    lat = _latent(ctx, "latent_image")
    if cls == "KSampler":
        steps = int(ctx.value("steps", 20) or 1)
        seed = ctx.value("seed", 0)
    elif cls == "KSamplerAdvanced":
        total = int(ctx.value("steps", 20) or 1)
        start = int(ctx.value("start_at_step", 0) or 0)
        end = int(ctx.value("end_at_step", 10000) or 0)
        steps = max(0, min(total, end) - start)
        seed = ctx.value("noise_seed", 0)
    else:
        sig = ctx.inputs.get("sigmas")
        steps = int(sig.data) if isinstance(sig, Val) and isinstance(sig.data, int) else 20
        if cls == "SamplerCustom":
            seed = ctx.value("noise_seed", 0)
        else:
            noise = ctx.inputs.get("noise")
            seed = noise.data if isinstance(noise, Val) else 0
    pos = ctx.inputs.get("positive")
    lat["color"] = color_for(seed, pos.data if isinstance(pos, Val) else "", cls)
    return steps, lat


def generic_outputs(ctx: NodeContext) -> NodeResult:
    """Unknown-but-declared nodes: pass the first input of each output's type through."""
    outs: list[Val] = []
    used: set[str] = set()
    for typ in ctx.entry.get("output", []):
        found = None
        for name, v in ctx.inputs.items():
            if isinstance(v, Val) and v.type == typ and name not in used:
                found = v
                used.add(name)
                break
        if found is None:
            for v in ctx.inputs.values():
                if isinstance(v, Val) and v.type == typ:
                    found = v
                    break
        if found is None and typ == "SIGMAS" and "steps" in ctx.inputs:
            found = Val("SIGMAS", int(ctx.value("steps") or 1))
        if found is None and typ == "LATENT" and "width" in ctx.inputs and "height" in ctx.inputs:
            found = Val("LATENT", {"w": int(ctx.value("width")), "h": int(ctx.value("height")),
                                   "batch": int(ctx.value("batch_size", 1) or 1),
                                   "color": (0, 0, 0)})
        if found is None and typ == "LATENT" and "samples" in ctx.inputs:
            lat = _latent(ctx, "samples")
            if "scale_by" in ctx.inputs:
                s = float(ctx.value("scale_by") or 1)
                lat["w"], lat["h"] = round(lat["w"] * s), round(lat["h"] * s)
            elif ctx.value("width") and ctx.value("height"):
                lat["w"], lat["h"] = int(ctx.value("width")), int(ctx.value("height"))
            found = Val("LATENT", lat)
        if found is None:
            folder_value = next((str(v) for k, v in ctx.inputs.items()
                                 if (ctx.class_type, k) in FOLDER_INPUTS), None)
            found = Val(typ, folder_value) if folder_value else blank(typ)
        outs.append(found)
    return NodeResult(outs)


# video nodes (SaveVideo, CreateVideo, Wan / LTX-Video latents): see comfy_double_video.py
from tests.helpers.comfy_double_video import VIDEO_NODE_FUNCTIONS, video_aware_decode  # noqa: E402

NODE_FUNCTIONS.update(VIDEO_NODE_FUNCTIONS)
NODE_FUNCTIONS["VAEDecode"] = lambda ctx: video_aware_decode(ctx, _vae_decode)
NODE_FUNCTIONS["VAEDecodeTiled"] = lambda ctx: video_aware_decode(ctx, _vae_decode)
