"""FLUX.1 dev / schnell LoRA family (CLIP-L pooled + T5-XXL text, rectified flow).

``FluxFamily`` serves both ``flux-dev`` (guidance-distilled: the transformer takes a guidance
embedding, 1.0 while training, 3.5 for samples) and ``flux-schnell`` (no guidance input). The
shared machinery (offline loading, 8-bit base, objective, sampler, LoRA format) is in
:mod:`._flux_shared`; Chroma lives in :mod:`.chroma` and is importable from here too.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _flux_loading as fl
from ._flux_shared import FlowFamilyBase
from .base import TextCondition

__all__ = ["FluxFamily"]

CLIP_MAX_LENGTH = 77
VARIANTS = {
    # key: (architecture, T5 tokens)
    "flux-dev": ("flux-1-dev/lora", 512),
    "flux-schnell": ("flux-1-schnell/lora", 256),
}


class FluxFamily(FlowFamilyBase):
    key = "flux-dev"
    architecture = "flux-1-dev/lora"
    base_model_version = "flux1"
    implementation = "https://github.com/black-forest-labs/flux"
    transformer_class = "FluxTransformer2DModel"
    encoder_specs = (fl.clip_spec("text_encoder", "tokenizer", "text_encoder"),
                     fl.t5_spec("text_encoder_2", "tokenizer_2", "text_encoder_2"))

    def __init__(self, job, device: torch.device, dtype: torch.dtype) -> None:
        if job.family not in VARIANTS:
            raise ValueError(f"FluxFamily handles {', '.join(VARIANTS)}, not {job.family!r}")
        super().__init__(job, device, dtype)
        self.key = job.family
        self.architecture, default_len = VARIANTS[job.family]
        self.t5_max_length = int(self.extra.get("t5_max_length", default_len))

    def _encode_chunk(self, prompts: list[str], device: torch.device) -> list[TextCondition]:
        clip_tok, t5_tok = self.tokenizers["clip"], self.tokenizers["t5"]
        clip, t5 = self.text_encoders["clip"], self.text_encoders["t5"]
        ids = clip_tok(prompts, padding="max_length", max_length=CLIP_MAX_LENGTH,
                       truncation=True, return_tensors="pt").input_ids
        pooled = clip(ids.to(device), output_hidden_states=False).pooler_output
        ids = t5_tok(prompts, padding="max_length", max_length=self.t5_max_length,
                     truncation=True, return_tensors="pt").input_ids
        embeds = t5(ids.to(device), output_hidden_states=False)[0]
        text_ids = torch.zeros(embeds.shape[1], 3)
        return [TextCondition({"prompt_embeds": e.to("cpu", self.dtype),
                               "pooled_prompt_embeds": p.to("cpu", self.dtype),
                               "text_ids": text_ids})
                for e, p in zip(embeds, pooled, strict=True)]

    def _condition_kwargs(self, conds: list[TextCondition], n_img: int,
                          guidance: float | None) -> dict[str, Any]:
        dev, dt = self.device, self.dtype
        kwargs: dict[str, Any] = {
            "encoder_hidden_states": torch.stack(
                [c.tensors["prompt_embeds"] for c in conds]).to(dev, dt),
            "pooled_projections": torch.stack(
                [c.tensors["pooled_prompt_embeds"] for c in conds]).to(dev, dt),
            "txt_ids": conds[0].tensors["text_ids"].to(dev, dt),
        }
        if self.transformer.config.guidance_embeds:
            kwargs["guidance"] = torch.full((len(conds),), 1.0 if guidance is None else guidance,
                                            device=dev, dtype=torch.float32)
        return kwargs

    def _train_guidance(self) -> float | None:
        return float(self.extra.get("train_guidance", 1.0))

    def _sample_guidance(self) -> float | None:
        return float(self.extra.get("sample_guidance", 3.5))
