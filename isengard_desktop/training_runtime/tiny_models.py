"""Tiny random SD1.5-like and SDXL-like models (a few MB, built in ~1 s) for the self-test
and the trainer tests.

Nothing is downloaded: configs are written in code and the CLIP tokenizers are built from a
byte-level vocabulary (each byte is a token, plus a few merges), which ``CLIPTokenizer``
loads with ``from_pretrained(folder)`` like a real one. The UNets keep
``layers_per_block=2`` so the original-layout (LDM) key mapping of the real models applies.

* :func:`build_sd15` / :func:`build_sdxl` save a diffusers folder (``model_index.json`` +
  component folders) and return it.
* :func:`build_sd15_single_file` also writes the same SD1.5 model as one ``.safetensors``
  checkpoint in the original layout (``model.diffusion_model.*``, ``first_stage_model.*``,
  ``cond_stage_model.transformer.text_model.*``), which loads offline only with ``config=``.
* :func:`make_dataset` writes small learnable images with caption sidecars.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw

TOKEN_MERGES = [("p", "h"), ("ph", "o"), ("t", "o</w>"), ("s", "k"), ("sk", "s</w>")]
TEXT_DIM = 32


def _bytes_to_unicode() -> list[str]:
    """The byte -> printable character table of byte-level BPE (as CLIP uses)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def make_clip_tokenizer(folder: Path) -> int:
    """Write a tiny CLIP tokenizer (vocab.json, merges.txt, configs) to ``folder``; return
    its vocabulary size."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab[c + suffix] = len(vocab)
    for a, b in TOKEN_MERGES:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in TOKEN_MERGES), encoding="utf-8")
    tok = CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)
    tok.save_pretrained(str(folder))
    return len(vocab)


def _text_config(vocab_size: int, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=37,
                          num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
                          projection_dim=TEXT_DIM, bos_token_id=vocab_size - 2,
                          eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
                          hidden_act="quick_gelu", **extra)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 16, 16, 16), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1,
                         latent_channels=4, norm_num_groups=4, sample_size=64)


def _scheduler(prediction_type: str):
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         prediction_type=prediction_type)


def sd15_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
        layers_per_block=2, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=TEXT_DIM,
        attention_head_dim=8, norm_num_groups=8)


def sdxl_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
        layers_per_block=2, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=6 * 8 + TEXT_DIM,
        cross_attention_dim=2 * TEXT_DIM, norm_num_groups=8)


def build_sd15(folder: Path, prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """Save a tiny SD1.5-like diffusers model folder at ``folder``."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    vocab = make_clip_tokenizer(folder / "tokenizer")
    pipe = StableDiffusionPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(vocab)),
        tokenizer=CLIPTokenizer.from_pretrained(str(folder / "tokenizer")), unet=sd15_unet(),
        scheduler=_scheduler(prediction_type), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.save_pretrained(str(folder))  # type: ignore[attr-defined]  # diffusers' lazy stubs
    return folder


def build_sdxl(folder: Path, prediction_type: str = "v_prediction", seed: int = 0) -> Path:
    """Save a tiny SDXL-like diffusers model folder at ``folder``."""
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    vocab = make_clip_tokenizer(folder / "tokenizer")
    make_clip_tokenizer(folder / "tokenizer_2")
    pipe = StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(vocab)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(vocab)),
        tokenizer=CLIPTokenizer.from_pretrained(str(folder / "tokenizer")),
        tokenizer_2=CLIPTokenizer.from_pretrained(str(folder / "tokenizer_2"), pad_token="!"),
        unet=sdxl_unet(), scheduler=_scheduler(prediction_type), force_zeros_for_empty_prompt=True)
    pipe.save_pretrained(str(folder))  # type: ignore[attr-defined]  # diffusers' lazy stubs
    return folder


# ----------------------------------------------------------------------- single-file SD1.5


def _vae_to_ldm(sd: dict[str, torch.Tensor], n_blocks: int) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL state dict -> original (LDM ``first_stage_model``) names."""
    out = {}
    res = {"conv_shortcut": "nin_shortcut"}
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for key, value in sd.items():
        parts = key.split(".")
        new = key
        if parts[1] in ("down_blocks", "up_blocks"):
            side, kind, i = parts[0], parts[1], int(parts[2])
            idx = i if kind == "down_blocks" else n_blocks - 1 - i
            rest = ".".join(parts[3:])
            word = "down" if kind == "down_blocks" else "up"
            if rest.startswith("resnets."):
                j, tail = rest.split(".", 2)[1:]
                module, param = tail.rsplit(".", 1)
                tail = f"{res.get(module, module)}.{param}"
                new = f"{side}.{word}.{idx}.block.{j}.{tail}"
            else:  # downsamplers.0.conv / upsamplers.0.conv
                sampler = "downsample" if kind == "down_blocks" else "upsample"
                new = f"{side}.{word}.{idx}.{sampler}.conv.{parts[-1]}"
        elif parts[1] == "mid_block":
            side = parts[0]
            if parts[2] == "resnets":
                tail = ".".join(parts[4:-1])
                new = f"{side}.mid.block_{int(parts[3]) + 1}.{res.get(tail, tail)}.{parts[-1]}"
            else:
                tail = ".".join(parts[4:-1])
                new = f"{side}.mid.attn_1.{attn[tail]}.{parts[-1]}"
                if attn[tail] in ("q", "k", "v", "proj_out") and parts[-1] == "weight":
                    value = value[:, :, None, None]
        elif parts[1] == "conv_norm_out":
            new = f"{parts[0]}.norm_out.{parts[-1]}"
        out[new] = value
    return out


def build_sd15_single_file(path: Path, model_dir: Path) -> Path:
    """Write the SD1.5-like model at ``model_dir`` as one original-layout checkpoint."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    from isengard_desktop.training_runtime.families.unet_keys import unet_state_dict_to_ldm

    unet = UNet2DConditionModel.from_pretrained(str(model_dir / "unet"), local_files_only=True)
    vae = AutoencoderKL.from_pretrained(str(model_dir / "vae"), local_files_only=True)
    te = CLIPTextModel.from_pretrained(str(model_dir / "text_encoder"), local_files_only=True)
    sd: dict[str, torch.Tensor] = {}
    for k, v in unet_state_dict_to_ldm(unet.state_dict(), unet.config).items():
        sd[f"model.diffusion_model.{k}"] = v
    for k, v in _vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels)).items():
        sd[f"first_stage_model.{k}"] = v
    for k, v in te.state_dict().items():
        k = k.removeprefix("text_model.")
        sd[f"cond_stage_model.transformer.text_model.{k}"] = v
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


# ----------------------------------------------------------------------------- dataset


def make_dataset(folder: Path, count: int = 4, size: tuple[int, int] = (64, 64),
                 captions: bool = True, trigger_in_caption: bool = False) -> Path:
    """``count`` small learnable images (smooth gradient + square + disc, varied per index)
    with ``<stem>.txt`` captions. The trigger word is left out of captions unless asked."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(count):
        img = Image.new("RGB", size)
        px = img.load()
        assert px is not None   # a new in-memory image always has pixels
        for y in range(h):
            for x in range(w):
                px[x, y] = (int(255 * x / w), int(255 * y / h),
                            int(128 + 100 * math.sin(i + x / 9)))
        draw = ImageDraw.Draw(img)
        s = min(w, h)
        draw.rectangle((s // 8 + i * 3, s // 8, s // 2 + i * 3, s // 2), fill=(240, 30, 30))
        draw.ellipse((s // 2, s // 2 - i * 2, s - 4, s - 4 - i * 2), fill=(20, 20, 220))
        img.save(folder / f"img_{i:02d}.png")
        if captions:
            text = f"{'sks, ' if trigger_in_caption else ''}a red square and a blue disc {i}"
            (folder / f"img_{i:02d}.txt").write_text(text, encoding="utf-8")
    return folder


# ----------------------------------------------------------------- applying a kohya LoRA


def apply_kohya_lora_like_comfyui(unet, lora: dict[str, torch.Tensor]) -> tuple[dict, set[str]]:
    """Patch ``unet``'s weights with a kohya LoRA the way ComfyUI does, independently of the
    trainer's own inverse mapping: ComfyUI names each weight of the original-layout model
    ``lora_unet_<key with _>`` and adds ``alpha/rank · up @ down`` to it. The patched
    original-layout weights go back to diffusers names through diffusers' own converter.

    Returns (diffusers state dict, LoRA keys that matched no weight)."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    from isengard_desktop.training_runtime.families.unet_keys import unet_state_dict_to_ldm

    ldm = unet_state_dict_to_ldm(unet.state_dict(), unet.config)
    key_map = {"lora_unet_" + k[: -len(".weight")].replace(".", "_"): k
               for k in ldm if k.endswith(".weight")}
    used: set[str] = set()
    for name, weight_key in key_map.items():
        up = lora.get(f"{name}.lora_up.weight")
        if up is None:
            continue
        down = lora[f"{name}.lora_down.weight"]
        scale = float(lora[f"{name}.alpha"]) / down.shape[0]
        weight = ldm[weight_key]
        diff = (up.flatten(1).double() @ down.flatten(1).double()).reshape(weight.shape)
        ldm[weight_key] = (weight.double() + scale * diff).to(weight.dtype)
        used |= {f"{name}.lora_up.weight", f"{name}.lora_down.weight", f"{name}.alpha"}
    back = convert_ldm_unet_checkpoint({f"model.diffusion_model.{k}": v for k, v in ldm.items()},
                                       dict(unet.config))
    return back, set(lora) - used
