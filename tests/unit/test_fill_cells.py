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
    assert comfy.kind == COMFY and comfy.where == "gpu0" and comfy.can_fill
    assert "ComfyUI on gpu0" in comfy.text and "sdxl_base.safetensors" in comfy.text
    own = fill_route(None, "/m/sdxl_base.safetensors", has_sampler=True)
    assert own.kind == TRAINER and "trainer's own sampler" in own.text
    none = fill_route(None, "C:\\models\\sdxl_base.safetensors", has_sampler=False)
    assert not none.can_fill
    assert "no ComfyUI with sdxl_base.safetensors" in none.text
    assert "this trainer has no sampler here" in none.text
