"""Names of SD1.5/SDXL UNet layers in the original (LDM/SGM) layout, and kohya LoRA keys.

ComfyUI, A1111/Forge and kohya tools know a UNet by its original module names
(``input_blocks.4.1.transformer_blocks.0.attn1.to_q``); diffusers renames them
(``down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q``). A kohya LoRA key is the
original name with dots turned into underscores: ``lora_unet_input_blocks_4_1_…_to_q``.
ComfyUI builds exactly these names from its own model, so they load for SD1.5 and SDXL alike.

The mapping follows the original UNet's construction (``openaimodel.py``): ``input_blocks[0]``
is ``conv_in``; each level adds ``layers_per_block`` blocks ``[ResBlock, (SpatialTransformer)]``
and, except the last level, one ``[Downsample]``; ``middle_block`` is
``[ResBlock, SpatialTransformer, ResBlock]``; each up level has ``layers_per_block + 1``
blocks ``[ResBlock, (SpatialTransformer), (Upsample)]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KOHYA_PREFIX = "lora_unet_"

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_TOP = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _cfg(config: Any, name: str) -> Any:
    return config[name] if isinstance(config, Mapping) else getattr(config, name)


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    if head not in _RESNET:
        raise KeyError(rest)
    return _RESNET[head] + (f".{tail}" if tail else "")


def unet_module_to_ldm(name: str, config: Any) -> str:
    """The original-layout name of the diffusers UNet module (or parameter) ``name``.

    Raises ``KeyError`` for a name with no original counterpart (e.g. a container)."""
    layers = _cfg(config, "layers_per_block")
    if not isinstance(layers, int):
        raise KeyError(f"{name}: per-block layers_per_block {layers!r} is not supported")
    for prefix, ldm in _TOP.items():
        if name == prefix or name.startswith(prefix + "."):
            return ldm + name[len(prefix):]
    parts = name.split(".")
    if len(parts) < 4:
        raise KeyError(name)
    rest = ".".join(parts[4:])
    tail = f".{rest}" if rest else ""
    if parts[0] == "mid_block":
        # mid_block.resnets.0 / attentions.0 / resnets.1 -> middle_block.0 / .1 / .2
        kind, j = parts[1], int(parts[2])
        rest = ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * j}.{_resnet(rest)}"
        if kind == "attentions" and j == 0:
            return "middle_block.1" + (f".{rest}" if rest else "")
        raise KeyError(name)
    block, i, kind, j = parts[0], int(parts[1]), parts[2], int(parts[3])
    if block == "down_blocks":
        index = 1 + i * (layers + 1) + j
        if kind == "resnets":
            return f"input_blocks.{index}.0.{_resnet(rest)}"
        if kind == "attentions":
            return f"input_blocks.{index}.1{tail}"
        if kind == "downsamplers" and j == 0 and rest.split(".")[0] == "conv":
            return f"input_blocks.{(i + 1) * (layers + 1)}.0.op" + rest[len("conv"):]
    elif block == "up_blocks":
        index = i * (layers + 1) + j
        if kind == "resnets":
            return f"output_blocks.{index}.0.{_resnet(rest)}"
        if kind == "attentions":
            return f"output_blocks.{index}.1{tail}"
        if kind == "upsamplers" and j == 0 and rest.split(".")[0] == "conv":
            has_attn = "CrossAttn" in _cfg(config, "up_block_types")[i]
            slot = 2 if has_attn else 1
            return f"output_blocks.{i * (layers + 1) + layers}.{slot}.conv" + rest[len("conv"):]
    raise KeyError(name)


def unet_state_dict_to_ldm(state_dict: Mapping[str, Any], config: Any) -> dict[str, Any]:
    """A diffusers UNet state dict with every key renamed to the original layout."""
    return {unet_module_to_ldm(k, config): v for k, v in state_dict.items()}


def kohya_module_name(diffusers_module: str, config: Any) -> str:
    """``lora_unet_<original name with _>`` for a diffusers UNet module path."""
    return KOHYA_PREFIX + unet_module_to_ldm(diffusers_module, config).replace(".", "_")


def kohya_to_diffusers_map(module_names: list[str], config: Any) -> dict[str, str]:
    """``{kohya module name: diffusers module path}`` for every mappable module in
    ``module_names`` (e.g. ``[n for n, _ in unet.named_modules()]``)."""
    out = {}
    for name in module_names:
        try:
            out[kohya_module_name(name, config)] = name
        except (KeyError, ValueError, IndexError):
            continue
    return out


def peft_to_kohya(lora_state: Mapping[str, Any], config: Any, alpha: float,
                  dtype: Any = None) -> dict[str, Any]:
    """peft adapter weights (``<module>.lora_A.weight`` / ``.lora_B.weight``) as kohya keys:
    ``lora_down.weight`` (A), ``lora_up.weight`` (B) and a float32 ``.alpha`` holding the
    real alpha of each module (scale = alpha / rank, as peft applies it)."""
    import torch

    out: dict[str, Any] = {}
    for key, tensor in lora_state.items():
        for peft_part, kohya_part in ((".lora_A.weight", ".lora_down.weight"),
                                      (".lora_B.weight", ".lora_up.weight")):
            if key.endswith(peft_part):
                module = key[: -len(peft_part)]
                name = kohya_module_name(module, config)
                value = tensor.detach().to("cpu")
                if dtype is not None:
                    value = value.to(dtype)
                out[name + kohya_part] = value.contiguous()
                out[name + ".alpha"] = torch.tensor(float(alpha), dtype=torch.float32)
                break
        else:
            raise KeyError(f"unexpected LoRA tensor {key!r} (not lora_A/lora_B)")
    return out
