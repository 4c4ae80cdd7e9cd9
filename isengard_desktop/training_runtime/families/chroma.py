"""Chroma LoRA family (a pruned Flux-schnell derivative: T5-XXL only, no guidance input).

Chroma attends to the caption's T5 tokens plus the first padding token and masks the rest
(diffusers' ``ChromaPipeline._get_t5_prompt_embeds``). The cached embedding keeps exactly
those tokens, so a batch is padded to its longest caption and a boolean mask hides the
padding - the same result as masking a 512-token sequence, at a fraction of the cost.
Samples use true classifier-free guidance (negative prompt "" and scale 4.0 unless
``job.extra`` gives ``sample_negative_prompt`` / ``sample_cfg``).
"""

from __future__ import annotations

from typing import Any

import torch

from . import _flux_loading as fl
from ._flux_shared import FlowFamilyBase
from .base import TextCondition

T5_MAX_LENGTH = 512


class ChromaFamily(FlowFamilyBase):
    key = "chroma"
    architecture = "chroma/lora"
    base_model_version = "chroma"
    implementation = "https://huggingface.co/lodestones/Chroma1-HD"
    transformer_class = "ChromaTransformer2DModel"
    encoder_specs = (fl.t5_spec("text_encoder", "tokenizer", "text_encoder"),)
    # diffusers 0.42.1 builds Chroma's rotary embedding through its own deprecated import
    # path: a FutureWarning on every construction that nothing on our side can avoid.
    quiet_warnings = ("`FluxPosEmbed` is deprecated",)

    def __init__(self, job, device: torch.device, dtype: torch.dtype) -> None:
        if job.family != "chroma":
            raise ValueError(f"ChromaFamily handles chroma, not {job.family!r}")
        super().__init__(job, device, dtype)
        self.t5_max_length = int(self.extra.get("t5_max_length", T5_MAX_LENGTH))

    def _encode_chunk(self, prompts: list[str], device: torch.device) -> list[TextCondition]:
        tok, t5 = self.tokenizers["t5"], self.text_encoders["t5"]
        enc = tok(prompts, padding="max_length", max_length=self.t5_max_length, truncation=True,
                  return_tensors="pt")
        mask = enc.attention_mask
        embeds = t5(enc.input_ids.to(device), attention_mask=mask.to(device),
                    output_hidden_states=False)[0]
        out = []
        for e, m in zip(embeds, mask, strict=True):
            n = min(int(m.sum()) + 1, e.shape[0])     # the caption + its first padding token
            # a copy, not a view that would keep the whole padded batch alive
            out.append(TextCondition({"prompt_embeds": e[:n].to("cpu", self.dtype, copy=True),
                                      "text_ids": torch.zeros(n, 3)}))
        return out

    def _condition_kwargs(self, conds: list[TextCondition], n_img: int,
                          guidance: float | None) -> dict[str, Any]:
        dev, dt = self.device, self.dtype
        lengths = [c.tensors["prompt_embeds"].shape[0] for c in conds]
        longest = max(lengths)
        dim = conds[0].tensors["prompt_embeds"].shape[1]
        embeds = torch.zeros(len(conds), longest, dim, dtype=dt)
        for i, c in enumerate(conds):
            embeds[i, :lengths[i]] = c.tensors["prompt_embeds"]
        kwargs: dict[str, Any] = {"encoder_hidden_states": embeds.to(dev),
                                  "txt_ids": torch.zeros(longest, 3, device=dev, dtype=dt)}
        if min(lengths) != longest:
            text = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
            image = torch.ones(len(conds), n_img, dtype=torch.bool)
            kwargs["attention_mask"] = torch.cat([text, image], dim=1).to(dev)
        return kwargs

    def _negative_prompts(self) -> list[str]:
        return [str(self.extra.get("sample_negative_prompt", ""))]

    def _cfg(self) -> tuple[str, float] | None:
        scale = float(self.extra.get("sample_cfg", 4.0))
        if scale == 1.0:
            return None
        return str(self.extra.get("sample_negative_prompt", "")), scale
