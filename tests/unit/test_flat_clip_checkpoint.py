"""An SD 1.5 single-file checkpoint whose CLIP keys lack the ``text_model.`` level (ComfyUI
loads it: comfy/supported_models.py SD15.process_clip_state_dict) trains too; one whose text
encoder cannot be read is reported as a missing model naming the file (issue 10, item 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from isengard_desktop.core.training.spec import TrainingJob
from isengard_desktop.training_runtime import tiny_models as tiny
from isengard_desktop.training_runtime.errors import classify
from isengard_desktop.training_runtime.families.base import ModelMissing
from isengard_desktop.training_runtime.families.unet import SD15Family

PREFIX = "cond_stage_model.transformer."


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flat-clip")
    folder = tiny.build_sd15(root / "sd15")
    single = tiny.build_sd15_single_file(root / "nested.safetensors", folder)
    sd = load_file(str(single))
    flat = {k.replace(PREFIX + "text_model.", PREFIX): v for k, v in sd.items()}
    save_file(flat, str(root / "flat.safetensors"))
    broken = {k: v for k, v in flat.items() if "encoder.layers.0." not in k}
    save_file(broken, str(root / "broken.safetensors"))
    return {"root": root, "folder": folder, "flat": root / "flat.safetensors",
            "broken": root / "broken.safetensors"}


def family_for(assets: dict[str, Path], base: Path) -> SD15Family:
    job = TrainingJob.from_dict(dict(
        job_id="j1", character_id=1, character_name="Alice", trigger_word="ohwx",
        family="sd15", base_model=str(base), dataset_dir=str(assets["root"]),
        output_name="alice", extra={"config_dir": str(assets["folder"]),
                                    "tokenizer_dir": str(assets["folder"] / "tokenizer")},
        tokenizer_dir=str(assets["folder"] / "tokenizer")))
    return SD15Family(job, torch.device("cpu"), torch.float32)


def test_flat_clip_keys_load_like_comfyui(assets):
    fam = family_for(assets, assets["flat"])
    fam.load(lambda *a, **k: None)
    from transformers import CLIPTextModel

    want = CLIPTextModel.from_pretrained(str(assets["folder"] / "text_encoder"),
                                         local_files_only=True).state_dict()
    got = fam.encoders[0].state_dict()
    for key, value in want.items():
        if "position_ids" not in key:
            torch.testing.assert_close(got[key], value)


def test_unreadable_text_encoder_is_a_missing_model_naming_the_file(assets):
    fam = family_for(assets, assets["broken"])
    with pytest.raises(ModelMissing) as info:
        fam.load(lambda *a, **k: None)
    message = str(info.value)
    assert "broken.safetensors" in message and "encoder.layers.0" in message
    assert classify(info.value).kind == "model_missing"
