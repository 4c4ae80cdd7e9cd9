"""The model library: find base models in the user's folders and tell their family.

Only the safetensors header is read (8-byte little-endian length + JSON): no torch in the
GUI process, about half a millisecond per file however large. Diffusers folders are
recognised by their ``model_index.json``. Safe to run on a worker thread.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable

FAMILY_LABELS = {
    "sd15": "SD 1.5",
    "sdxl": "SDXL",
    "flux-dev": "Flux.1 dev",
    "flux-schnell": "Flux.1 schnell",
    "chroma": "Chroma",
    None: "unknown",
}
MAX_HEADER = 100 * 1024 * 1024   # real headers are at most a few MB
_PIPELINES = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
    "ChromaPipeline": "chroma",
}
_SKIP_DIRS = {".git", "__pycache__", ".cache"}
# folders of a ComfyUI-layout models folder (the app's own, a linked ComfyUI's) that hold
# components and add-ons, never base models: not listed as base models (compared lower-case)
COMPONENT_DIRS = frozenset({
    "text_encoders", "clip", "vae", "vae_approx", "loras", "lora", "lycoris", "controlnet",
    "clip_vision", "ipadapter", "upscale_models", "esrgan", "ultralytics", "sams",
    "embeddings", "hypernetworks", "style_models", "gligen", "photomaker",
})


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    family: str | None     # "sd15" | "sdxl" | "flux-dev" | "flux-schnell" | "chroma" | None
    label: str              # "SDXL", "Flux.1 dev", "unknown", "unreadable: <why>"
    size: int               # bytes (a folder: the sum of its files)

    @property
    def display_name(self) -> str:
        return f"{self.path.name} — {self.label}"


class HeaderError(ValueError):
    """The file is not a readable safetensors file; the message says why."""


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """The header of a .safetensors file: {tensor name: {"dtype", "shape", ...}}."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise HeaderError("file is too short to be a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length <= 1 or length > MAX_HEADER:
            raise HeaderError(f"header length {length} is not plausible")
        data = fh.read(length)
    if len(data) < length:
        raise HeaderError("the header is cut short (incomplete download?)")
    try:
        header = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"the header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise HeaderError("the header is not a JSON object")
    header.pop("__metadata__", None)
    return header


def family_from_header(header: dict[str, dict]) -> str | None:
    """Tell the model family from tensor names and shapes (prefix-agnostic)."""
    names = list(header)

    def any_part(part: str) -> bool:
        return any(part in n for n in names)

    if any_part("joint_blocks."):
        return None  # SD3: not a family we train
    if any_part("distilled_guidance_layer."):
        return "chroma"
    if any_part("double_blocks.") and any_part("img_in."):
        return "flux-dev" if any_part("guidance_in.") else "flux-schnell"
    if any_part("transformer_blocks.") and any_part("x_embedder") and any_part(
            "single_transformer_blocks."):   # diffusers-format Flux/Chroma transformer
        if any_part("distilled_guidance_layer"):
            return "chroma"
        return "flux-dev" if any_part("guidance_embedder") else "flux-schnell"
    for name, info in header.items():
        if name.endswith("label_emb.0.0.weight") or name.endswith("add_embedding.linear_1.weight"):
            shape = info.get("shape") or []
            if len(shape) == 2 and shape[1] == 2816:
                return "sdxl"
    for name, info in header.items():
        if name.endswith("attn2.to_k.weight"):
            shape = info.get("shape") or []
            if len(shape) == 2:
                if shape[1] == 768:
                    return "sd15"
                if shape[1] == 2048:
                    return "sdxl"
    return None


def detect_file(path: Path) -> ModelInfo:
    size = _size(path)
    try:
        family = family_from_header(read_safetensors_header(path))
    except (OSError, HeaderError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return ModelInfo(path, None, f"unreadable: {reason}", size)
    return ModelInfo(path, family, FAMILY_LABELS[family], size)


def detect_folder(path: Path) -> ModelInfo | None:
    """A diffusers pipeline folder (with ``model_index.json``), else None."""
    index = path / "model_index.json"
    if not index.is_file():
        return None
    size = sum(_size(p) for p in path.rglob("*") if p.is_file())
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return ModelInfo(path, None, f"unreadable: model_index.json ({exc})", size)
    cls = str(data.get("_class_name", ""))
    family = _PIPELINES.get(cls)
    if cls == "FluxPipeline":
        try:
            cfg = json.loads((path / "transformer" / "config.json").read_text(encoding="utf-8"))
            family = "flux-dev" if cfg.get("guidance_embeds") else "flux-schnell"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            family = "flux-dev"
    return ModelInfo(path, family, FAMILY_LABELS[family], size)


def model_search_folders(app_models: Path | str, model_folders: Iterable[str],
                         comfyui_models: str = "") -> list[str]:
    """The folders scanned for base models: the app's own Models folder (Settings → Folders)
    first, then the folders added under Model folders, then ComfyUI's models folder; each once."""
    out: list[str] = []
    for folder in (str(app_models), *model_folders, comfyui_models):
        if folder and folder not in out:
            out.append(folder)
    return out


def scan_model_folders(folders: Iterable[Path | str]) -> list[ModelInfo]:
    """Every .safetensors file and diffusers folder under ``folders`` (recursive), sorted by
    family then name. Missing folders are skipped. LoRA files (small, ``lora`` in the header
    keys) are not base models and are left out, and so are ComfyUI's component folders
    (``text_encoders/``, ``vae/``, ``loras/``, … :data:`COMPONENT_DIRS`) below a scanned
    folder: the app's models folder keeps ComfyUI's layout and only ``checkpoints/`` and
    ``diffusion_models/`` (``unet/``) hold base models there."""
    found: dict[Path, ModelInfo] = {}
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            here = Path(dirpath)
            info = detect_folder(here)
            if info is not None:
                found[here] = info
                dirnames[:] = []   # don't list a pipeline's component files
                continue
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS
                                 and d.lower() not in COMPONENT_DIRS
                                 and not d.startswith("."))
            for name in sorted(filenames):
                if name.lower().endswith(".safetensors") and not name.startswith("."):
                    path = here / name
                    if not _looks_like_lora(path):
                        found[path] = detect_file(path)
    order = {f: i for i, f in enumerate(FAMILY_LABELS)}
    return sorted(found.values(), key=lambda m: (order.get(m.family, 99), m.path.name.lower()))


def _looks_like_lora(path: Path) -> bool:
    try:
        header = read_safetensors_header(path)
    except (OSError, HeaderError):
        return False
    return bool(header) and all("lora" in k or k.endswith(".alpha") for k in header)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
