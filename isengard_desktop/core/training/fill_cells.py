"""What the checkpoint comparison's "fill the gaps" makes, whichever renders it (Qt-free).

* :func:`missing_cells`: one :class:`FillCell` per empty cell of a usable row: the step's
  LoRA, the column's prompt, the seed the trainers sample that prompt with (the job's seed +
  the prompt's index: built-in ``training_runtime/loop.py`` ``_sample``, ai-toolkit
  ``walk_seed``, sd-scripts ``--d``) and the picture's file, named as the built-in sampler
  names it (``samples/step<N:06d>_<column>.png``);
* :func:`compare_lines`: the ``sample`` events of the made pictures for
  ``compare_events.jsonl``, which :func:`~.checkpoint_grid.build_grid` reads like the job's own;
* :func:`fill_route`: ComfyUI, the trainer's own sampler, or why nothing can fill the gaps;
* :func:`staged_lora_name`: a checkpoint LoRA's unique file name where ComfyUI lists it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .checkpoint_grid import CheckpointGrid
from .protocol import SampleEvent, event_line

__all__ = ["COMFY", "TRAINER", "FillCell", "FillRoute", "compare_lines", "fill_route",
           "missing_cells", "sample_path", "staged_lora_name"]

COMFY = "comfyui"
TRAINER = "trainer"


@dataclass(frozen=True)
class FillCell:
    """One missing picture: step ``step`` × prompt column ``column``."""

    step: int
    column: int
    prompt: str
    seed: int
    lora: Path           # the step's LoRA as the trainer saved it
    path: Path           # where the picture is written


@dataclass(frozen=True)
class FillRoute:
    """How the gaps get filled: ``kind`` COMFY (``where``: the server's label), TRAINER, or
    "" (nothing can; ``text`` says why)."""

    kind: str
    text: str
    where: str = ""

    @property
    def can_fill(self) -> bool:
        return bool(self.kind)


def sample_path(samples_dir: Path, step: int, column: int) -> Path:
    """The picture of prompt ``column`` at ``step``, named as the built-in sampler names it."""
    return Path(samples_dir) / f"step{step:06d}_{column}.png"


def missing_cells(grid: CheckpointGrid, seed: int, samples_dir: Path) -> list[FillCell]:
    """The empty cells of the rows whose LoRA is still on disk, row by row (oldest step
    first), each with the seed ``seed + column``."""
    cells = []
    for row in grid.rows:
        if row.lora is None:
            continue
        for column, picture in enumerate(row.cells):
            if picture is None and column < len(grid.prompts):
                cells.append(FillCell(row.step, column, grid.prompts[column], seed + column,
                                      row.lora, sample_path(samples_dir, row.step, column)))
    return cells


def compare_lines(cells: Iterable[FillCell]) -> str:
    """The ``sample`` event lines (newline-terminated) of ``cells``' pictures."""
    return "".join(event_line(SampleEvent(c.step, str(c.path), c.prompt)) + "\n"
                   for c in cells)


def staged_lora_name(output_name: str, job_id: str, step: int, suffix: str = ".safetensors"
                     ) -> str:
    """The file name of a checkpoint's LoRA where a ComfyUI lists it: unique per job and step
    (every built-in checkpoint's file is ``lora.safetensors``; a server finds LoRAs by file
    name, and the upload node refuses a different file under a name it already has)."""
    return f"{output_name}-{job_id[:8]}-step{step}{suffix or '.safetensors'}"


def fill_route(comfy_server: str | None, base_model: str, has_sampler: bool) -> FillRoute:
    """ComfyUI when ``comfy_server`` (a ready server's label that lists the base model), else
    the trainer's own sampler when ``has_sampler``, else a message naming the base model."""
    model = Path(base_model.replace("\\", "/")).name or "the job's base model"
    if comfy_server:
        return FillRoute(COMFY, f"Missing pictures are made with ComfyUI on {comfy_server} "
                                f"({model}).", comfy_server)
    if has_sampler:
        return FillRoute(TRAINER, "Missing pictures are made by the trainer's own sampler "
                                  "(no ready ComfyUI has " + model + ").")
    return FillRoute("", f"Nothing can make the missing pictures: no ComfyUI with {model} is "
                         "ready, and this trainer has no sampler here. Start a ComfyUI that "
                         f"lists {model} (Settings → ComfyUI), then open the comparison again.")
