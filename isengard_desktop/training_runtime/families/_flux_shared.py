"""What Flux.1 (dev/schnell) and Chroma share: loading, 8-bit base, latents, the
rectified-flow objective, a small Euler sampler and the LoRA file format.

Memory plan (a 24 GB card): ``load()`` puts every part on the CPU, quantizes the frozen
transformer there when ``job.quantize_base`` asks for it, and moves nothing to the GPU.
``encode_images()`` / ``encode_text()`` move the VAE / text encoders to the device;
``free_text_encoders()`` drops the text encoders. The transformer goes to the device the first
time it is needed (``denoiser()``, ``loss()``, ``sample()``), so in the loop's order (load,
cache latents, cache text, free text encoders, attach LoRA, train) the T5-XXL and the
transformer are never on the GPU together. The VAE stays loaded only when the job samples
(it is dropped with the text encoders otherwise); ``sample()`` / ``encode_images()`` reload it
when it is gone. Every prompt ``encode_text()`` saw, the job's sample prompts (trigger word
ensured, as the loop does) and anything passed to :meth:`FlowFamilyBase.precache_prompts`
stay available to ``sample()``; any other prompt makes it reload the text encoders briefly.

``job.extra`` options: ``timestep_sampling`` ("shift" (default): logit-normal, then the
model's own shift - resolution-dependent for dev/Chroma, as their sampler does; "logit_normal";
"uniform"), ``lora_targets`` ("default" | "attention"), ``t5_max_length``,
``train_guidance`` (Flux dev, default 1.0), ``sample_guidance`` (Flux dev, default 3.5),
``config_dir`` (config folder for single files), ``vae`` / ``text_encoder`` /
``text_encoder_2`` (single files of those parts).
"""

from __future__ import annotations

import contextlib
import gc
import math
import warnings
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from . import _flux_loading as fl
from .base import Family, PhaseReport, TextCondition

ATTENTION_TARGETS = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj",
                     "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out")
MLP_TARGETS = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
               "proj_mlp")
ENCODE_CHUNK = 8


def pack_latents(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, 4C): 2x2 patches, as diffusers' Flux pipeline packs."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`pack_latents` for latent height ``h`` and width ``w``."""
    b, _, d = x.shape
    x = x.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, h, w)


def image_ids(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Rotary position ids (0, row, column) of the packed latent tokens."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] += torch.arange(h // 2)[:, None]
    ids[..., 2] += torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def flux_shift(sigmas: torch.Tensor, seq_len: int, sched: dict[str, Any]) -> torch.Tensor:
    """Shift sigmas toward noise the way the model's scheduler does at sampling time:
    resolution-dependent (``use_dynamic_shifting``, FLUX.1-dev, Chroma) or fixed ``shift``."""
    if sched.get("use_dynamic_shifting"):
        lo, hi = sched.get("base_image_seq_len", 256), sched.get("max_image_seq_len", 4096)
        b_shift, m_shift = sched.get("base_shift", 0.5), sched.get("max_shift", 1.15)
        mu = b_shift + (seq_len - lo) * (m_shift - b_shift) / (hi - lo)
        return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))
    shift = float(sched.get("shift", 1.0))
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def sample_sigmas(steps: int, seq_len: int, sched: dict[str, Any]) -> torch.Tensor:
    """``steps`` + 1 noise levels from 1 to 0, spaced and shifted as FluxPipeline /
    ChromaPipeline do with FlowMatchEulerDiscreteScheduler."""
    sig = torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64)
    return torch.cat([flux_shift(sig, seq_len, sched), torch.zeros(1, dtype=torch.float64)])


class FlowFamilyBase(Family):
    """Flux-like rectified-flow transformer + 16-channel VAE + T5 (and CLIP)."""

    default_resolution = 1024
    latent_multiple = 16          # VAE factor 8 x 2x2 packing
    transformer_class = ""        # diffusers class name
    encoder_specs: tuple[fl.EncoderSpec, ...] = ()
    quiet_warnings: tuple[str, ...] = ()   # third-party FutureWarnings to hide while loading

    def __init__(self, job, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(job, device, dtype)
        self.extra: dict[str, Any] = dict(job.extra or {})
        self.plan: fl.LoadPlan | None = None
        self.transformer: Any = None
        self.vae: Any = None
        self.text_encoders: dict[str, Any] = {}
        self.tokenizers: dict[str, Any] = {}
        self.quantize_summary: Any = None
        self._prompt_cache: dict[str, TextCondition] = {}
        self._vae_generator = torch.Generator().manual_seed(int(job.seed))
        # T5 overflows in fp16; keep text encoders in bf16/fp32.
        self.text_dtype = torch.float32 if dtype == torch.float16 else dtype

    # ------------------------------------------------------------------------- loading

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        with warnings.catch_warnings():
            for message in self.quiet_warnings:
                warnings.filterwarnings("ignore", message=message, category=FutureWarning)
            yield

    def load(self, report: PhaseReport) -> None:
        self.plan = fl.Resolver(self.key, self.encoder_specs, self.job).resolve()
        quantize = self.job.quantize_base not in ("", "none", None)
        total = 3 + len(self.encoder_specs) + (1 if quantize else 0)
        done = 0
        report(done, total, "tokenizers")
        self._load_tokenizers()
        done += 1
        where = self.plan.transformer.path
        name = where.name if self.plan.single_file else where.parent.name
        report(done, total, f"transformer ({name})")
        import diffusers

        with self._quiet():
            cls = getattr(diffusers, self.transformer_class)
            self.transformer = fl.load_transformer(cls, self.plan, self.dtype)
        done += 1
        if quantize:
            report(done, total, f"storing the transformer in {self.job.quantize_base}")
            from ..quantize import quantize_frozen_base

            self.quantize_summary = quantize_frozen_base(self.transformer, self.job.quantize_base)
            done += 1
        report(done, total, "VAE")
        self.vae = fl.load_vae(self.plan, self.dtype)
        done += 1
        for spec in self.encoder_specs:
            report(done, total, spec.label)
            self.text_encoders[spec.role] = fl.load_text_encoder(
                spec, self.plan.encoders[spec.role], self.plan.config_dir, self.text_dtype)
            done += 1
        report(done, total, "ready")

    def _load_tokenizers(self) -> None:
        assert self.plan is not None
        for spec in self.encoder_specs:
            self.tokenizers[spec.role] = fl.load_tokenizer(spec, self.plan.tokenizers[spec.role])

    def _reload_text_encoders(self) -> None:
        assert self.plan is not None, "load() first"
        self._load_tokenizers()
        for spec in self.encoder_specs:
            self.text_encoders[spec.role] = fl.load_text_encoder(
                spec, self.plan.encoders[spec.role], self.plan.config_dir, self.text_dtype)

    def denoiser(self) -> torch.nn.Module:
        """The transformer, on the training device (moved there on first use)."""
        if self.transformer is None:
            raise RuntimeError("load() first")
        if self.transformer.device != self.device:
            self.transformer.to(self.device)
        return self.transformer

    def lora_target_modules(self) -> list[str]:
        """Attention projections of every block (+ the MLPs unless ``lora_targets`` is
        "attention"). Single blocks' ``proj_out`` are named one by one so the final
        ``proj_out`` layer stays untouched."""
        targets = list(ATTENTION_TARGETS)
        if self.extra.get("lora_targets", "default") != "attention":
            targets += MLP_TARGETS
            if self.transformer is not None:
                n_single = len(self.transformer.single_transformer_blocks)
            else:
                n_single = self._shipped_config("transformer").get("num_single_layers", 38)
            targets += [f"single_transformer_blocks.{i}.proj_out" for i in range(n_single)]
        return targets

    def _shipped_config(self, sub: str) -> dict[str, Any]:
        import json

        path = fl.CONFIGS_DIR / self.key / sub / "config.json"
        return json.loads(path.read_text(encoding="utf-8"))

    # ------------------------------------------------------------------------- text

    @abstractmethod
    def _encode_chunk(self, prompts: list[str], device: torch.device) -> list[TextCondition]:
        """Text conditioning for a few prompts (encoders loaded and on ``device``)."""

    @abstractmethod
    def _condition_kwargs(self, conds: list[TextCondition], n_img: int,
                          guidance: float | None) -> dict[str, Any]:
        """Transformer keyword arguments for a batch of cached conditions."""

    def encode_text(self, captions: list[str]) -> list[TextCondition]:
        return self._encode(captions, self.device)

    def _encode(self, captions: list[str], device: torch.device) -> list[TextCondition]:
        if not self.text_encoders:
            self._reload_text_encoders()
        for name, enc in self.text_encoders.items():
            if enc.device != device:
                self.text_encoders[name] = enc.to(device)
        out: list[TextCondition] = []
        with torch.no_grad():
            for i in range(0, len(captions), ENCODE_CHUNK):
                out += self._encode_chunk(list(captions[i:i + ENCODE_CHUNK]), device)
        # The same objects the loop caches (no copies): sample() finds its prompts here.
        self._prompt_cache.update(zip(captions, out, strict=True))
        return out

    def _sample_prompts(self) -> list[str]:
        """The sample prompts as the loop uses them (trigger word ensured) + negatives."""
        from ...core.dataset.captions import sample_prompt

        trigger = self.job.trigger_word
        return [sample_prompt(p, trigger) for p in self.job.sample_prompts if p.strip()] \
            + self._negative_prompts()

    def _negative_prompts(self) -> list[str]:
        return []

    def precache_prompts(self, prompts: list[str]) -> None:
        """Encode prompts for :meth:`sample` now, so it never needs the text encoders."""
        todo = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        if todo:
            for p, cond in zip(todo, self._encode_reloading(todo), strict=True):
                self._prompt_cache[p] = cond

    def _encode_reloading(self, prompts: list[str]) -> list[TextCondition]:
        """Encode even after free_text_encoders(): reload them for this call. While the
        transformer sits on the GPU they run on the CPU (slow, but no second 9 GB model on
        the card)."""
        had = bool(self.text_encoders)
        device = self.device
        if not had and self.transformer is not None and self.transformer.device == device \
                and device.type != "cpu":
            device = torch.device("cpu")
        conds = self._encode(prompts, device)
        if not had:
            self._drop_text_encoders()
        return conds

    def free_text_encoders(self) -> None:
        """Drop the text encoders (after encoding the job's sample prompts). Latents are
        cached before text, so a job without samples drops the VAE here as well."""
        if self.text_encoders:
            self.precache_prompts(self._sample_prompts())
        self._drop_text_encoders()
        if not (self.job.sample_every > 0 and any(p.strip() for p in self.job.sample_prompts)):
            self.free_vae()

    def _drop_text_encoders(self) -> None:
        self.text_encoders.clear()
        self.tokenizers.clear()
        self._release()

    def _release(self) -> None:
        """Give freed GPU memory back (a full gc pass costs ~0.3 s, so only on a GPU)."""
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()

    def _condition(self, prompt: str) -> TextCondition:
        if prompt not in self._prompt_cache:
            self._prompt_cache[prompt] = self._encode_reloading([prompt])[0]
        return self._prompt_cache[prompt]

    # ------------------------------------------------------------------------- images

    def _vae_on_device(self):
        if self.vae is None:
            assert self.plan is not None, "load() first"
            self.vae = fl.load_vae(self.plan, self.dtype)
        if self.vae.device != self.device:
            self.vae.to(self.device)
        return self.vae

    def free_vae(self) -> None:
        """Drop the VAE (sample() reloads it from disk)."""
        self.vae = None
        self._release()

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        vae = self._vae_on_device()
        with torch.no_grad():
            dist = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist
            lat = dist.sample(generator=self._vae_generator)
        lat = (lat.float() - vae.config.shift_factor) * vae.config.scaling_factor
        return lat.cpu()

    def _decode(self, latents: torch.Tensor):
        import numpy as np
        from PIL import Image

        vae = self._vae_on_device()
        lat = latents.to(self.device, torch.float32) / vae.config.scaling_factor
        lat = lat + vae.config.shift_factor
        with torch.no_grad():
            img = vae.decode(lat.to(vae.dtype)).sample[0].float()
        arr = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)
        return Image.fromarray(np.ascontiguousarray(arr.cpu().numpy()))

    # ------------------------------------------------------------------------- training

    def _predict(self, packed: torch.Tensor, sigma: torch.Tensor, conds: list[TextCondition],
                 h: int, w: int, guidance: float | None,
                 training: bool = False) -> torch.Tensor:
        """Velocity prediction (noise - x0) for packed latents at noise level ``sigma``
        (``training``: through :meth:`training_forward`)."""
        model = self.training_forward() if training else self.denoiser()
        kwargs = self._condition_kwargs(conds, packed.shape[1], guidance)
        out = model(hidden_states=packed.to(self.dtype), timestep=sigma.to(self.dtype),
                    img_ids=image_ids(h, w, self.device, self.dtype), return_dict=False,
                    **kwargs)[0]
        return out

    def _train_sigmas(self, n: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
        mode = self.extra.get("timestep_sampling", "shift")
        if mode == "uniform":
            sig = torch.rand(n, generator=generator, device=generator.device)
        elif mode in ("shift", "logit_normal"):
            sig = torch.sigmoid(torch.randn(n, generator=generator, device=generator.device))
            if mode == "shift":
                sig = flux_shift(sig, seq_len, self._scheduler_config())
        else:
            raise ValueError(f"timestep_sampling: unknown mode {mode!r}")
        return sig.float().to(self.device)

    def _scheduler_config(self) -> dict[str, Any]:
        return self.plan.scheduler if self.plan is not None else {}

    def _train_guidance(self) -> float | None:
        return None

    def loss(self, latents: torch.Tensor, cond: list[TextCondition],
             generator: torch.Generator) -> torch.Tensor:
        """Rectified flow: x_t = (1 - t) x0 + t noise, predict noise - x0, MSE."""
        x0 = latents.to(self.device, torch.float32)
        b, _, h, w = x0.shape
        if h % 2 or w % 2:
            raise ValueError(f"latent size {h}x{w} must be even (images a multiple of 16 px)")
        noise = torch.randn(x0.shape, generator=generator, device=generator.device)
        noise = noise.to(self.device)
        sigma = self._train_sigmas(b, (h // 2) * (w // 2), generator)
        s = sigma.view(b, 1, 1, 1)
        x_t = (1 - s) * x0 + s * noise
        pred = self._predict(pack_latents(x_t), sigma, cond, h, w, self._train_guidance(),
                             training=True)
        return F.mse_loss(pred.float(), pack_latents(noise - x0))

    # ------------------------------------------------------------------------- sampling

    def _sample_guidance(self) -> float | None:
        return None

    def _cfg(self) -> tuple[str, float] | None:
        """(negative prompt, scale) for true classifier-free guidance, or None."""
        return None

    def _latent_channels(self) -> int:
        return int(self.transformer.config.in_channels) // 4

    def sample(self, prompt: str, seed: int, steps: int, width: int, height: int) -> Any:
        """Euler steps along the model's shifted sigma schedule, then VAE decode."""
        model = self.denoiser()
        cond = self._condition(prompt)
        cfg = self._cfg()
        neg = self._condition(cfg[0]) if cfg else None
        h, w = 2 * (height // 16), 2 * (width // 16)
        gen = torch.Generator().manual_seed(int(seed))
        noise = torch.randn((1, self._latent_channels(), h, w), generator=gen)
        x = pack_latents(noise).to(self.device, torch.float32)
        steps = max(1, int(steps))
        sig = sample_sigmas(steps, x.shape[1], self._scheduler_config()).float()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for i in range(steps):
                    t = sig[i].expand(1).to(self.device)
                    v = self._predict(x, t, [cond], h, w, self._sample_guidance()).float()
                    if neg is not None and cfg is not None:
                        v_neg = self._predict(x, t, [neg], h, w, None).float()
                        v = v_neg + cfg[1] * (v - v_neg)
                    x = x + (sig[i + 1] - sig[i]).item() * v
        finally:
            model.train(was_training)
        return self._decode(unpack_latents(x, h, w))

    # ------------------------------------------------------------------------- export

    implementation = ""

    def lora_metadata(self) -> dict[str, str]:
        meta = {"modelspec.implementation": self.implementation,
                "isengard.lora_keys": "diffusers transformer.*.lora_A/lora_B + .alpha"}
        guidance = self._train_guidance()
        if guidance is not None and self.transformer is not None \
                and getattr(self.transformer.config, "guidance_embeds", False):
            meta["ss_guidance_scale"] = f"{guidance:g}"
        return meta

    def export_lora(self, lora_state: dict[str, torch.Tensor], rank: int,
                    alpha: float) -> dict[str, torch.Tensor]:
        """``transformer.<module>.lora_A.weight`` / ``.lora_B.weight`` plus a float32
        ``transformer.<module>.alpha`` scalar holding the real alpha (ComfyUI reads alpha only
        from these tensors; diffusers' Flux loader reads them as network alphas)."""
        out: dict[str, torch.Tensor] = {}
        for key, value in lora_state.items():
            k = key.replace(".default.", ".")
            if k.endswith(".lora_A.weight"):
                module = k[: -len(".lora_A.weight")]
            elif k.endswith(".lora_B.weight"):
                module = k[: -len(".lora_B.weight")]
            else:
                raise ValueError(f"unsupported LoRA tensor {key!r} (only plain LoRA A/B)")
            module = module.removeprefix("transformer.")
            out[f"transformer.{k.removeprefix('transformer.')}"] = value.detach().cpu().contiguous()
            out[f"transformer.{module}.alpha"] = torch.tensor(float(alpha), dtype=torch.float32)
        return out
