"""Tiny random Flux-like (dev / schnell) and Chroma-like models for trainer tests.

Nothing is downloaded: every config is written in code and the tokenizers are built locally
(a byte-level CLIP BPE vocabulary and a small T5-style unigram ``tokenizer.json``), then
loaded back with ``from_pretrained(folder)`` exactly like the real ones.

* :func:`build_flux` saves a diffusers folder like ``black-forest-labs/FLUX.1-dev`` (or
  ``-schnell``): transformer, VAE, CLIP-L + T5 text encoders, both tokenizers, scheduler.
* :func:`build_chroma` saves a folder like ``lodestones/Chroma1-HD`` (T5 only).
* :func:`build_comfy_install` lays the same model out the way a ComfyUI install holds it:
  ``models/diffusion_models/<name>.safetensors`` (one file), ``models/vae/ae.safetensors``
  (original BFL/LDM key layout, as the real file), ``models/text_encoders/clip_l.safetensors``
  / ``t5xxl_fp16.safetensors`` (transformers layout, as the real files) and the tokenizer
  folders ``comfy/sd1_tokenizer`` and ``comfy/text_encoders/t5_tokenizer``.
* :func:`build_bundled_checkpoint` writes an all-in-one checkpoint (transformer + ``vae.*`` +
  ``text_encoders.*``); :func:`write_config_dir` the tiny counterpart of a shipped config
  folder.

Sizes: 64x64 images -> 8x8 latents (4 channels) -> 16 packed tokens of 16 channels; widths 32.
The transformer single files are in diffusers layout: diffusers' BFL-layout
(``double_blocks.*``) converters hard-code a width of 3072, so a tiny BFL file cannot be
loaded.
"""

from __future__ import annotations

import json
import string
import warnings
from pathlib import Path

import torch

TEXT_DIM = 32          # CLIP hidden size (= pooled projection) and T5 d_model (= joint dim)
CLIP_MERGES = [("p", "h"), ("ph", "o"), ("s", "k"), ("sk", "s</w>"), ("o", "f</w>")]
T5_WORDS = ["a", "photo", "of", "person", "portrait", "red", "square", "and", "blue", "disc",
            "the", "cat", "sks", "woman", "man", "smiling", "standing", "in", "park"]

# Real FLUX.1 / Chroma scheduler settings (the sampler and timestep shift read these).
FLUX_DEV_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096,
                      "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
                      "use_dynamic_shifting": True}
FLUX_SCHNELL_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096,
                          "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 1.0,
                          "use_dynamic_shifting": False}


# ------------------------------------------------------------------------------ tokenizers


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    codes, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def make_clip_tokenizer(folder: Path) -> int:
    """A tiny CLIP BPE tokenizer (vocab.json, merges.txt, configs) in ``folder``, laid out like
    ComfyUI's ``comfy/sd1_tokenizer``. Returns the vocabulary size."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for ch in _byte_chars():
            vocab[ch + suffix] = len(vocab)
    for a, b in CLIP_MERGES:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in CLIP_MERGES), encoding="utf-8")
    tok = CLIPTokenizer.from_pretrained(str(folder), model_max_length=77,
                                        pad_token="<|endoftext|>")
    tok.save_pretrained(str(folder))
    return len(vocab)


def make_t5_tokenizer(folder: Path) -> int:
    """A tiny T5-style unigram tokenizer (``tokenizer.json`` + config, as in ComfyUI's
    ``comfy/text_encoders/t5_tokenizer``): pad 0, eos 1, unk 2. Returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    folder.mkdir(parents=True, exist_ok=True)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    pieces += [("\u2581" + w, -1.0) for w in dict.fromkeys(T5_WORDS)]
    pieces += [(c, -5.0) for c in string.ascii_letters + string.digits + ",.!?'-:;()"]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "T5Tokenizer", "pad_token": "<pad>", "eos_token": "</s>",
              "unk_token": "<unk>", "extra_ids": 0, "model_max_length": 512}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return len(pieces)


# ------------------------------------------------------------------------------ components


def clip_text_model(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, projection_dim=TEXT_DIM,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
        hidden_act="quick_gelu"))


def t5_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(
        vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
        is_encoder_decoder=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))


def flux_vae():
    """4 blocks (scale factor 8 like the real one), 4 latent channels, Flux shift/scale."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=64,
        scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
        use_post_quant_conv=False)


def flux_transformer(guidance_embeds: bool):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=TEXT_DIM, pooled_projection_dim=TEXT_DIM,
        guidance_embeds=guidance_embeds, axes_dims_rope=[4, 4, 8])


def chroma_transformer():
    from diffusers import ChromaTransformer2DModel

    # diffusers 0.42.1 builds Chroma's rotary embedding through a deprecated import path of
    # its own (a FutureWarning on every construction, nothing we can change).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`FluxPosEmbed` is deprecated",
                                category=FutureWarning)
        return ChromaTransformer2DModel(
            patch_size=1, in_channels=16, num_layers=2, num_single_layers=2,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=TEXT_DIM,
            axes_dims_rope=[4, 4, 8], approximator_num_channels=16, approximator_hidden_dim=32,
            approximator_layers=1)


# --------------------------------------------------------------------------------- folders


def build_flux(folder: Path, variant: str = "dev", seed: int = 0) -> Path:
    """Save a tiny FLUX.1-like diffusers folder (``variant`` "dev": guidance embedding;
    "schnell": none) at ``folder`` and return it."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTokenizer, T5Tokenizer

    if variant not in ("dev", "schnell"):
        raise ValueError(variant)
    torch.manual_seed(seed)
    clip_vocab = make_clip_tokenizer(folder / "tokenizer")
    t5_vocab = make_t5_tokenizer(folder / "tokenizer_2")
    sched = FLUX_DEV_SCHEDULER if variant == "dev" else FLUX_SCHNELL_SCHEDULER
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**sched), vae=flux_vae(),
        text_encoder=clip_text_model(clip_vocab),
        tokenizer=CLIPTokenizer.from_pretrained(str(folder / "tokenizer")),
        text_encoder_2=t5_encoder(t5_vocab),
        tokenizer_2=T5Tokenizer.from_pretrained(str(folder / "tokenizer_2")),
        transformer=flux_transformer(guidance_embeds=variant == "dev"))
    pipe.save_pretrained(str(folder))
    return folder


def build_chroma(folder: Path, seed: int = 0) -> Path:
    """Save a tiny Chroma-like diffusers folder at ``folder`` and return it."""
    from diffusers import ChromaPipeline, FlowMatchEulerDiscreteScheduler
    from transformers import T5Tokenizer

    torch.manual_seed(seed)
    t5_vocab = make_t5_tokenizer(folder / "tokenizer")
    pipe = ChromaPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_DEV_SCHEDULER), vae=flux_vae(),
        text_encoder=t5_encoder(t5_vocab),
        tokenizer=T5Tokenizer.from_pretrained(str(folder / "tokenizer")),
        transformer=chroma_transformer())
    pipe.save_pretrained(str(folder))
    return folder


def _state_dict_file(src: Path, dst: Path, prefix: str = "") -> Path:
    """Copy the ``*.safetensors`` weights of a saved component folder into one file."""
    from safetensors.torch import load_file, save_file

    tensors: dict[str, torch.Tensor] = {}
    for part in sorted(src.glob("*.safetensors")):
        tensors.update(load_file(str(part)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file({prefix + k: v.contiguous() for k, v in tensors.items()}, str(dst))
    return dst


def build_comfy_install(root: Path, model_dir: Path, name: str = "tiny-flux") -> Path:
    """Lay the diffusers folder ``model_dir`` (from :func:`build_flux` / :func:`build_chroma`)
    out like a ComfyUI install at ``root``; return the diffusion-model file."""
    index = json.loads((model_dir / "model_index.json").read_text(encoding="utf-8"))
    chroma = index["_class_name"] == "ChromaPipeline"
    models = root / "models"
    model_file = _state_dict_file(model_dir / "transformer",
                                  models / "diffusion_models" / f"{name}.safetensors")
    write_original_layout_vae(models / "vae" / "ae.safetensors", model_dir)
    t5_dir = model_dir / ("text_encoder" if chroma else "text_encoder_2")
    _state_dict_file(t5_dir, models / "text_encoders" / "t5xxl_fp16.safetensors")
    t5_tok = model_dir / ("tokenizer" if chroma else "tokenizer_2")
    comfy_t5 = root / "comfy" / "text_encoders" / "t5_tokenizer"
    comfy_t5.mkdir(parents=True, exist_ok=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (comfy_t5 / f).write_bytes((t5_tok / f).read_bytes())
    if not chroma:
        _state_dict_file(model_dir / "text_encoder",
                         models / "text_encoders" / "clip_l.safetensors")
        sd1 = root / "comfy" / "sd1_tokenizer"       # ComfyUI ships vocab.json + merges.txt only
        sd1.mkdir(parents=True, exist_ok=True)
        for f in ("vocab.json", "merges.txt", "tokenizer_config.json"):
            (sd1 / f).write_bytes((model_dir / "tokenizer" / f).read_bytes())
    return model_file


def build_bundled_checkpoint(path: Path, model_dir: Path) -> Path:
    """One file holding the transformer (diffusers layout), ``vae.*`` (original layout) and
    the text encoders
    under ComfyUI's ``text_encoders.clip_l.transformer.`` / ``text_encoders.t5xxl.transformer.``
    prefixes, like the all-in-one fp8 checkpoints made for ComfyUI."""
    from safetensors.torch import load_file, save_file

    index = json.loads((model_dir / "model_index.json").read_text(encoding="utf-8"))
    chroma = index["_class_name"] == "ChromaPipeline"
    parts = {"transformer": "", "vae": "vae.",
             ("text_encoder" if chroma else "text_encoder_2"): "text_encoders.t5xxl.transformer."}
    if not chroma:
        parts["text_encoder"] = "text_encoders.clip_l.transformer."
    tensors: dict[str, torch.Tensor] = {}
    for sub, prefix in parts.items():
        for f in sorted((model_dir / sub).glob("*.safetensors")):
            state = load_file(str(f))
            if sub == "vae":
                config = json.loads((model_dir / "vae" / "config.json").read_text("utf-8"))
                state = vae_to_original_layout(state, len(config["block_out_channels"]))
            tensors.update({prefix + k: v.contiguous() for k, v in state.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def write_config_dir(model_dir: Path, dst: Path) -> Path:
    """The JSON configs of a tiny model folder without weights or tokenizers: the tiny
    counterpart of the shipped ``training_runtime/configs/<family>`` folders."""
    for src in model_dir.rglob("*.json"):
        rel = src.relative_to(model_dir)
        if rel.parts[0].startswith("tokenizer"):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(src.read_bytes())
    return dst


def vae_to_original_layout(state: dict[str, torch.Tensor],
                           n_blocks: int) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL names -> the original (LDM / BFL ``ae.safetensors``) names."""
    import re

    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        m = re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(.*)", new)
        if m:
            side, kind, i, rest = m.group(1), m.group(2), int(m.group(3)), m.group(4)
            idx = i if kind == "down" else n_blocks - 1 - i
            rest = re.sub(r"^resnets\.(\d+)\.", r"block.\1.", rest)
            rest = re.sub(r"^(down|up)samplers\.0\.", r"\1sample.", rest)
            new = f"{side}.{kind}.{idx}.{rest}"
        m = re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", new)
        if m:
            new = f"{m.group(1)}.mid.block_{int(m.group(2)) + 1}.{m.group(3)}"
        m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", new)
        if m:
            new = f"{m.group(1)}.mid.attn_1.{attn[m.group(2)]}.{m.group(3)}"
            if m.group(3) == "weight" and m.group(2) != "group_norm":
                value = value[:, :, None, None]
        out[new] = value
    return out


def write_original_layout_vae(path: Path, model_dir: Path) -> Path:
    """The tiny model's VAE as an original-layout file, like BFL's / ComfyUI's ae.safetensors."""
    from safetensors.torch import load_file, save_file

    config = json.loads((model_dir / "vae" / "config.json").read_text(encoding="utf-8"))
    state = load_file(str(next((model_dir / "vae").glob("*.safetensors"))))
    converted = vae_to_original_layout(state, len(config["block_out_channels"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in converted.items()}, str(path))
    return path
