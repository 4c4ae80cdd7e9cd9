"""Pieces of the built-in trainer's child runtime, in-process: buckets and batch order,
captions, checkpoints (verify, torn files, retention), kohya key mapping for the real and tiny
SD1.5/SDXL UNet layouts, LoRA metadata, error classification and the event emitter."""

from __future__ import annotations

import errno
import io
import json
import math
from pathlib import Path

import pytest

from isengard_desktop.core.training.protocol import (ErrorEvent, PhaseEvent, StepEvent,
                                                     parse_event)
from isengard_desktop.core.training.spec import SpecError, TrainingJob
from isengard_desktop.training_runtime import checkpoints as ckpts
from isengard_desktop.training_runtime.data import (BatchPlan, ensure_trigger, make_buckets,
                                                    nearest_bucket)
from isengard_desktop.training_runtime.errors import (ConfigError, ModelMissingError,
                                                      NanLossError, classify, exit_code)
from isengard_desktop.training_runtime.events import Emitter
from isengard_desktop.training_runtime.lora_file import (build_metadata, read_metadata,
                                                         tag_frequency, write_lora)

CONFIGS = Path(__file__).resolve().parents[2] / "isengard_desktop" / "training_runtime" / "configs"


def make_job(tmp_path: Path, **fields) -> TrainingJob:
    data = dict(job_id="j1", character_id=1, character_name="Alice", trigger_word="ohwx",
                family="sd15", base_model=str(tmp_path / "model.safetensors"),
                dataset_dir=str(tmp_path / "photos"), output_name="alice", rank=16, alpha=8.0)
    data.update(fields)
    return TrainingJob.from_dict(data)


# --------------------------------------------------------------------------- data


def test_buckets_have_the_right_area_sides_and_ratios():
    buckets = make_buckets(512, 64)
    assert (512, 512) in buckets and (384, 640) in buckets and (640, 384) in buckets
    for w, h in buckets:
        assert w % 64 == 0 and h % 64 == 0
        assert w * h <= 512 * 512 and w * h >= 0.8 * 512 * 512
        assert max(w / h, h / w) <= 2.0
        assert (h, w) in buckets
    assert make_buckets(64, 64) == [(64, 64)]
    assert all(w % 8 == 0 and h % 8 == 0 for w, h in make_buckets(1024, 8))


def test_nearest_bucket_follows_aspect_ratio():
    buckets = make_buckets(512, 64)
    assert nearest_bucket(1000, 1000, buckets) == (512, 512)
    w, h = nearest_bucket(1500, 1000, buckets)
    assert w > h and abs(math.log(w / h) - math.log(1.5)) < 0.15
    w, h = nearest_bucket(600, 1200, buckets)
    assert h > w


def test_batch_plan_is_deterministic_and_never_mixes_buckets():
    buckets = [(64, 64)] * 5 + [(64, 128)] * 3
    plan = BatchPlan(buckets, batch_size=2, repeats=2, seed=7)
    again = BatchPlan(buckets, batch_size=2, repeats=2, seed=7)
    assert plan.batches_per_epoch == 5 + 3  # ceil(10/2) + ceil(6/2)
    seen = []
    for k in range(plan.batches_per_epoch):
        batch = plan.batch(k)
        assert batch == again.batch(k)
        assert len({buckets[i] for i in batch}) == 1
        seen += batch
    assert sorted(seen) == sorted(list(range(8)) * 2)  # every image `repeats` times an epoch
    assert [plan.batch(k) for k in range(8, 16)] != [plan.batch(k) for k in range(8)]
    other = BatchPlan(buckets, batch_size=2, repeats=2, seed=8)
    assert [other.batch(k) for k in range(8)] != [plan.batch(k) for k in range(8)]
    drops = [d for k in range(400) for d in plan.dropped(k, 2, 0.25)]
    assert 0.15 < sum(drops) / len(drops) < 0.35
    assert plan.dropped(3, 2, 0.25) == again.dropped(3, 2, 0.25)
    assert plan.dropped(3, 2, 0.0) == [False, False]


@pytest.mark.parametrize("caption,expected", [
    ("a woman smiling", "ohwx, a woman smiling"),
    ("ohwx, a woman", "ohwx, a woman"),
    ("photo of ohwx woman", "photo of ohwx woman"),
    ("ohwxman on a bike", "ohwx, ohwxman on a bike"),
    ("", "ohwx"),
])
def test_trigger_is_inserted_only_when_absent(caption, expected):
    assert ensure_trigger(caption, "ohwx") == expected


# --------------------------------------------------------------------------- checkpoints


def _save(root: Path, step: int) -> ckpts.Checkpoint:
    return ckpts.save(root, step, {"a.bin": lambda p: p.write_bytes(b"x" * (100 + step)),
                                   "b.json": lambda p: p.write_text(json.dumps({"s": step}))},
                      {"rank": 4})


def test_checkpoint_save_verify_and_torn_files(tmp_path):
    root = tmp_path / "checkpoints"
    c = _save(root, 10)
    assert c.path == root / "checkpoint-10" and c.manifest["rank"] == 4
    assert ckpts.verify(c.path) == (True, "")
    assert c.manifest["files"]["a.bin"]["bytes"] == 110
    data = (c.path / "a.bin").read_bytes()
    (c.path / "a.bin").write_bytes(data[:50])  # truncated
    ok, why = ckpts.verify(c.path)
    assert not ok and "a.bin" in why
    (c.path / "a.bin").write_bytes(b"y" * 110)  # same size, different bytes
    assert ckpts.verify(c.path, full=False)[0] and not ckpts.verify(c.path)[0]
    (c.path / "manifest.json").unlink()
    assert not ckpts.verify(c.path)[0]
    assert not list(root.glob(".tmp-*"))


def test_newest_valid_skips_broken_and_refused(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (10, 20, 30):
        _save(root, step)
    (root / "checkpoint-30" / "b.json").write_text("{}")
    skipped = []
    found = ckpts.newest_valid(root, on_skip=lambda c, why: skipped.append(c.step))
    assert found.step == 20 and skipped == [30]
    found = ckpts.newest_valid(root, accept=lambda c: "no" if c.step == 20 else "")
    assert found.step == 10
    assert ckpts.newest_valid(tmp_path / "none") is None


def test_retention_keeps_the_newest_complete_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (5, 10, 15, 20):
        _save(root, step)
    (root / ".tmp-checkpoint-25-99999").mkdir()  # left by a killed save
    (root / "checkpoint-20" / "a.bin").unlink()  # broken newest
    removed = ckpts.prune(root, keep=2)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-10", "checkpoint-15"]
    assert {p.name for p in removed} == {"checkpoint-5", "checkpoint-20",
                                         ".tmp-checkpoint-25-99999"}
    assert [c.step for c in ckpts.list_checkpoints(root)] == [15, 10]


def test_saving_the_same_step_again_replaces_it(tmp_path):
    root = tmp_path / "checkpoints"
    _save(root, 10)
    ckpts.save(root, 10, {"a.bin": lambda p: p.write_bytes(b"new")})
    assert (root / "checkpoint-10" / "a.bin").read_bytes() == b"new"
    assert ckpts.verify(root / "checkpoint-10")[0]
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-10"]


# --------------------------------------------------------------------------- kohya keys


def _config(family: str) -> dict:
    return json.loads((CONFIGS / family / "unet" / "config.json").read_text())


@pytest.mark.parametrize("family,diffusers,ldm", [
    ("sd15", "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q",
     "input_blocks.2.1.transformer_blocks.0.attn1.to_q"),
    ("sd15", "down_blocks.2.attentions.0.proj_in", "input_blocks.7.1.proj_in"),
    ("sd15", "mid_block.attentions.0.transformer_blocks.0.ff.net.2",
     "middle_block.1.transformer_blocks.0.ff.net.2"),
    ("sd15", "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k",
     "output_blocks.11.1.transformer_blocks.0.attn2.to_k"),
    ("sd15", "up_blocks.1.upsamplers.0.conv", "output_blocks.5.2.conv"),
    ("sd15", "up_blocks.0.upsamplers.0.conv", "output_blocks.2.1.conv"),
    ("sd15", "down_blocks.3.resnets.1.conv2", "input_blocks.11.0.out_layers.3"),
    ("sd15", "down_blocks.0.downsamplers.0.conv", "input_blocks.3.0.op"),
    ("sd15", "mid_block.resnets.1.time_emb_proj", "middle_block.2.emb_layers.1"),
    ("sdxl", "down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_out.0",
     "input_blocks.4.1.transformer_blocks.1.attn1.to_out.0"),
    ("sdxl", "down_blocks.2.attentions.1.transformer_blocks.9.ff.net.0.proj",
     "input_blocks.8.1.transformer_blocks.9.ff.net.0.proj"),
    ("sdxl", "up_blocks.0.attentions.2.proj_out", "output_blocks.2.1.proj_out"),
    ("sdxl", "up_blocks.1.upsamplers.0.conv", "output_blocks.5.2.conv"),
    ("sdxl", "add_embedding.linear_1", "label_emb.0.0"),
])
def test_real_layout_names(family, diffusers, ldm):
    from isengard_desktop.training_runtime.families.unet_keys import (kohya_module_name,
                                                                      unet_module_to_ldm)

    config = _config(family)
    assert unet_module_to_ldm(diffusers, config) == ldm
    assert kohya_module_name(diffusers, config) == "lora_unet_" + ldm.replace(".", "_")


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_key_mapping_matches_diffusers_converter_and_every_lora_key_maps_back(kind):
    """Every weight renamed to the original layout converts back to itself through diffusers'
    own original→diffusers converter; every exported LoRA module names an existing module
    (the test ComfyUI applies: ``lora_unet_<original key with _>``)."""
    import torch
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from isengard_desktop.training_runtime.families.unet import TARGET_MODULES
    from isengard_desktop.training_runtime.families.unet_keys import (kohya_to_diffusers_map,
                                                                      peft_to_kohya,
                                                                      unet_state_dict_to_ldm)
    from isengard_desktop.training_runtime.tiny_models import sd15_unet, sdxl_unet

    unet = sd15_unet() if kind == "sd15" else sdxl_unet()
    sd = unet.state_dict()
    ldm = unet_state_dict_to_ldm(sd, unet.config)
    back = convert_ldm_unet_checkpoint({f"model.diffusion_model.{k}": v for k, v in ldm.items()},
                                       dict(unet.config))
    assert set(back) == set(sd)
    assert all(back[k] is sd[k] for k in sd)

    unet.add_adapter(LoraConfig(r=4, lora_alpha=6.0, target_modules=TARGET_MODULES))
    peft_sd = get_peft_model_state_dict(unet)
    kohya = peft_to_kohya(peft_sd, unet.config, alpha=6.0)
    assert len(kohya) == len(peft_sd) // 2 * 3
    ldm_modules = {"lora_unet_" + k[: -len(".weight")].replace(".", "_")
                   for k in ldm if k.endswith(".weight")}
    inverse = kohya_to_diffusers_map([n for n, _ in unet.named_modules()], unet.config)
    for key, value in kohya.items():
        module, _, part = key.partition(".")
        assert module in ldm_modules, key
        assert module in inverse
        if part == "alpha":
            assert value.dtype == torch.float32 and value.item() == 6.0
    peft_key = next(iter(peft_sd))
    name = peft_key.rsplit(".lora_", 1)[0]
    kohya_name = next(k for k, v in inverse.items() if v == name)
    assert torch.equal(kohya[f"{kohya_name}.lora_down.weight"],
                       peft_sd[f"{name}.lora_A.weight"])


# --------------------------------------------------------------------------- metadata


def test_metadata_is_strings_with_the_kohya_and_modelspec_fields(tmp_path):
    import torch

    job = make_job(tmp_path)
    meta = build_metadata(job, architecture="stable-diffusion-v1/lora",
                          base_model_version="sd_v1", steps=300, resolution=(512, 512),
                          captions=["ohwx, a woman, smiling", "ohwx, a woman"], num_images=2,
                          extra={"ss_v_parameterization": "False"})
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    assert meta["ss_output_name"] == "alice"
    assert meta["ss_network_module"] == "networks.lora"
    assert meta["ss_network_dim"] == "16" and meta["ss_network_alpha"] == "8.0"
    assert meta["ss_steps"] == "300" and meta["ss_resolution"] == "(512, 512)"
    assert json.loads(meta["ss_tag_frequency"]) == {
        "photos": {"ohwx": 2, "a woman": 2, "smiling": 1}}
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["modelspec.trigger_phrase"] == "ohwx"
    assert meta["modelspec.title"] == "Alice"
    assert meta["software.name"] == "Isengard Desktop"
    assert meta["ss_v_parameterization"] == "False"

    path = write_lora(tmp_path / "out" / "alice.safetensors",
                      {"lora_unet_x.alpha": torch.tensor(8.0)}, meta)
    assert read_metadata(path) == meta
    assert [p.name for p in path.parent.iterdir()] == ["alice.safetensors"]
    assert tag_frequency(["", " , a"]) == {"a": 1}
    with pytest.raises(TypeError):
        write_lora(tmp_path / "bad.safetensors", {}, {"ss_steps": 3})


# --------------------------------------------------------------------------- errors, events


def test_errors_are_classified_with_plain_messages(tmp_path):
    import torch

    job = make_job(tmp_path, batch_size=4, resolution=1024, rank=32)
    assert classify(SpecError("rank: must be between 1 and 1024")).kind == "config"
    assert classify(ConfigError("dataset_dir: no images")).kind == "config"
    assert exit_code(classify(ConfigError("x"))) == 2
    missing = classify(ModelMissingError("The base model /m does not exist."))
    assert missing.kind == "model_missing" and "/m" in missing.message

    from isengard_desktop.training_runtime.families.base import ModelMissing

    assert classify(ModelMissing("no tokenizer at /t")).kind == "model_missing"
    full = classify(OSError(errno.ENOSPC, "No space left on device", "/jobs/x.safetensors"))
    assert full.kind == "disk_full" and "/jobs/x.safetensors" in full.message
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert classify(wrapped).kind == "disk_full"
    oom = classify(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), job)
    assert oom.kind == "oom"
    assert all(w in oom.message for w in ("batch size 4", "resolution 1024", "rank 32"))
    assert classify(NanLossError("The loss became NaN at step 7")).kind == "nan_loss"
    crash = classify(KeyError("boom"))
    assert crash.kind == "crash" and "KeyError" in crash.message
    assert exit_code(crash) == 1


def test_registry_maps_families_and_refuses_unknown_ones():
    from isengard_desktop.training_runtime.families.registry import FAMILY_CLASSES, family_class
    from isengard_desktop.training_runtime.families.unet import SD15Family, SDXLFamily

    assert family_class("sd15") is SD15Family and family_class("sdxl") is SDXLFamily
    assert set(FAMILY_CLASSES) == {"sd15", "sdxl", "flux-dev", "flux-schnell", "chroma"}
    with pytest.raises(ConfigError, match="family"):
        family_class("sd3")


def test_missing_tokenizer_says_what_and_where(tmp_path):
    import torch

    from isengard_desktop.training_runtime.families.base import ModelMissing
    from isengard_desktop.training_runtime.families.unet import SD15Family

    (tmp_path / "model.safetensors").write_bytes(b"")
    comfy = tmp_path / "ComfyUI"
    fam = SD15Family(make_job(tmp_path, tokenizer_dir=str(comfy)), torch.device("cpu"),
                     torch.float32)
    # by default the shipped CLIP vocabulary is the last resort
    shipped = fam._find_tokenizer("tokenizer")
    assert (shipped / "vocab.json").is_file() and (shipped / "merges.txt").is_file()
    fam.job.extra["use_shipped_tokenizer"] = False
    with pytest.raises(ModelMissing) as info:
        fam._find_tokenizer("tokenizer")
    assert "vocab.json" in str(info.value) and str(comfy) in str(info.value)
    found = comfy / "comfy" / "sd1_tokenizer"
    found.mkdir(parents=True)
    (found / "vocab.json").write_text("{}")
    (found / "merges.txt").write_text("#version: 0.2\n")
    assert fam._find_tokenizer("tokenizer") == found


def test_emitter_writes_one_protocol_line_per_event():
    stream = io.StringIO()
    emitter = Emitter(stream)
    emitter.phase("caching", 3, 10, "latents")
    emitter.step(5, 100, float("nan"), 1e-4, 0.5, 47.5)
    emitter.emit(ErrorEvent("crash", "x"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert parse_event(lines[0]) == PhaseEvent("caching", 3, 10, "latents")
    step = parse_event(lines[1])
    assert isinstance(step, StepEvent) and math.isnan(step.loss) and step.eta_sec == 47.5


def test_shipped_configs_describe_the_real_models():
    """The shipped config folders (used to read single-file checkpoints offline) build models
    with exactly the published parameter counts of SD1.5 and SDXL base."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    with init_empty_weights():
        for family, unet_params in (("sd15", 859_520_964), ("sdxl", 2_567_463_684)):
            folder = CONFIGS / family
            assert json.loads((folder / "model_index.json").read_text())["unet"][1] == \
                "UNet2DConditionModel"
            config = UNet2DConditionModel.load_config(folder / "unet")
            unet = UNet2DConditionModel.from_config(config)
            assert count(unet) == unet_params
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
            assert count(vae) == 83_653_863
            te = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
            assert count(te) == 123_060_480
            sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
            assert DDPMScheduler.from_config(sched).config.beta_schedule == "scaled_linear"
        te2 = CLIPTextModelWithProjection(
            CLIPTextConfig.from_pretrained(CONFIGS / "sdxl" / "text_encoder_2"))
        assert count(te2) == 694_659_840
