"""/object_info for the ComfyUI test double (see comfy_double.py): recorded nodes + options.

The recorded ``/object_info`` of ComfyUI 0.3.64 (tests/fixtures/comfyui/object_info) with the
double's models filled into the loader combos, extra nodes added and removed nodes dropped.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui"
OBJECT_INFO_FILE = FIXTURES / "object_info" / "object_info_full.json"

# Model folders as GET /models lists them (recorded), in that order.
MODEL_FOLDERS = [
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen",
    "upscale_models", "custom_nodes", "hypernetworks", "photomaker", "classifiers",
    "model_patches", "audio_encoders",
]
# Legacy names ComfyUI maps onto the new folders (accepted in ``models=``).
FOLDER_ALIASES = {"unet": "diffusion_models", "clip": "text_encoders", "t2i_adapter": "controlnet"}

# (node class, input name) -> model folder whose file names fill that combo.
# Extend it (``FOLDER_INPUTS[("MyLoader", "name")] = "my_folder"``) for custom nodes.
FOLDER_INPUTS: dict[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("CreateHookModelAsLora", "ckpt_name"): "checkpoints",
    ("CreateHookModelAsLoraModelOnly", "ckpt_name"): "checkpoints",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("CreateHookLora", "lora_name"): "loras",
    ("CreateHookLoraModelOnly", "lora_name"): "loras",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name1"): "text_encoders",
    ("TripleCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name1"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name2"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name4"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("GLIGENLoader", "gligen_name"): "gligen",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    ("ModelPatchLoader", "name"): "model_patches",
    # common custom-node packs (only present when given through extra_nodes)
    ("IPAdapterModelLoader", "ipadapter_file"): "ipadapter",
    ("IPAdapterUnifiedLoader", "ipadapter_file"): "ipadapter",
    ("UltralyticsDetectorProvider", "model_name"): "ultralytics",
    ("SAMLoader", "model_name"): "sams",
}

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}

_BASE_INFO: dict[str, Any] | None = None


def base_object_info() -> dict[str, Any]:
    """The recorded /object_info (loaded once, never mutated)."""
    global _BASE_INFO
    if _BASE_INFO is None:
        _BASE_INFO = json.loads(OBJECT_INFO_FILE.read_text(encoding="utf-8"))
    return _BASE_INFO


def normalize_models(models: dict[str, list[str]] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for folder, names in (models or {}).items():
        folder = FOLDER_ALIASES.get(folder, folder)
        out.setdefault(folder, [])
        out[folder].extend(str(n) for n in names)
    return {k: sorted(set(v)) for k, v in out.items()}


def input_files(input_dir: Path) -> list[str]:
    """What LoadImage lists: image files at the top of the input folder, sorted."""
    try:
        names = [e.name for e in os.scandir(input_dir) if e.is_file()]
    except OSError:
        return []
    return sorted(n for n in names if Path(n).suffix.lower() in IMAGE_EXTENSIONS)


def build_object_info(models: dict[str, list[str]], extra_nodes: dict[str, Any],
                      remove_nodes: set[str], input_dir: Path) -> dict[str, Any]:
    """A fresh /object_info: recorded nodes + extras - removed, combos filled from models."""
    base = base_object_info()
    info: dict[str, Any] = {k: v for k, v in base.items() if k not in remove_nodes}
    for name, entry in extra_nodes.items():
        if name in remove_nodes:
            continue
        entry = copy.deepcopy(entry)
        entry.setdefault("name", name)
        entry.setdefault("display_name", name)
        entry.setdefault("description", "")
        entry.setdefault("python_module", "custom_nodes.fake_pack")
        entry.setdefault("category", "custom")
        entry.setdefault("output_node", False)
        entry.setdefault("input", {"required": {}})
        entry.setdefault("output", [])
        entry.setdefault("output_is_list", [False] * len(entry["output"]))
        entry.setdefault("output_name", list(entry["output"]))
        entry.setdefault("input_order", {cat: list(v) for cat, v in entry["input"].items()})
        info[name] = entry

    def patch(node: str, inp: str, values: list[str]) -> None:
        if node not in info:
            return
        entry = info[node]
        for cat in ("required", "optional"):
            cfg = entry.get("input", {}).get(cat, {}).get(inp)
            if cfg is None:
                continue
            new_entry = dict(entry)
            new_input = dict(entry["input"])
            new_cat = dict(new_input[cat])
            cfg = list(cfg)
            if cfg and cfg[0] == "COMBO":
                extra = dict(cfg[1]) if len(cfg) > 1 else {}
                extra["options"] = list(values)
                cfg[1:] = [extra]
            else:
                cfg[0] = list(values)
            new_cat[inp] = cfg
            new_input[cat] = new_cat
            new_entry["input"] = new_input
            info[node] = entry = new_entry

    for (node, inp), folder in FOLDER_INPUTS.items():
        if folder == "vae":
            patch(node, inp, list(models.get("vae", [])) + ["pixel_space"])
        elif folder in models:
            patch(node, inp, list(models[folder]))
    patch("LoadImage", "image", input_files(input_dir))
    return info
