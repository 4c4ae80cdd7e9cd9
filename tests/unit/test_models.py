"""Header-only model detection on small files built here, one per family."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from isengard_desktop.core.models import (HeaderError, detect_file, family_from_header,
                                          read_safetensors_header, scan_model_folders)


def write_header_only(path: Path, tensors: dict[str, tuple[str, list[int]]],
                      metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file whose header declares ``tensors``; the data section is left out
    (the scanner never reads it), so a 'multi-GB' model is a few hundred bytes here."""
    header: dict = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


P = "model.diffusion_model."
SD15 = {P + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": ("F16", [320, 768]),
        P + "input_blocks.0.0.weight": ("F16", [320, 4, 3, 3])}
SDXL = {P + "label_emb.0.0.weight": ("F16", [1280, 2816]),
        P + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": ("F16", [640, 2048])}
FLUX_DEV = {"double_blocks.0.img_attn.norm.key_norm.scale": ("BF16", [128]),
            "img_in.weight": ("BF16", [3072, 64]), "guidance_in.in_layer.weight": ("BF16", [3072, 256])}
FLUX_SCHNELL = {"double_blocks.0.img_attn.norm.key_norm.scale": ("BF16", [128]),
                "img_in.weight": ("BF16", [3072, 64])}
CHROMA = {"distilled_guidance_layer.in_proj.weight": ("BF16", [5120, 64]),
          "double_blocks.0.img_attn.norm.key_norm.scale": ("BF16", [128]),
          "img_in.weight": ("BF16", [3072, 64])}
SD3 = {"joint_blocks.0.x_block.attn.qkv.weight": ("F16", [4608, 1536])}


@pytest.mark.parametrize("tensors,family,label", [
    (SD15, "sd15", "SD 1.5"), (SDXL, "sdxl", "SDXL"), (FLUX_DEV, "flux-dev", "Flux.1 dev"),
    (FLUX_SCHNELL, "flux-schnell", "Flux.1 schnell"), (CHROMA, "chroma", "Chroma"),
    (SD3, None, "unknown")])
def test_family_from_header_only(tmp_path, tensors, family, label):
    path = write_header_only(tmp_path / "m.safetensors", tensors, {"format": "pt"})
    info = detect_file(path)
    assert (info.family, info.label) == (family, label)
    assert info.size == path.stat().st_size


def test_prefixes_do_not_matter():
    header = {("first_stage_model." if "first" in k else "") + k.replace(P, "model.model."): v
              for k, v in {k: {"shape": s} for k, (_, s) in SDXL.items()}.items()}
    assert family_from_header(header) == "sdxl"


@pytest.mark.parametrize("data,why", [
    (b"", "too short"), (struct.pack("<Q", 10**12), "not plausible"),
    (struct.pack("<Q", 50) + b"{", "cut short"), (struct.pack("<Q", 4) + b"nope", "not valid JSON"),
])
def test_broken_files_are_named_not_raised(tmp_path, data, why):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(HeaderError, match=why):
        read_safetensors_header(path)
    info = detect_file(path)
    assert info.family is None and info.label.startswith("unreadable") and why in info.label


def test_scan_finds_files_and_diffusers_folders_and_skips_loras(tmp_path):
    a = tmp_path / "models"
    write_header_only(a / "checkpoints" / "dream.safetensors", SD15)
    write_header_only(a / "unet" / "flux1-dev.safetensors", FLUX_DEV)
    write_header_only(a / "loras" / "anna.safetensors",
                      {"lora_unet_down_blocks_0.lora_down.weight": ("F16", [4, 320]),
                       "lora_unet_down_blocks_0.alpha": ("F16", [])})
    pipe = a / "diffusers" / "sdxl-base"
    pipe.mkdir(parents=True)
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    write_header_only(pipe / "unet" / "diffusion_pytorch_model.safetensors", SDXL)
    flux = a / "diffusers" / "flux-s"
    (flux / "transformer").mkdir(parents=True)
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    (flux / "transformer" / "config.json").write_text(json.dumps({"guidance_embeds": False}))
    found = scan_model_folders([a, tmp_path / "missing-folder"])
    by_name = {m.path.name: m.family for m in found}
    assert by_name == {"dream.safetensors": "sd15", "sdxl-base": "sdxl",
                       "flux1-dev.safetensors": "flux-dev", "flux-s": "flux-schnell"}
    assert [m.family for m in found] == ["sd15", "sdxl", "flux-dev", "flux-schnell"]


def test_app_models_folder_in_comfyui_layout_lists_only_base_models(tmp_path):
    """Downloads land in the app's models folder by catalogue folder; the base-model scan
    (the same folder list the Training tab uses) finds the checkpoint and the Flux
    transformer and not the text encoders, VAE, LoRAs or detectors beside them."""
    from isengard_desktop.core.models import model_search_folders
    from isengard_desktop.core.models_catalogue import load_catalogue
    from isengard_desktop.core.paths import ensure_model_layout, resolve_paths

    cat = load_catalogue()
    models = resolve_paths().models
    ensure_model_layout(models)
    placed = {"sdxl-checkpoint": SDXL, "flux-dev-transformer": FLUX_DEV,
              "clip-l": {"text_model.encoder.layers.0.mlp.fc1.weight": ("F16", [3072, 768])},
              "flux-ae": {"decoder.conv_in.weight": ("F32", [512, 16, 3, 3])},
              "sdxl-vae": {"decoder.conv_in.weight": ("F32", [512, 4, 3, 3])}}
    for fid, tensors in placed.items():
        write_header_only(models / cat.files[fid].relative_path, tensors)
    found = scan_model_folders(model_search_folders(models, []))
    assert [(m.path.relative_to(models).as_posix(), m.family) for m in found] == [
        ("checkpoints/sd_xl_base_1.0.safetensors", "sdxl"),
        ("diffusion_models/flux1-dev.safetensors", "flux-dev")]
