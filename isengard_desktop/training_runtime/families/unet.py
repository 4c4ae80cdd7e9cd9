"""SD1.5 and SDXL: UNet families (ε- or v-prediction) with kohya-format LoRA output.

Base models load offline from a diffusers folder or from one original-layout ``.safetensors``
checkpoint (as A1111/ComfyUI use), read with the family's shipped config folder
(``training_runtime/configs/<family>/``; a job may name another with ``extra.config_dir``).
Tokenizers come from the model folder or ``job.tokenizer_dir`` (a diffusers model folder, a
folder with ``vocab.json`` + ``merges.txt`` such as ComfyUI's ``comfy/sd1_tokenizer``, or the
ComfyUI install itself).
"""

from __future__ import annotations

import errno
import gc
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .base import Family, ModelMissing, PhaseReport, TextCondition
from .unet_keys import peft_to_kohya

log = logging.getLogger("isengard.trainer.unet")

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SINGLE_FILE_EXTS = (".safetensors", ".ckpt")
# kohya's default "LoRA" set for UNets: every linear/1x1 layer of the transformer blocks.
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out",
                  "ff.net.0.proj", "ff.net.2"]


def _has_tokenizer(folder: Path) -> bool:
    return ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()) \
        or (folder / "tokenizer.json").is_file()


class _UNetFamily(Family):
    """What SD1.5 and SDXL share; subclasses set the text encoders and conditioning."""

    pipeline_class = ""
    text_encoders: tuple[str, ...] = ("text_encoder",)
    tokenizers: tuple[str, ...] = ("tokenizer",)
    sample_guidance = 7.0
    latent_multiple = 64

    def __init__(self, job, device, dtype) -> None:
        super().__init__(job, device, dtype)
        self.unet: Any = None
        self.vae: Any = None
        self.encoders: list[Any] = []
        self.tokenizer_objs: list[Any] = []
        self.noise_scheduler: Any = None
        self.scheduler_config: dict[str, Any] = {}
        self.prediction_type = "epsilon"
        self._prompts: dict[str, TextCondition] = {}

    # ------------------------------------------------------------------ loading

    @property
    def config_dir(self) -> Path:
        custom = str(self.job.extra.get("config_dir") or "")
        return Path(custom) if custom else CONFIGS / self.key

    def _find_tokenizer(self, sub: str) -> Path:
        base = Path(self.job.base_model)
        candidates: list[Path] = []
        if base.is_dir():
            candidates.append(base / sub)
        if self.job.tokenizer_dir:
            t = Path(self.job.tokenizer_dir)
            candidates += [t / sub, t / "tokenizer", t, t / "comfy" / "sd1_tokenizer",
                           t / "sd1_tokenizer"]
        candidates.append(self.config_dir / sub)
        for c in dict.fromkeys(candidates):
            if _has_tokenizer(c):
                return c
        if self.job.extra.get("use_shipped_tokenizer", True):
            # every tokenizer of these families is CLIP's vocabulary, which we ship
            from ..shipped_vocab import shipped_clip_tokenizer_dir

            return shipped_clip_tokenizer_dir()
        looked = "; ".join(str(c) for c in dict.fromkeys(candidates))
        raise ModelMissing(
            f"The CLIP tokenizer for {self.key} ('{sub}': vocab.json + merges.txt) was not found. "
            f"Looked in: {looked}. Set the tokenizer folder to a diffusers model folder or to "
            f"ComfyUI's comfy/sd1_tokenizer folder.")

    def _load_tokenizers(self) -> list[Any]:
        from transformers import CLIPTokenizer

        out = []
        for i, sub in enumerate(self.tokenizers):
            try:
                folder = self._find_tokenizer(sub)
            except ModelMissing:
                if i == 0:
                    raise
                folder = self._find_tokenizer(self.tokenizers[0])
            # SDXL's second tokenizer is CLIP's vocabulary padded with "!"; a real
            # tokenizer_2 folder says so itself, a borrowed one (ComfyUI's) does not.
            extra: dict[str, Any] = {"pad_token": "!"} if i == 1 and folder.name != sub else {}
            out.append(CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, **extra))
        return out

    def load(self, report: PhaseReport) -> None:
        base = Path(self.job.base_model)
        if not base.exists():
            raise ModelMissing(f"The base model {base} does not exist.")
        report(0, 3, "tokenizers")
        self.tokenizer_objs = self._load_tokenizers()
        report(1, 3, "model weights")
        try:
            if base.is_dir():
                self._load_folder(base)
            elif base.suffix.lower() in SINGLE_FILE_EXTS:
                self._load_single_file(base)
            else:
                raise ModelMissing(f"The base model {base} is neither a diffusers folder nor a "
                                   f".safetensors checkpoint.")
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            raise ModelMissing(f"Could not load the base model from {base}: {exc}") from exc
        report(2, 3, "preparing")
        self._configure_scheduler()
        self.unet.requires_grad_(False)
        self.vae.requires_grad_(False).eval()
        for enc in self.encoders:
            enc.requires_grad_(False).eval()
        self.unet.to(self.device)
        if self.vae.dtype != self._vae_dtype():
            self.vae.to(dtype=self._vae_dtype())
        self.vae.to(self.device)
        for enc in self.encoders:
            enc.to(self.device)
        report(3, 3, "ready")

    def _vae_dtype(self) -> torch.dtype:
        return torch.float32 if getattr(self.vae.config, "force_upcast", False) else self.dtype

    def _load_folder(self, base: Path) -> None:
        from diffusers import AutoencoderKL, UNet2DConditionModel

        for sub in ("unet", "vae", *self.text_encoders):
            if not (base / sub / "config.json").is_file():
                raise ModelMissing(f"The model folder {base} has no {sub}/config.json "
                                   f"(is it a {self.key.upper()} diffusers folder?).")
        common: dict[str, Any] = {"local_files_only": True}
        dtype = {} if self.dtype == torch.float32 else {"torch_dtype": self.dtype}
        self.unet = UNet2DConditionModel.from_pretrained(str(base), subfolder="unet",
                                                         **dtype, **common)
        self.vae = AutoencoderKL.from_pretrained(str(base), subfolder="vae", **common)
        self.encoders = [self._text_encoder_class(i).from_pretrained(
            str(base), subfolder=sub, dtype=self.dtype, **common)
            for i, sub in enumerate(self.text_encoders)]
        sched = base / "scheduler" / "scheduler_config.json"
        if not sched.is_file():
            sched = self.config_dir / "scheduler" / "scheduler_config.json"
        self._read_scheduler_config(sched)

    def _load_single_file(self, path: Path) -> None:
        import diffusers

        if not (self.config_dir / "model_index.json").is_file():
            raise ModelMissing(f"The {self.key} config folder {self.config_dir} is missing "
                               f"(needed to read single-file checkpoints offline).")
        pipe_cls = getattr(diffusers, self.pipeline_class)
        tokens = dict(zip(self.tokenizers, self.tokenizer_objs, strict=True))
        kwargs: dict[str, Any] = {"config": str(self.config_dir), "local_files_only": True,
                                  **tokens}
        if self.dtype != torch.float32:
            kwargs["torch_dtype"] = self.dtype
        if self.key == "sd15":
            kwargs.update(safety_checker=None, feature_extractor=None,
                          requires_safety_checker=False)
        kwargs.update(self._flat_clip_encoders(path))
        try:
            pipe = pipe_cls.from_single_file(str(path), **kwargs)
        except Exception as exc:
            if type(exc).__name__ != "SingleFileComponentError":
                raise
            # diffusers: "Failed to load CLIPTextModel. Weights for this component appear to
            # be missing in the checkpoint." -- a model that cannot be read, not a crash
            raise ModelMissing(f"{path} cannot be read as a {self.key.upper()} checkpoint: "
                               f"{exc}") from exc
        self.unet, self.vae = pipe.unet, pipe.vae
        self.encoders = [getattr(pipe, sub) for sub in self.text_encoders]
        self._read_scheduler_config(self.config_dir / "scheduler" / "scheduler_config.json")
        del pipe

    def _flat_clip_encoders(self, path: Path) -> dict[str, Any]:
        """Text encoders of a checkpoint whose CLIP-L keys lack the ``text_model.`` level
        (``cond_stage_model.transformer.embeddings.*``), built here with that level put back
        as ComfyUI does (comfy/supported_models.py, SD15.process_clip_state_dict); diffusers'
        single-file loader cannot read that layout. ``{}`` when the layout is the usual one.
        ModelMissing names the file and the weights that are missing."""
        if path.suffix.lower() != ".safetensors":
            return {}
        from safetensors import safe_open

        out: dict[str, Any] = {}
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            for sub, prefix in FLAT_CLIP_PREFIXES.get(self.key, {}).items():
                under = [k for k in keys if k.startswith(prefix)]
                if not under or any(k.startswith(prefix + "text_model.") for k in under):
                    continue
                state = {k[len(prefix):]: f.get_tensor(k) for k in under}
                out[sub] = self._clip_from_state(path, sub, state)
        return out

    def _clip_from_state(self, path: Path, sub: str, state: dict[str, torch.Tensor]) -> Any:
        from transformers import CLIPTextConfig

        config = CLIPTextConfig.from_pretrained(str(self.config_dir / sub),
                                                local_files_only=True)
        model = self._text_encoder_class(self.text_encoders.index(sub))(config)
        if any(k.startswith("text_model.") for k in model.state_dict()):
            state = {"text_model." + k: v for k, v in state.items()}   # transformers < 5
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
        if missing:
            shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more"
                                               if len(missing) > 6 else "")
            raise ModelMissing(f"{path}: the CLIP text encoder ({sub}) is incomplete; missing "
                               f"weights: {shown}")
        return model.to(dtype=self.dtype)

    def _text_encoder_class(self, index: int) -> Any:
        from transformers import CLIPTextModel

        return CLIPTextModel

    def _read_scheduler_config(self, path: Path) -> None:
        import json

        try:
            self.scheduler_config = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ModelMissing(f"The scheduler config {path} is missing.") from exc

    def _configure_scheduler(self) -> None:
        from diffusers import DDPMScheduler

        override = str(self.job.extra.get("prediction_type") or "")
        self.prediction_type = override or self.scheduler_config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            from ..errors import ConfigError

            raise ConfigError(f"extra.prediction_type: {self.prediction_type!r} is not "
                              f"'epsilon' or 'v_prediction'")
        cfg = {k: v for k, v in self.scheduler_config.items() if not k.startswith("_")}
        keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                "steps_offset", "rescale_betas_zero_snr", "timestep_spacing")
        self.noise_scheduler = DDPMScheduler(
            **{k: cfg[k] for k in keep if k in cfg}, prediction_type=self.prediction_type)

    # ------------------------------------------------------------------ parts

    def denoiser(self) -> torch.nn.Module:
        return self.unet

    def lora_target_modules(self) -> list[str]:
        return list(TARGET_MODULES)

    def free_text_encoders(self) -> None:
        self.encoders = []
        self.tokenizer_objs = []
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        dist = self.vae.encode(pixels.to(self.device, self._vae_dtype())).latent_dist
        return (dist.mean * self.vae.config.scaling_factor).float()

    def _ids(self, tokenizer: Any, encoder: Any, captions: list[str]) -> torch.Tensor:
        length = int(encoder.config.max_position_embeddings)
        return tokenizer(captions, padding="max_length", max_length=length, truncation=True,
                         return_tensors="pt").input_ids.to(self.device)

    def encode_text(self, captions: list[str]) -> list[TextCondition]:
        out: list[TextCondition] = []
        for start in range(0, len(captions), 8):
            chunk = captions[start:start + 8]
            with torch.no_grad():
                tensors = self._encode_chunk(chunk)
            for i, caption in enumerate(chunk):
                cond = TextCondition({k: v[i].detach().to("cpu") for k, v in tensors.items()})
                self._prompts[caption] = cond
                out.append(cond)
        return out

    def _encode_chunk(self, captions: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _added_cond(self, cond: list[TextCondition]) -> dict[str, torch.Tensor] | None:
        return None

    # ------------------------------------------------------------------ training

    def loss(self, latents: torch.Tensor, cond: list[TextCondition],
             generator: torch.Generator) -> torch.Tensor:
        b = latents.shape[0]
        latents = latents.to(self.device, torch.float32)
        noise = torch.randn(latents.shape, generator=generator).to(self.device)
        steps = int(self.noise_scheduler.config.num_train_timesteps)
        t = torch.randint(0, steps, (b,), generator=generator).to(self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        hidden = torch.stack([c.tensors["hidden"] for c in cond]).to(self.device, self.dtype)
        pred = self.training_forward()(noisy.to(self.dtype), t, encoder_hidden_states=hidden,
                                       added_cond_kwargs=self._added_cond(cond)).sample
        if self.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, t)
        else:
            target = noise
        return F.mse_loss(pred.float(), target.float())

    # ------------------------------------------------------------------ sampling

    def _uncond(self) -> TextCondition:
        return self._prompts[""]

    @torch.no_grad()
    def sample(self, prompt: str, seed: int, steps: int, width: int, height: int) -> Any:
        from diffusers import EulerDiscreteScheduler
        from PIL import Image

        if prompt not in self._prompts:
            raise KeyError(f"sample prompt {prompt!r} was not encoded before the text "
                           f"encoders were freed")
        sched = EulerDiscreteScheduler.from_config(
            {**self.scheduler_config, "prediction_type": self.prediction_type})
        sched.set_timesteps(max(1, int(steps)), device=self.device)
        scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        gen = torch.Generator("cpu").manual_seed(int(seed))
        shape = (1, int(self.unet.config.in_channels), height // scale, width // scale)
        latents = torch.randn(shape, generator=gen).to(self.device) * sched.init_noise_sigma
        conds = [self._uncond(), self._prompts[prompt]]
        hidden = torch.stack([c.tensors["hidden"] for c in conds]).to(self.device, self.dtype)
        size_cond = self.image_condition((height, width), (0, 0), (height, width))
        conds = [TextCondition({**c.tensors, **size_cond}) for c in conds]
        guidance = float(self.job.extra.get("sample_guidance", self.sample_guidance))
        for t in sched.timesteps:
            inp = sched.scale_model_input(torch.cat([latents] * 2), t)
            pred = self.unet(inp.to(self.dtype), t, encoder_hidden_states=hidden,
                             added_cond_kwargs=self._added_cond(conds)).sample.float()
            uncond, text = pred.chunk(2)
            latents = sched.step(uncond + guidance * (text - uncond), t, latents).prev_sample
        image = self.vae.decode((latents / self.vae.config.scaling_factor)
                                .to(self._vae_dtype())).sample
        arr = ((image[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return Image.fromarray(arr.permute(1, 2, 0).cpu().numpy())

    # ------------------------------------------------------------------ output

    def export_lora(self, lora_state: dict[str, torch.Tensor], rank: int,
                    alpha: float) -> dict[str, torch.Tensor]:
        return peft_to_kohya(lora_state, self.unet.config, alpha)

    def lora_metadata(self) -> dict[str, str]:
        v = self.prediction_type == "v_prediction"
        return {"ss_v_parameterization": str(v),
                "modelspec.prediction_type": "v" if v else "epsilon",
                "modelspec.implementation": "https://github.com/Stability-AI/generative-models"}


# Where a checkpoint keeps the CLIP-L text encoder in transformers' layout, per family.
FLAT_CLIP_PREFIXES: dict[str, dict[str, str]] = {
    "sd15": {"text_encoder": "cond_stage_model.transformer."},
    "sdxl": {"text_encoder": "conditioner.embedders.0.transformer."},
}


class SD15Family(_UNetFamily):
    """Stable Diffusion 1.5: one CLIP-L text encoder (last hidden state)."""

    key = "sd15"
    architecture = "stable-diffusion-v1/lora"
    base_model_version = "sd_v1"
    default_resolution = 512
    pipeline_class = "StableDiffusionPipeline"

    def _encode_chunk(self, captions: list[str]) -> dict[str, torch.Tensor]:
        tok, enc = self.tokenizer_objs[0], self.encoders[0]
        out = enc(self._ids(tok, enc, captions))
        return {"hidden": out.last_hidden_state}


class SDXLFamily(_UNetFamily):
    """SDXL base: CLIP-L + OpenCLIP-bigG (penultimate layers concatenated, pooled bigG output)
    and the size/crop ``time_ids``."""

    key = "sdxl"
    architecture = "stable-diffusion-xl-v1-base/lora"
    base_model_version = "sdxl_base_v1-0"
    default_resolution = 1024
    pipeline_class = "StableDiffusionXLPipeline"
    text_encoders = ("text_encoder", "text_encoder_2")
    tokenizers = ("tokenizer", "tokenizer_2")
    sample_guidance = 5.0

    def _text_encoder_class(self, index: int) -> Any:
        from transformers import CLIPTextModel, CLIPTextModelWithProjection

        return CLIPTextModelWithProjection if index == 1 else CLIPTextModel

    def _encode_chunk(self, captions: list[str]) -> dict[str, torch.Tensor]:
        hidden = []
        pooled = None
        for tok, enc in zip(self.tokenizer_objs, self.encoders, strict=True):
            out = enc(self._ids(tok, enc, captions), output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = getattr(out, "text_embeds", None)
        # SDXL's second encoder (with projection) always gives text_embeds
        return {"hidden": torch.cat(hidden, dim=-1), "pooled": pooled}  # type: ignore[dict-item]

    def _uncond(self) -> TextCondition:
        # SDXL samples with zeroed embeddings for the empty negative prompt
        # (force_zeros_for_empty_prompt), like its pipeline.
        ref = self._prompts[""]
        return TextCondition({k: torch.zeros_like(v) for k, v in ref.tensors.items()})

    def image_condition(self, original_size: tuple[int, int], crop_top_left: tuple[int, int],
                        target_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        return {"time_ids": torch.tensor([*original_size, *crop_top_left, *target_size],
                                         dtype=torch.float32)}

    def _added_cond(self, cond: list[TextCondition]) -> dict[str, torch.Tensor] | None:
        return {"text_embeds": torch.stack([c.tensors["pooled"] for c in cond])
                .to(self.device, self.dtype),
                "time_ids": torch.stack([c.tensors["time_ids"] for c in cond])
                .to(self.device, self.dtype)}
