"""The Flux.1 (dev / schnell) and Chroma families of the built-in trainer, in process.

Tiny random models (tests/helpers/tiny_flux_models.py) on the CPU: loading offline from a
diffusers folder and from ComfyUI-style single files, text/image encoding, the flow-matching
loss going down under a peft LoRA, the 8-bit (torchao) frozen base, sampling, and the LoRA file
(``transformer.*.lora_A/B`` + per-module ``.alpha``) reproducing the trained adapter exactly.

Not testable at this size: BFL-layout single files (``double_blocks.*``, what ComfyUI's
``flux1-dev.safetensors`` holds). diffusers' converters hard-code a width of 3072, so a tiny
BFL file cannot be converted; the single-file tests use diffusers-layout files with a tiny
config folder, and the shipped real-size config folders are checked on the meta device.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from isengard_desktop.core.training.spec import TrainingJob
from isengard_desktop.training_runtime.families import _flux_loading as fl
from isengard_desktop.training_runtime.families.base import ModelMissing
from isengard_desktop.training_runtime.families.chroma import ChromaFamily
from isengard_desktop.training_runtime.families.flux import FluxFamily
from tests.helpers import lora_checks as lc
from tests.helpers import tiny_flux_models as tiny

CPU = torch.device("cpu")
FAMILIES = {"flux-dev": FluxFamily, "flux-schnell": FluxFamily, "chroma": ChromaFamily}
CAPTIONS = ["sks a red square and a blue disc", "sks portrait of a woman smiling",
            "a cat in the park", "sks man standing"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads; on a busy machine torch's thread pool made this
    module take 35 s instead of 1 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-flux")
    return {"flux-dev": tiny.build_flux(root / "dev", "dev"),
            "flux-schnell": tiny.build_flux(root / "schnell", "schnell"),
            "chroma": tiny.build_chroma(root / "chroma")}


def make_job(family: str, base: Path | str, **kw) -> TrainingJob:
    extra = {"t5_max_length": 24, **kw.pop("extra", {})}
    return TrainingJob(job_id="j1", character_id=1, character_name="Ada", trigger_word="sks",
                       family=family, base_model=str(base), dataset_dir="/nonexistent",
                       output_name="ada", resolution=64, extra=extra, **kw)


def loaded(family: str, base: Path | str, **kw):
    fam = FAMILIES[family](make_job(family, base, **kw), CPU, torch.float32)
    fam.load(lambda done, total, detail="": None)
    return fam


def pixels(n: int = 4) -> torch.Tensor:
    """Smooth, learnable 64x64 images in [-1, 1]."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    imgs = [torch.stack([x * (i + 1) / n, y, torch.sin(3 * x + i)]) for i in range(n)]
    return torch.stack(imgs).clamp(-1, 1)


def add_lora(fam, rank: int = 4, alpha: float = 8.0, init=True):
    from peft import LoraConfig

    den = fam.denoiser()
    den.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=init,
                               target_modules=fam.lora_target_modules()))
    params = [p for p in den.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()       # what the loop does: LoRA in fp32
    return den, params


def val_loss(fam, latents, conds) -> float:
    with torch.no_grad():
        return sum(float(fam.loss(latents, conds, torch.Generator().manual_seed(s)))
                   for s in range(6)) / 6


# ------------------------------------------------------------------------------ properties


def test_family_properties():
    for key, arch, version in (("flux-dev", "flux-1-dev/lora", "flux1"),
                               ("flux-schnell", "flux-1-schnell/lora", "flux1"),
                               ("chroma", "chroma/lora", "chroma")):
        fam = FAMILIES[key](make_job(key, "/x"), CPU, torch.float32)
        assert (fam.key, fam.architecture, fam.base_model_version) == (key, arch, version)
        assert (fam.default_resolution, fam.latent_multiple) == (1024, 16)
    with pytest.raises(ValueError):
        FluxFamily(make_job("chroma", "/x"), CPU, torch.float32)


def test_shipped_configs_describe_the_real_models():
    """The single-file config folders hold the real FLUX.1 / Chroma sizes (meta device)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    for key in ("flux-dev", "flux-schnell", "chroma"):
        folder = fl.CONFIGS_DIR / key
        for sub in ("transformer", "vae", "text_encoder"):
            assert (folder / sub / "config.json").is_file()
        assert (folder / "scheduler" / "scheduler_config.json").is_file()
        assert json.loads((folder / "model_index.json").read_text())["transformer"][1] == (
            "ChromaTransformer2DModel" if key == "chroma" else "FluxTransformer2DModel")
    with torch.device("meta"):
        dev = FluxTransformer2DModel.from_config(
            FluxTransformer2DModel.load_config(str(fl.CONFIGS_DIR / "flux-dev" / "transformer")))
        vae = AutoencoderKL.from_config(
            AutoencoderKL.load_config(str(fl.CONFIGS_DIR / "flux-dev" / "vae")))
    assert 11.8e9 < sum(p.numel() for p in dev.parameters()) < 12.0e9
    assert dev.config.guidance_embeds and dev.x_embedder.in_features == 64
    assert vae.config.latent_channels == 16 and vae.config.shift_factor == 0.1159
    schnell = json.loads((fl.CONFIGS_DIR / "flux-schnell" / "transformer" / "config.json")
                         .read_text())
    assert schnell["guidance_embeds"] is False
    t5 = json.loads((fl.CONFIGS_DIR / "chroma" / "text_encoder" / "config.json").read_text())
    assert (t5["d_model"], t5["num_layers"], t5["vocab_size"]) == (4096, 24, 32128)


def test_sampler_schedule_matches_the_diffusers_scheduler():
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    from isengard_desktop.training_runtime.families._flux_shared import sample_sigmas

    for sched in (tiny.FLUX_DEV_SCHEDULER, tiny.FLUX_SCHNELL_SCHEDULER):
        for steps, seq_len in ((4, 16), (20, 4096), (28, 1024)):
            ref = FlowMatchEulerDiscreteScheduler(**sched)
            mu = calculate_shift(seq_len, sched["base_image_seq_len"], sched["max_image_seq_len"],
                                 sched["base_shift"], sched["max_shift"])
            ref.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
            ours = sample_sigmas(steps, seq_len, sched)
            assert torch.allclose(ours.float(), ref.sigmas.float(), atol=1e-6), (sched, steps)


# -------------------------------------------------------------------- loading + encoding


def test_load_folder_encode_text_and_free(models):
    seen: list[tuple[int, int, str]] = []
    fam = FluxFamily(make_job("flux-dev", models["flux-dev"],
                              sample_prompts=["a photo of a woman"]), CPU, torch.float32)
    fam.load(lambda d, t, detail="": seen.append((d, t, detail)))
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] and len(seen) == seen[-1][1] + 1
    assert any("T5" in d for _, _, d in seen)

    conds = fam.encode_text(CAPTIONS[:3])
    assert len(conds) == 3
    t = conds[0].tensors
    assert t["prompt_embeds"].shape == (24, tiny.TEXT_DIM)          # T5 tokens x joint dim
    assert t["pooled_prompt_embeds"].shape == (tiny.TEXT_DIM,)       # CLIP pooled
    assert t["text_ids"].shape == (24, 3) and not t["text_ids"].any()
    assert all(v.device.type == "cpu" and not v.requires_grad for v in t.values())
    assert not torch.equal(conds[0].tensors["prompt_embeds"], conds[1].tensors["prompt_embeds"])

    fam.free_text_encoders()
    assert not fam.text_encoders and not fam.tokenizers
    # the sample prompt (trigger word added, as the loop does) was encoded before freeing
    assert "sks, a photo of a woman" in fam._prompt_cache

    lat = fam.encode_images(pixels(2))
    assert lat.shape == (2, 4, 8, 8) and lat.device.type == "cpu"
    assert torch.isfinite(lat).all()


def test_chroma_keeps_caption_tokens_plus_one_pad(models):
    fam = loaded("chroma", models["chroma"])
    short, longer = fam.encode_text(["a cat", "a photo of a woman smiling in the park"])
    n_short = len(fam.tokenizers["t5"]("a cat").input_ids)              # + </s>
    assert short.tensors["prompt_embeds"].shape == (n_short + 1, tiny.TEXT_DIM)
    assert longer.tensors["prompt_embeds"].shape[0] > short.tensors["prompt_embeds"].shape[0]
    kw = fam._condition_kwargs([short, longer], n_img=16, guidance=None)
    mask = kw["attention_mask"]
    assert mask.dtype == torch.bool and mask.shape == (2, longer.tensors["prompt_embeds"].shape[0]
                                                       + 16)
    assert mask[0].sum() == n_short + 1 + 16 and mask[1].all()


def test_lora_targets_exist_and_skip_the_final_projection(models):
    for key in ("flux-dev", "chroma"):
        fam = loaded(key, models[key])
        names = {n for n, m in fam.transformer.named_modules() if isinstance(m, torch.nn.Linear)}
        targets = fam.lora_target_modules()
        for t in targets:
            assert any(n == t or n.endswith("." + t) for n in names), t
        den, _ = add_lora(fam)
        wrapped = {n for n, m in den.named_modules() if hasattr(m, "lora_A")}
        assert "proj_out" not in wrapped and "single_transformer_blocks.1.proj_out" in wrapped
        assert "transformer_blocks.0.attn.add_k_proj" in wrapped
        assert "single_transformer_blocks.0.proj_mlp" in wrapped
    attn_only = FluxFamily(make_job("flux-dev", "/x", extra={"lora_targets": "attention"}),
                           CPU, torch.float32).lora_target_modules()
    assert "proj_mlp" not in attn_only and "attn.to_add_out" in attn_only


# ------------------------------------------------------------------------------ training


@pytest.mark.parametrize("family", ["flux-dev", "flux-schnell", "chroma"])
def test_lora_training_lowers_the_loss(models, family):
    fam = loaded(family, models[family])
    conds = fam.encode_text(CAPTIONS)
    fam.free_text_encoders()
    lat = fam.encode_images(pixels(4))
    den, params = add_lora(fam)
    base = {n: p.detach().clone() for n, p in den.named_parameters() if "lora_" not in n}
    assert params and all("lora_" in n for n, p in den.named_parameters() if p.requires_grad)

    before = val_loss(fam, lat, conds)
    opt = torch.optim.AdamW(params, lr=5e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        loss = fam.loss(lat, conds, gen)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    after = val_loss(fam, lat, conds)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])
    assert after < 0.9 * before, (before, after)
    assert all(torch.equal(p, base[n]) for n, p in den.named_parameters() if n in base)

    image = fam.sample(CAPTIONS[0], seed=3, steps=3, width=64, height=64)
    assert image.size == (64, 64) and image.mode == "RGB"
    again = fam.sample(CAPTIONS[0], seed=3, steps=3, width=64, height=64)
    assert image.tobytes() == again.tobytes()


def test_sample_reencodes_an_unseen_prompt(models):
    fam = loaded("flux-dev", models["flux-dev"])
    fam.encode_text(["sks"])
    fam.free_text_encoders()
    fam.free_vae()
    image = fam.sample("a cat in the park", seed=0, steps=2, width=64, height=64)
    assert image.size == (64, 64)
    assert not fam.text_encoders and "a cat in the park" in fam._prompt_cache


# ------------------------------------------------------------------------- 8-bit base


@pytest.mark.parametrize("mode", ["int8", "float8"])
def test_quantized_base_trains_lora_only(models, mode):
    from peft.tuners.lora.torchao import TorchaoLoraLinear

    from isengard_desktop.training_runtime.quantize import is_quantized_weight

    fam = loaded("flux-dev", models["flux-dev"], quantize_base=mode)
    tr = fam.transformer
    summary = fam.quantize_summary
    assert summary.mode == mode and summary.layers > 0
    assert summary.bytes_after < 0.35 * summary.bytes_before        # fp32 -> 8 bit + scales
    assert is_quantized_weight(tr.transformer_blocks[0].attn.to_q.weight)
    assert is_quantized_weight(tr.single_transformer_blocks[0].proj_out.weight)
    assert not is_quantized_weight(tr.proj_out.weight)               # kept full precision
    assert not is_quantized_weight(tr.x_embedder.weight)

    conds = fam.encode_text(CAPTIONS[:2])
    fam.free_text_encoders()
    lat = fam.encode_images(pixels(2))
    den, params = add_lora(fam)
    q = den.transformer_blocks[0].attn.to_q
    assert isinstance(q, TorchaoLoraLinear)
    assert q.lora_A["default"].weight.dtype == torch.float32
    frozen = {n: p for n, p in den.named_parameters() if is_quantized_weight(p)}
    assert frozen and not any(p.requires_grad for p in frozen.values())
    before = {n: p.dequantize().clone() for n, p in frozen.items()}

    opt = torch.optim.AdamW(params, lr=1e-3)
    for step in range(3):
        loss = fam.loss(lat, conds, torch.Generator().manual_seed(step))
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
        assert any(p.grad.abs().sum() > 0 for p in params)
        opt.step()
        opt.zero_grad()
    for n, p in den.named_parameters():
        if n in before:
            assert is_quantized_weight(p) and torch.equal(p.dequantize(), before[n])
    assert fam.sample(CAPTIONS[0], seed=0, steps=2, width=64, height=64).size == (64, 64)

    from peft.utils import get_peft_model_state_dict

    lora = get_peft_model_state_dict(den)
    assert lora and all(v.dtype == torch.float32 for v in lora.values())
    assert len(fam.export_lora(lora, 4, 8.0)) == len(lora) // 2 * 3


# ------------------------------------------------------------------------------ LoRA file


# Building ChromaTransformer2DModel directly: diffusers 0.42.1 constructs its rotary embedding
# through a deprecated import path of its own (the family hides this while loading).
@pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning")
@pytest.mark.parametrize("family", ["flux-dev", "chroma"])
def test_exported_lora_reproduces_the_adapter(models, family, tmp_path):
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    rank, alpha = 4, 8.0
    fam = loaded(family, models[family])
    torch.manual_seed(1)
    den, _ = add_lora(fam, rank, alpha, init=False)      # random A and B: a non-zero delta
    lora = {k: v.detach().cpu() for k, v in get_peft_model_state_dict(den).items()}
    tensors = fam.export_lora(lora, rank, alpha)
    path = tmp_path / "lora.safetensors"
    save_file(tensors, str(path))
    tensors = load_file(str(path))

    modules = lc.assert_flux_keys(tensors, rank, alpha)
    assert len(modules) == len(lora) // 2

    trained = lc.flux_forward(den)
    fresh = lc.load_transformer(models[family])
    assert (lc.flux_forward(fresh) - trained).abs().max() > 1e-3       # the LoRA matters
    lc.apply_flux_lora(fresh, tensors)
    assert torch.allclose(lc.flux_forward(fresh), trained, atol=1e-5)

    # diffusers' own Flux LoRA loader reads the .alpha tensors as network alphas
    assert torch.allclose(lc.flux_output_via_diffusers(models[family], path), trained,
                          atol=1e-5)


def test_export_rejects_unknown_adapter_tensors(models):
    fam = FluxFamily(make_job("flux-dev", "/x"), CPU, torch.float32)
    with pytest.raises(ValueError):
        fam.export_lora({"a.lora_magnitude_vector": torch.zeros(2)}, 4, 4.0)


# ---------------------------------------------------------------------------- single files


def test_single_file_in_a_comfyui_install(models, tmp_path):
    """models/diffusion_models/<file> + models/vae + models/text_encoders, tokenizers from the
    install's comfy/ folder - found without being told."""
    model_file = tiny.build_comfy_install(tmp_path / "ComfyUI", models["flux-dev"])
    config = tiny.write_config_dir(models["flux-dev"], tmp_path / "config")
    fam = loaded("flux-dev", model_file, extra={"config_dir": str(config)})
    plan = fam.plan
    assert plan.single_file and plan.vae.path.name == "ae.safetensors"
    assert plan.encoders["t5"].path.name == "t5xxl_fp16.safetensors"
    assert plan.tokenizers["clip"] == tmp_path / "ComfyUI" / "comfy" / "sd1_tokenizer"
    ref = loaded("flux-dev", models["flux-dev"])
    for part in ("transformer", "vae"):
        a, b = getattr(fam, part).state_dict(), getattr(ref, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    got, want = fam.encode_text(CAPTIONS[:1])[0], ref.encode_text(CAPTIONS[:1])[0]
    for k in want.tensors:
        assert torch.equal(got.tensors[k], want.tensors[k]), k

    # the VAE under its other common name, ae.sft (safetensors inside)
    vae_dir = tmp_path / "ComfyUI" / "models" / "vae"
    (vae_dir / "ae.safetensors").rename(vae_dir / "ae.sft")
    sft = loaded("flux-dev", model_file, extra={"config_dir": str(config)})
    assert sft.plan.vae.path.name == "ae.sft"
    a, b = sft.vae.state_dict(), ref.vae.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_single_file_bundling_vae_and_text_encoders(models, tmp_path):
    ckpt = tiny.build_bundled_checkpoint(tmp_path / "chroma-aio.safetensors", models["chroma"])
    config = tiny.write_config_dir(models["chroma"], tmp_path / "config")
    fam = loaded("chroma", ckpt, tokenizer_dir=str(models["chroma"] / "tokenizer"),
                 extra={"config_dir": str(config)})
    assert (fam.plan.vae.prefix, fam.plan.encoders["t5"].prefix) == (
        "vae.", "text_encoders.t5xxl.transformer.")
    conds = fam.encode_text(CAPTIONS[:2])
    fam.free_text_encoders()
    assert torch.isfinite(fam.loss(fam.encode_images(pixels(2)), conds,
                                   torch.Generator().manual_seed(0)))


def test_missing_tokenizers_and_encoders_are_named(models, tmp_path):
    model_file = tiny.build_comfy_install(tmp_path / "ComfyUI", models["flux-dev"])
    config = tiny.write_config_dir(models["flux-dev"], tmp_path / "config")
    shutil.rmtree(tmp_path / "ComfyUI" / "comfy")
    (tmp_path / "ComfyUI" / "models" / "text_encoders" / "clip_l.safetensors").unlink()
    fam = FluxFamily(make_job("flux-dev", model_file, extra={"config_dir": str(config)}),
                     CPU, torch.float32)
    with pytest.raises(ModelMissing) as err:
        fam.load(lambda *a: None)
    msg = str(err.value)
    assert "CLIP-L text encoder (clip_l" in msg
    assert str(tmp_path / "ComfyUI" / "models" / "text_encoders") in msg
    assert "T5-XXL text encoder tokenizer" in msg
    assert "CLIP-L text encoder tokenizer" not in msg   # the shipped CLIP vocabulary stands in
    assert "comfy/text_encoders/t5_tokenizer" in msg
    assert str(config / "tokenizer_2") in msg                    # every place looked is named

    # a diffusers folder without its T5 tokenizer: named; a ComfyUI install supplies it
    folder = tmp_path / "dev-no-tok"
    shutil.copytree(models["flux-dev"], folder)
    shutil.rmtree(folder / "tokenizer_2")
    with pytest.raises(ModelMissing, match="T5-XXL text encoder tokenizer"):
        loaded("flux-dev", folder)
    comfy = tmp_path / "Comfy2"
    tiny.build_comfy_install(comfy, models["flux-dev"])
    fam = loaded("flux-dev", folder, tokenizer_dir=str(comfy))
    assert fam.plan.tokenizers["t5"] == comfy / "comfy" / "text_encoders" / "t5_tokenizer"

    with pytest.raises(ModelMissing, match="not found"):
        loaded("flux-dev", tmp_path / "nope.safetensors")


def test_single_file_uses_the_shipped_config_folder(models, tmp_path):
    model_file = tiny.build_comfy_install(tmp_path / "ComfyUI", models["flux-schnell"])
    plan = fl.Resolver("flux-schnell", FluxFamily.encoder_specs,
                       make_job("flux-schnell", model_file)).resolve()
    assert plan.config_dir == fl.CONFIGS_DIR / "flux-schnell"
    assert plan.scheduler["use_dynamic_shifting"] is False


# ------------------------------------------------------------------------------ 4-bit base


def test_nf4_base_trains_lora_only_and_is_a_quarter_of_fp16(models):
    """quantize_base "nf4" (issue 16: Flux on a 12 GB card): torchao's NF4 weights under
    peft's plain LoRA layers; the LoRA trains, the 4-bit base never changes; layers whose size
    NF4 cannot block stay in full precision and are counted as kept."""
    from isengard_desktop.training_runtime.quantize import is_quantized_weight, nf4_fits

    fam = loaded("flux-dev", models["flux-dev"], quantize_base="nf4")
    tr, summary = fam.transformer, fam.quantize_summary
    assert summary.mode == "nf4" and summary.layers > 0
    assert summary.bytes_after < 0.2 * summary.bytes_before        # fp32 → 4 bit + scales
    linears = {n: m for n, m in tr.named_modules() if isinstance(m, torch.nn.Linear)}
    for name, layer in linears.items():
        if is_quantized_weight(layer.weight):
            assert nf4_fits(layer.weight) and not name.startswith(("proj_out", "x_embedder"))
    assert not is_quantized_weight(tr.proj_out.weight)

    conds = fam.encode_text(CAPTIONS[:2])
    fam.free_text_encoders()
    lat = fam.encode_images(pixels(2))
    den, params = add_lora(fam)
    frozen = {n: p for n, p in den.named_parameters() if is_quantized_weight(p)}
    assert frozen and not any(p.requires_grad for p in frozen.values())
    before = {n: p.get_original_weight().clone() for n, p in frozen.items()}
    opt = torch.optim.AdamW(params, lr=1e-3)
    losses = []
    for step in range(3):
        loss = fam.loss(lat, conds, torch.Generator().manual_seed(step))
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
        assert any(p.grad.abs().sum() > 0 for p in params)
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    for n, p in den.named_parameters():
        if n in before:
            assert is_quantized_weight(p) and torch.equal(p.get_original_weight(), before[n])
    from peft.utils import get_peft_model_state_dict

    lora = get_peft_model_state_dict(den)
    assert lora and all(v.dtype == torch.float32 for v in lora.values())
    assert len(fam.export_lora(lora, 4, 8.0)) == len(lora) // 2 * 3
