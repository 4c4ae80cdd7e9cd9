"""What a video workflow lacks, against the recorded ComfyUI 0.3.64 /object_info (with the
video workflows' files listed) and against model folders on disk."""

from __future__ import annotations

import copy

from isengard_desktop.core.video.model_check import ModelCheck, missing_here, workflow_gaps
from tests.unit.test_video_workflows import INFO, LIBRARY, VIDEO, equipped


def unet_list(info: dict) -> list:
    return info["UNETLoader"]["input"]["required"]["unet_name"][0]


def test_an_equipped_server_lacks_nothing_and_a_missing_main_model_is_named_by_file():
    info = equipped(INFO)
    assert {s.name: workflow_gaps(s, info) for s in VIDEO} == {s.name: [] for s in VIDEO}
    spec = LIBRARY.get("wan21-i2v")
    other = copy.deepcopy(info)
    unet_list(other)[:] = [n for n in unet_list(other) if "i2v" not in n]
    assert unet_list(other)                            # other diffusion models are listed
    assert workflow_gaps(spec, other) == [
        "no Wan 2.1 I2V diffusion model (wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors) in "
        "models/diffusion_models (or models/unet)"]
    # a job naming its own model file is not held back by the pick
    assert workflow_gaps(spec, other, model="my-wan-i2v-finetune.safetensors") == []
    # a renamed copy with the workflow's hints in its name is picked
    unet_list(other).append("Wan2.1-I2V-14B-480P_fp16.safetensors")
    assert workflow_gaps(spec, other) == []


def test_a_missing_node_is_not_a_missing_model():
    info = equipped(INFO, remove="WanImageToVideo")
    gaps = workflow_gaps(LIBRARY.get("wan21-i2v"), info)
    assert gaps == ["needs node WanImageToVideo (a newer ComfyUI)"]
    assert not ModelCheck("wan21-i2v", "t", "http://x", tuple(gaps)).models_missing
    assert ModelCheck("wan21-i2v", "t", "http://x", ("no VAE in models/vae",)).models_missing


def test_the_model_folders_are_searched_for_the_video_set_of_the_workflow(tmp_path):
    app_models, linked = tmp_path / "models", tmp_path / "linked"
    assert missing_here("ltxv-t2v", [app_models, linked]) == (
        "no ltx-video-2b-v0.9.5.safetensors in checkpoints/",
        "no t5xxl_fp16.safetensors in text_encoders/")
    (linked / "anywhere" / "deep").mkdir(parents=True)
    (linked / "anywhere" / "deep" / "t5xxl_fp16.safetensors").write_bytes(b"x")
    assert missing_here("ltxv-t2v", [app_models, linked]) == (
        "no ltx-video-2b-v0.9.5.safetensors in checkpoints/",)
    assert missing_here("sdxl", [app_models]) == ()          # no video set serves it
