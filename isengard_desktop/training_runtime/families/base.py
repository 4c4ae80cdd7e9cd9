"""The contract between the generic training loop and one model family.

Runs only inside trainer child processes (torch, diffusers, peft are imported here).
The loop owns data, caching, the optimizer, checkpoints, samples and events; a family owns
loading its parts offline, the text/image encoders, the training objective, sampling and
the LoRA key format that ComfyUI and A1111 load.

How the loop (``training_runtime/loop.py``) drives a family, in order:

1. ``Family(job, device, dtype)`` then :meth:`Family.load` (phase ``loading_model``).
2. Caching (phase ``caching``): :meth:`Family.encode_images` per bucket batch (pixels in
   [-1, 1]); :meth:`Family.encode_text` for every caption, the empty caption ``""`` (caption
   dropout) and the sample prompts (so a family can keep those for :meth:`Family.sample`);
   then :meth:`Family.free_text_encoders`.
3. The loop freezes :meth:`Family.denoiser`, adds a peft LoRA on
   :meth:`Family.lora_target_modules` (``r=job.rank``, ``lora_alpha=job.alpha``), keeps the LoRA
   weights in float32, enables gradient checkpointing when the job asks and the model supports
   it, and builds the optimizer.
4. Each micro-batch: :meth:`Family.loss` with the cached latents and one
   :class:`TextCondition` per latent whose tensors also hold :meth:`Family.image_condition`'s
   (per image: original size, crop, target size). Runs under ``torch.autocast`` on GPU.
5. Every ``sample_every`` steps :meth:`Family.sample` (the loop sets eval mode and no_grad).
6. At the end :meth:`Family.export_lora`; the loop adds the header metadata (plus
   :meth:`Family.lora_metadata`) and writes the file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import torch

from ...core.training.spec import TrainingJob

# report(done, total, detail) for the current phase (loading_model, caching, ...)
PhaseReport = Callable[[int, int, str], None]


class ModelMissing(Exception):
    """A file the family needs is not there; the message says exactly which and where."""


@dataclass
class TextCondition:
    """Cached text conditioning for one caption (tensors on CPU, detached)."""

    tensors: dict[str, torch.Tensor]


class Family(ABC):
    """One model family (SD1.5, SDXL, Flux, Chroma)."""

    key: str                      # "sd15", "sdxl", "flux-dev", "flux-schnell", "chroma"
    architecture: str             # modelspec.architecture, e.g. "stable-diffusion-v1/lora"
    base_model_version: str       # ss_base_model_version, e.g. "sd_v1"
    default_resolution: int = 512
    latent_multiple: int = 64     # bucket sizes are multiples of this (pixels)

    def __init__(self, job: TrainingJob, device: torch.device, dtype: torch.dtype) -> None:
        self.job = job
        self.device = device
        self.dtype = dtype
        # The denoiser wrapped for data-parallel training (DistributedDataParallel), set by
        # the loop while it trains on several processes; None with one process.
        self.train_module: torch.nn.Module | None = None

    def training_forward(self) -> torch.nn.Module:
        """The module :meth:`loss` calls: the denoiser, or its data-parallel wrapper (whose
        forward makes the backward pass average the LoRA gradients across processes).
        Sampling always calls the denoiser itself."""
        den = self.denoiser()
        return den if self.train_module is None else self.train_module

    @abstractmethod
    def load(self, report: PhaseReport) -> None:
        """Load every part from ``job.base_model`` (diffusers folder or single .safetensors),
        offline. Raise :class:`ModelMissing` naming what is missing."""

    @abstractmethod
    def denoiser(self) -> torch.nn.Module:
        """The module that receives the LoRA (UNet or transformer)."""

    @abstractmethod
    def lora_target_modules(self) -> list[str]:
        """peft ``target_modules`` for the denoiser."""

    @abstractmethod
    def encode_text(self, captions: list[str]) -> list[TextCondition]:
        """Text conditioning for each caption (the loop caches it, then calls
        :meth:`free_text_encoders`)."""

    @abstractmethod
    def free_text_encoders(self) -> None:
        """Drop the text encoders (and tokenizers) to free memory."""

    @abstractmethod
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Latents for a batch of images in [-1, 1], shape (B, 3, H, W)."""

    @abstractmethod
    def loss(self, latents: torch.Tensor, cond: list[TextCondition],
             generator: torch.Generator) -> torch.Tensor:
        """The training loss for one batch (ε/v-prediction for UNets, flow matching for
        Flux/Chroma). ``cond`` has one entry per latent."""

    @abstractmethod
    def sample(self, prompt: str, seed: int, steps: int, width: int, height: int) -> Any:
        """A PIL image for ``prompt`` with the current adapter (text encoders may be gone:
        the family re-loads what it needs or keeps cached embeddings)."""

    def image_condition(self, original_size: tuple[int, int], crop_top_left: tuple[int, int],
                        target_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Extra per-image conditioning merged into that image's :class:`TextCondition`
        (sizes are (height, width) in pixels). SDXL returns its ``time_ids``; default none."""
        return {}

    def lora_metadata(self) -> dict[str, str]:
        """Family-specific header metadata for the LoRA file (strings); default none."""
        return {}

    @abstractmethod
    def export_lora(self, lora_state: dict[str, torch.Tensor], rank: int,
                    alpha: float) -> dict[str, torch.Tensor]:
        """Turn peft's adapter state dict (``get_peft_model_state_dict`` of the denoiser)
        into the file's tensors: kohya keys + ``.alpha`` for UNets, diffusers
        ``transformer.…lora_A/B`` + per-module ``.alpha`` for Flux/Chroma. The loop passes
        the tensors on the CPU, already in the file's dtype (fp32 when trained in fp32,
        else fp16)."""
