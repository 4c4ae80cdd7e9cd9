"""Checks of the built-in trainer's LoRA files, shared by the trainer tests.

* Key formats: kohya (``lora_unet_<original layout name>.lora_down/lora_up.weight`` + a
  ``.alpha`` scalar) for SD1.5/SDXL; diffusers (``transformer.<module>.lora_A/lora_B.weight``
  + a per-module ``.alpha`` scalar) for Flux/Chroma. Both must carry the real alpha, not
  the rank.
* Metadata: the kohya ``ss_*`` and ``modelspec.*`` header fields.
* Effect: the trained peft adapter (restored from a checkpoint folder onto a fresh base) and
  the LoRA file applied to another fresh base, the way ComfyUI applies it (``W += alpha/rank
  · up @ down``, independently of the trainer's own code), on a fixed random input.

Everything imports torch/diffusers/peft lazily: importing this module is free.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

KOHYA_PREFIX = "lora_unet_"
FLUX_PREFIX = "transformer."
# diffusers' UNet block names: a kohya file must use the original (LDM) names instead
DIFFUSERS_UNET_WORDS = ("down_blocks", "up_blocks", "mid_block")


def load_lora(path: Path | str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def read_metadata(path: Path | str) -> dict[str, str]:
    from isengard_desktop.training_runtime.lora_file import read_metadata as read

    return read(Path(path))


# ----------------------------------------------------------------------------- key formats


def kohya_modules(lora: dict[str, torch.Tensor]) -> set[str]:
    """The module names of a kohya LoRA (``lora_unet_…`` without the tensor suffix)."""
    return {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0]
            for k in lora}


def assert_kohya_keys(lora: dict[str, torch.Tensor], rank: int, alpha: float) -> set[str]:
    """Only ``lora_unet_`` keys in the original (LDM) layout, each module with down, up and
    the real alpha. Returns the module names."""
    assert lora and all(k.startswith(KOHYA_PREFIX) for k in lora), sorted(lora)[:5]
    assert not any(w in k for k in lora for w in DIFFUSERS_UNET_WORDS), \
        "diffusers block names in a kohya file"
    modules = kohya_modules(lora)
    assert set(lora) == {f"{m}.{s}" for m in modules
                         for s in ("lora_down.weight", "lora_up.weight", "alpha")}
    for m in modules:
        assert lora[f"{m}.alpha"].item() == alpha, m  # the real alpha, not the rank
        assert lora[f"{m}.lora_down.weight"].shape[0] == rank, m
        assert lora[f"{m}.lora_up.weight"].shape[1] == rank, m
    return modules


def flux_modules(lora: dict[str, torch.Tensor]) -> set[str]:
    """The transformer module paths of a diffusers-format Flux/Chroma LoRA."""
    return {k[len(FLUX_PREFIX):-len(".lora_A.weight")] for k in lora
            if k.endswith(".lora_A.weight")}


def assert_flux_keys(lora: dict[str, torch.Tensor], rank: int, alpha: float) -> set[str]:
    """``transformer.<module>.lora_A/lora_B.weight`` + a float32 scalar ``.alpha`` holding the
    real alpha for every module, nothing else. Returns the module paths."""
    modules = flux_modules(lora)
    assert modules
    assert set(lora) == {f"{FLUX_PREFIX}{m}.{s}" for m in modules
                         for s in ("lora_A.weight", "lora_B.weight", "alpha")}
    for m in modules:
        a = lora[f"{FLUX_PREFIX}{m}.alpha"]
        assert a.dtype == torch.float32 and a.ndim == 0 and float(a) == alpha, m
        assert lora[f"{FLUX_PREFIX}{m}.lora_A.weight"].shape[0] == rank, m
        assert lora[f"{FLUX_PREFIX}{m}.lora_B.weight"].shape[1] == rank, m
    return modules


# -------------------------------------------------------------------------------- metadata


def assert_lora_metadata(meta: dict[str, str], *, output_name: str, rank: int, alpha: float,
                         steps: int, architecture: str, base_model_version: str,
                         trigger: str, title: str | None = None) -> None:
    """The header fields A1111/Forge, ComfyUI managers and civitai read."""
    assert meta["ss_output_name"] == output_name
    assert meta["ss_network_module"] == "networks.lora"
    assert meta["ss_network_dim"] == str(rank)
    assert float(meta["ss_network_alpha"]) == alpha
    assert meta["ss_base_model_version"] == base_model_version
    assert meta["ss_steps"] == str(steps)
    assert meta["modelspec.architecture"] == architecture
    assert meta["modelspec.trigger_phrase"] == trigger
    if title is not None:
        assert meta["modelspec.title"] == title
    assert meta["software.name"] == "Isengard Desktop" and meta["software.version"]


# ------------------------------------------------------------------ the trained adapter


def load_trained_adapter(model: torch.nn.Module, checkpoint: Path) -> torch.nn.Module:
    """Put the peft LoRA saved in a trainer checkpoint folder (``adapter.safetensors``; rank,
    alpha and target modules from its ``manifest.json``) onto ``model``, as training had it."""
    import json

    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict

    from isengard_desktop.training_runtime.loop import ADAPTER_FILE

    manifest = json.loads((Path(checkpoint) / "manifest.json").read_text(encoding="utf-8"))
    model.add_adapter(LoraConfig(r=int(manifest["rank"]), lora_alpha=float(manifest["alpha"]),
                                 target_modules=manifest["target_modules"]))
    state = load_lora(Path(checkpoint) / ADAPTER_FILE)
    result = set_peft_model_state_dict(model, state)
    assert not getattr(result, "unexpected_keys", None), result.unexpected_keys[:3]
    missing = [k for k in getattr(result, "missing_keys", None) or [] if "lora_" in k]
    assert not missing, missing[:3]
    return model.eval()


def lora_wrapped(model: torch.nn.Module) -> set[str]:
    """Module paths of ``model`` that carry a peft LoRA layer."""
    return {n for n, m in model.named_modules() if hasattr(m, "lora_A")}


def assert_same_effect(base: torch.Tensor, trained: torch.Tensor, applied: torch.Tensor,
                       atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """The file applied gives the trained adapter's output, and training changed it."""
    assert (trained - base).abs().max() > 1e-3, "training did not change the model"
    assert torch.allclose(applied, trained, atol=atol, rtol=rtol), \
        (applied - trained).abs().max()


# ----------------------------------------------------------------------------------- UNets


def unet_forward(unet: torch.nn.Module, sdxl: bool, seed: int = 0) -> torch.Tensor:
    """The UNet's output on a fixed random input (tiny models: 8x8 latents)."""
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, unet.config.in_channels, 8, 8, generator=g)
    t = torch.tensor([10, 700])
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    extra: dict[str, Any] = {}
    if sdxl:
        pooled = (unet.config.projection_class_embeddings_input_dim
                  - 6 * unet.config.addition_time_embed_dim)
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, pooled, generator=g),
            "time_ids": torch.tensor([[64., 64, 0, 0, 64, 64]] * 2)}
    with torch.no_grad():
        return unet(sample, t, encoder_hidden_states=ctx, **extra).sample


def assert_kohya_lora_acts_like_adapter(model_dir: Path, checkpoint: Path,
                                        lora: dict[str, torch.Tensor], sdxl: bool) -> None:
    """The kohya file, applied like ComfyUI does, changes the UNet's output exactly as the
    trained peft adapter (restored from ``checkpoint``) does."""
    from diffusers import UNet2DConditionModel

    from isengard_desktop.training_runtime import tiny_models

    def load():
        return UNet2DConditionModel.from_pretrained(str(Path(model_dir) / "unet"),
                                                    local_files_only=True).eval()

    base = unet_forward(load(), sdxl)
    adapter = load_trained_adapter(load(), checkpoint)
    trained = unet_forward(adapter, sdxl)
    assert len(lora_wrapped(adapter)) == len(kohya_modules(lora))  # every layer exported

    patched_unet = load()
    patched, unused = tiny_models.apply_kohya_lora_like_comfyui(patched_unet, lora)
    assert unused == set(), sorted(unused)[:5]  # ComfyUI would say "lora key not loaded"
    patched_unet.load_state_dict(patched)
    assert_same_effect(base, trained, unet_forward(patched_unet, sdxl))


# ---------------------------------------------------------------------------- Flux / Chroma


def flux_forward(model: torch.nn.Module, seed: int = 5, tokens: int = 7) -> torch.Tensor:
    """A Flux/Chroma transformer's output on a fixed random input: 16 packed image tokens
    (an 8x8 latent), ``tokens`` text tokens; pooled text and guidance when the model takes
    them (Flux; guidance only for dev)."""
    from isengard_desktop.training_runtime.families._flux_shared import image_ids

    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    kw: dict[str, Any] = {
        "hidden_states": torch.randn(1, 16, cfg.in_channels, generator=g),
        "encoder_hidden_states": torch.randn(1, tokens, cfg.joint_attention_dim, generator=g),
        "timestep": torch.tensor([0.6]), "img_ids": image_ids(8, 8, torch.device("cpu"),
                                                              torch.float32),
        "txt_ids": torch.zeros(tokens, 3), "return_dict": False}
    if "pooled_projections" in inspect.signature(model.forward).parameters:
        kw["pooled_projections"] = torch.randn(1, cfg.pooled_projection_dim, generator=g)
    if getattr(cfg, "guidance_embeds", False):
        kw["guidance"] = torch.tensor([3.5])
    with torch.no_grad():
        return model(**kw)[0]


def apply_flux_lora(model: torch.nn.Module, lora: dict[str, torch.Tensor]) -> None:
    """Merge a diffusers-format LoRA into ``model`` in place the way ComfyUI does:
    ``W += alpha/rank · B @ A`` per module, alpha read from the ``.alpha`` tensor."""
    with torch.no_grad():
        for m in flux_modules(lora):
            layer = model.get_submodule(m)
            a = lora[f"{FLUX_PREFIX}{m}.lora_A.weight"]
            b = lora[f"{FLUX_PREFIX}{m}.lora_B.weight"]
            scale = float(lora[f"{FLUX_PREFIX}{m}.alpha"]) / a.shape[0]
            delta = scale * (b.double() @ a.double())
            layer.weight.copy_((layer.weight.double() + delta).to(layer.weight.dtype))


def _model_index(model_dir: Path) -> dict[str, Any]:
    import json

    return json.loads((Path(model_dir) / "model_index.json").read_text(encoding="utf-8"))


def load_transformer(model_dir: Path) -> torch.nn.Module:
    """A fresh copy of a diffusers folder's transformer (Flux or Chroma, as it names it)."""
    import diffusers

    cls = getattr(diffusers, _model_index(model_dir)["transformer"][1])
    return cls.from_pretrained(str(Path(model_dir) / "transformer"), local_files_only=True).eval()


def flux_output_via_diffusers(model_dir: Path, lora_path: Path) -> torch.Tensor:
    """:func:`flux_forward` of a fresh transformer with the LoRA file loaded by diffusers' own
    Flux/Chroma LoRA loader (which reads the ``.alpha`` tensors as network alphas)."""
    import diffusers

    pipe_cls = getattr(diffusers, _model_index(model_dir)["_class_name"])
    state, alphas = pipe_cls.lora_state_dict(str(lora_path), return_alphas=True)
    model = load_transformer(model_dir)
    pipe_cls.load_lora_into_transformer(state, network_alphas=alphas, transformer=model)
    return flux_forward(model)


def assert_flux_lora_acts_like_adapter(model_dir: Path, checkpoint: Path,
                                       lora_path: Path) -> None:
    """The diffusers-format file, merged per module with its alpha (as ComfyUI does) and
    loaded by diffusers' own loader, changes the transformer's output exactly as the trained
    peft adapter (restored from ``checkpoint``) does."""
    lora = load_lora(lora_path)
    base = flux_forward(load_transformer(model_dir))
    adapter = load_trained_adapter(load_transformer(model_dir), checkpoint)
    trained = flux_forward(adapter)
    assert lora_wrapped(adapter) == flux_modules(lora)  # every layer exported, by its name
    fresh = load_transformer(model_dir)
    apply_flux_lora(fresh, lora)
    assert_same_effect(base, trained, flux_forward(fresh))
    assert_same_effect(base, trained, flux_output_via_diffusers(model_dir, lora_path))
