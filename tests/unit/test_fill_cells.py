"""What "fill the gaps" makes (core/training/fill_cells.py): the missing cells with their seeds
and files, the compare events the grid reads back, and the route with its message."""

from __future__ import annotations


from isengard_desktop.core.training.checkpoint_grid import build_grid
from isengard_desktop.core.training.fill_cells import (COMFY, TRAINER, compare_lines,
                                                       fill_route, missing_cells,
                                                       staged_lora_name)
from isengard_desktop.core.training.protocol import (CheckpointEvent, DoneEvent, SampleEvent,
                                                     parse_event)


def test_missing_cells_of_usable_rows_with_seeds_and_the_samplers_file_names(tmp_path):
    files = {tmp_path / "ck10" / "lora.safetensors", tmp_path / "final.safetensors",
             tmp_path / "s20.png"}
    events = [CheckpointEvent(5, str(tmp_path / "ck5"), True),       # pruned: no LoRA left
              CheckpointEvent(10, str(tmp_path / "ck10"), True),
              SampleEvent(20, str(tmp_path / "s20.png"), "a"),
              DoneEvent(str(tmp_path / "final.safetensors"), 20)]
    grid = build_grid(events, exists=lambda p: p in files, prompts=["a", "b"])
    cells = missing_cells(grid, 7, tmp_path / "samples")
    assert [(c.step, c.column, c.prompt, c.seed, c.lora.name, c.path.name) for c in cells] == [
        (10, 0, "a", 7, "lora.safetensors", "step000010_0.png"),
        (10, 1, "b", 8, "lora.safetensors", "step000010_1.png"),
        (20, 1, "b", 8, "final.safetensors", "step000020_1.png")]
    # the compare events put the pictures back in their cells
    lines = [parse_event(line) for line in compare_lines(cells).splitlines()]
    files |= {c.path for c in cells}
    again = build_grid(events + lines, exists=lambda p: p in files, prompts=["a", "b"])
    assert again.row(10).cells == (cells[0].path, cells[1].path)
    assert again.row(20).cells == (tmp_path / "s20.png", cells[2].path)
    assert missing_cells(again, 7, tmp_path / "samples") == []


def test_staged_names_are_unique_per_job_and_step():
    names = {staged_lora_name("anna", job, step) for job in ("a" * 12, "b" * 12)
             for step in (10, 20)}
    assert len(names) == 4
    assert staged_lora_name("anna", "0123456789ab", 10) == "anna-01234567-step10.safetensors"


def test_route_prefers_comfyui_then_the_trainer_else_says_why():
    comfy = fill_route("gpu0", "/m/sdxl_base.safetensors", has_sampler=True)
    assert comfy.kind == COMFY and comfy.can_fill
    assert "ComfyUI on gpu0" in comfy.text and "sdxl_base.safetensors" in comfy.text
    own = fill_route(None, "/m/sdxl_base.safetensors", has_sampler=True)
    assert own.kind == TRAINER and "trainer's own sampler" in own.text
    none = fill_route(None, "C:\\models\\sdxl_base.safetensors", has_sampler=False)
    assert not none.can_fill
    assert "no ComfyUI with sdxl_base.safetensors" in none.text
    assert "this trainer has no sampler here" in none.text


def _job(backend: str, family: str, **changes):
    from isengard_desktop.core.training.spec import TrainingJob

    values = {"job_id": "j1", "character_id": 1, "character_name": "Alice",
              "trigger_word": "ohwx", "family": family, "base_model": "/m/base.safetensors",
              "dataset_dir": "/d", "output_name": "alice", "backend": backend,
              "sample_steps": 20}
    values.update(changes)
    return TrainingJob(**values)


def test_trainer_sampling_reads_each_trainers_settings():
    from isengard_desktop.core.training.fill_cells import trainer_sampling

    def key(s):
        return (s.steps, s.cfg, s.guidance, s.sampler, s.scheduler, s.negative)

    # kohya: sample_prompt_lines' --l / --g, euler_a for SD, schnell at most 4 steps
    assert key(trainer_sampling(_job("kohya", "sdxl"))) == (20, 7.0, None, "euler_ancestral",
                                                            "normal", "")
    assert key(trainer_sampling(_job("kohya", "flux-dev"))) == (20, 1.0, 3.5, "euler",
                                                                "simple", "")
    assert key(trainer_sampling(_job("kohya", "flux-schnell"))) == (4, 1.0, None, "euler",
                                                                    "simple", "")
    assert key(trainer_sampling(_job("kohya", "chroma"))) == (
        20, 4.0, None, "euler", "simple", "low quality, blurry, deformed")
    # built-in: families' sample(): CFG 7 (SD1.5) / 5 (SDXL) or extra.sample_guidance
    assert trainer_sampling(_job("builtin", "sd15")).cfg == 7.0
    assert trainer_sampling(_job("builtin", "sdxl")).cfg == 5.0
    assert trainer_sampling(_job("builtin", "sdxl", extra={"sample_guidance": 3})).cfg == 3.0
    assert key(trainer_sampling(_job("builtin", "flux-dev", extra={"sample_guidance": 2.5}))) \
        == (20, 1.0, 2.5, "euler", "simple", "")
    assert key(trainer_sampling(_job("builtin", "chroma", extra={
        "sample_cfg": 5, "sample_negative_prompt": "ugly"}))) == (20, 5.0, None, "euler",
                                                                  "simple", "ugly")
    # ai-toolkit: flowmatch / ddpm with fields.sample_guidance (Flux dev: embedded guidance)
    assert key(trainer_sampling(_job("ai-toolkit", "flux-dev", extra={
        "fields": {"sample_guidance": 3}}))) == (20, 1.0, 3.0, "euler", "simple", "")
    assert key(trainer_sampling(_job("ai-toolkit", "flux-schnell", sample_steps=8))) == (
        4, 1.0, None, "euler", "simple", "")
    # flow models the trainer samples on a size-shifted schedule where ComfyUI's model
    # config has shift 1.0 (schnell, Chroma): the dialog's line says so; dev matches
    for backend, family, name in (("kohya", "flux-schnell", "FLUX.1 schnell"),
                                  ("kohya", "chroma", "Chroma"), ("builtin", "chroma", "Chroma")):
        text = trainer_sampling(_job(backend, family)).describe()
        assert f"ComfyUI's {name} model samples unshifted (shift 1.0)" in text, text
    for backend, family in (("kohya", "flux-dev"), ("builtin", "flux-dev"),
                            ("builtin", "flux-schnell")):
        assert "Differs" not in trainer_sampling(_job(backend, family)).describe()
    # a trainer whose sampling is unknown: the preset's settings, and the dialog says so
    other = trainer_sampling(_job("diffusion-pipe", "sdxl"))
    assert key(other) == (20, None, None, "", "", "")
    assert "diffusion-pipe's sampling settings are not known here" in other.describe()
    assert "Standard preset" in other.describe()


def test_sample_prompt_replaces_the_trigger_placeholder():
    from isengard_desktop.core.dataset.captions import sample_prompt

    assert sample_prompt("[trigger] smiling", "ohwx") == "ohwx smiling"
    assert sample_prompt("photo of [trigger],  outdoors", "ohwx") == "photo of ohwx, outdoors"
    assert sample_prompt("a portrait", "ohwx") == "ohwx, a portrait"
    assert sample_prompt("ohwx in a park", "ohwx") == "ohwx in a park"
