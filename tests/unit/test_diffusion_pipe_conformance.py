"""The diffusion-pipe TOMLs against diffusion-pipe 8f83dbf2's own rules (issue 10, items 9-12):
only model types train.py dispatches, the [model] keys each model class reads unconditionally,
the learning-rate schedule the job asks for, every main-config key one it reads."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from isengard_desktop.core.training.spec import JobPaths, SpecError, TrainingJob
from isengard_desktop.plugins.diffusion_pipe.backend import main_config
from isengard_desktop.plugins.diffusion_pipe.models import MODEL_TYPES, model_type
from tests.helpers import standin_diffusion_pipe as standin


def test_only_dispatched_model_types():
    with pytest.raises(SpecError):
        model_type("qwen_image21")
    assert "qwen_image21" not in standin.MODEL_TYPES
    assert {m.key for m in MODEL_TYPES} <= set(standin.MODEL_TYPES)


@pytest.mark.parametrize("mt", MODEL_TYPES, ids=lambda m: m.key)
def test_required_keys_cover_what_the_model_class_reads(mt):
    written = {k for k, _ in mt.fixed} | ({"text_encoders"} if mt.text_encoders else set())
    for alternative in mt.required:
        keys = set(alternative) - set(mt.text_encoders) | written
        missing = set(standin.MODEL_TYPES[mt.key]) - keys
        assert not missing, f"{mt.key}: diffusion-pipe also reads {missing}"


@pytest.fixture
def world(tmp_path: Path) -> dict:
    ds = tmp_path / "dataset"
    ds.mkdir()
    for i in range(4):
        (ds / f"p{i}.jpg").write_bytes(b"\xff\xd8jpeg" + bytes([i]))
    models = tmp_path / "models"
    (models / "FLUX.1-dev").mkdir(parents=True)
    standin.small_safetensors(models / "chroma.safetensors", 0)
    return {"dataset": ds, "models": models, "paths": JobPaths(tmp_path / "jobs" / "j")}


def job_of(world: dict, **kw) -> TrainingJob:
    values = dict(job_id="j", character_id=1, character_name="Alice", trigger_word="alc",
                  family="chroma", base_model=str(world["models"] / "chroma.safetensors"),
                  dataset_dir=str(world["dataset"]), output_name="alice_lora",
                  backend="diffusion-pipe", steps=1000, warmup_steps=50,
                  extra={"fields": {"diffusers_path": str(world["models"] / "FLUX.1-dev")}})
    return TrainingJob(**(values | kw))


@pytest.mark.parametrize("scheduler", ["constant", "cosine", "linear"])
@pytest.mark.parametrize("epochs", [0, 10])
def test_the_schedule_asked_for_is_written(world, scheduler, epochs):
    job = job_of(world, lr_scheduler=scheduler)
    if epochs:
        job.extra["epochs"] = epochs
    doc, _dataset, plan = main_config(job, world["paths"])
    assert doc.get("lr_scheduler", "constant") == scheduler
    standin.check_main_keys(doc)
    assert standin.scheduler_total(doc, plan["steps_per_epoch"]) >= 0
    if scheduler != "constant" and not epochs:
        # the decay spans the run: train.py decays over epochs x steps per epoch
        total = standin.scheduler_total(doc, plan["steps_per_epoch"])
        assert job.steps <= total < job.steps + plan["steps_per_epoch"]
    with pytest.raises(NotImplementedError):
        standin.scheduler_total(dict(doc, lr_scheduler="polynomial"), 1)


def test_auraflow_and_ltx_video_get_their_keys(world):
    models = world["models"]
    for name in ("aura.safetensors", "umt5.safetensors", "vae.safetensors",
                 "ltx.safetensors"):
        standin.small_safetensors(models / name, 0)
    (models / "LTX-Video").mkdir()
    aura = job_of(world, extra={"model_type": "auraflow", "fields": {
        "transformer_path": str(models / "aura.safetensors"),
        "text_encoder_path": str(models / "umt5.safetensors"),
        "vae_path": str(models / "vae.safetensors")}})
    doc, _d, _p = main_config(aura, world["paths"])
    assert isinstance(doc["model"]["max_sequence_length"], int)
    ltx = job_of(world, extra={"model_type": "ltx-video", "fields": {
        "diffusers_path": str(models / "LTX-Video")}}, base_model="")
    with pytest.raises(SpecError, match="single_file_path"):
        main_config(ltx, world["paths"])
    ltx.extra["fields"]["single_file_path"] = str(models / "ltx.safetensors")
    doc, _d, _p = main_config(ltx, world["paths"])
    assert doc["model"]["single_file_path"].endswith("ltx.safetensors")
    assert math.isfinite(len(doc["model"]))
