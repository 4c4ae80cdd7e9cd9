"""What the checkpoint comparison's "fill the gaps" makes, whichever renders it (Qt-free).

* :func:`missing_cells`: one :class:`FillCell` per empty cell of a usable row: the step's
  LoRA, the column's prompt, the seed the trainers sample that prompt with (the job's seed +
  the prompt's index: built-in ``training_runtime/loop.py`` ``_sample``, ai-toolkit
  ``walk_seed``, sd-scripts ``--d``) and the picture's file, named as the built-in sampler
  names it (``samples/step<N:06d>_<column>.png``);
* :func:`compare_lines`: the ``sample`` events of the made pictures for
  ``compare_events.jsonl``, which :func:`~.checkpoint_grid.build_grid` reads like the job's own;
* :func:`fill_route`: ComfyUI, the trainer's own sampler, or why nothing can fill the gaps;
* :func:`staged_lora_name`: a checkpoint LoRA's unique file name where ComfyUI lists it;
* :func:`trainer_sampling`: the CFG/guidance, sampler, scheduler and steps the job's trainer
  samples with, as ComfyUI KSampler settings, and what ComfyUI cannot match.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from typing import Any

from .checkpoint_grid import CheckpointGrid
from .presets import FLOW_FAMILIES
from .protocol import SampleEvent, event_line
from .spec import TrainingJob

__all__ = ["COMFY", "TRAINER", "FillCell", "FillRoute", "TrainerSampling", "compare_lines",
           "fill_route", "missing_cells", "sample_path", "staged_lora_name", "trainer_sampling"]

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
    """How the gaps get filled: ``kind`` COMFY, TRAINER, or "" (nothing can); ``text`` says
    which server or why."""

    kind: str
    text: str

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
                                f"({model}).")
    if has_sampler:
        return FillRoute(TRAINER, "Missing pictures are made by the trainer's own sampler "
                                  "(no ready ComfyUI has " + model + ").")
    return FillRoute("", f"Nothing can make the missing pictures: no ComfyUI with {model} is "
                         "ready, and this trainer has no sampler here. Start a ComfyUI that "
                         f"lists {model} (Settings → ComfyUI), then open the comparison again.")


@dataclass(frozen=True)
class TrainerSampling:
    """How a job's trainer samples, as ComfyUI KSampler settings: ``cfg`` (None: the Standard
    preset's), ``guidance`` (Flux dev's embedded guidance; None: the preset's), ``sampler`` /
    ``scheduler`` (ComfyUI names; "": the preset's), ``negative``, ``steps``; ``unmatched``:
    what ComfyUI cannot do as the trainer did, one phrase each (the dialog shows them)."""

    steps: int
    cfg: float | None = None
    guidance: float | None = None
    sampler: str = ""
    scheduler: str = ""
    negative: str = ""
    unmatched: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the dialog: the settings used, then what differs from the trainer."""
        used = [f"{self.steps} steps"]
        if self.cfg is not None:
            used.append(f"CFG {self.cfg:g}")
        if self.guidance is not None:
            used.append(f"guidance {self.guidance:g}")
        if self.sampler:
            used.append(f"sampler {self.sampler}")
        if self.scheduler:
            used.append(f"scheduler {self.scheduler}")
        text = "Sampling as the trainer did: " + ", ".join(used) + "."
        if self.unmatched:
            text += " Differs from the trainer's samples: " + "; ".join(self.unmatched) + "."
        return text


_UNET_SCHEDULE = ("timesteps: diffusers' {} with the model's scheduler config, ComfyUI's "
                  "'normal' schedule here")
# The trainer shifts a flow model's sigmas by an amount that grows with the picture's size:
# sd-scripts library/flux_train_utils.py@5dff02a6 (Chroma-era; pinned 48d368fa not in the
# index) :244 sample_image_inference calls get_schedule(sample_steps, noise.shape[1],
# shift=True) for every Flux-type model incl. schnell and Chroma; :309-331 mu is linear in
# the token count, 0.5 at 256 to 1.15 at 4096. Built-in: training_runtime/families/
# _flux_shared.py:69-85 flux_shift (use_dynamic_shifting for dev/Chroma; schnell's scheduler
# config is a fixed shift 1.0). ComfyUI comfy/supported_models.py: class FluxSchnell has
# sampling_settings {"multiplier": 1.0, "shift": 1.0} and class Chroma(FluxSchnell) only
# {"multiplier": 1.0}, so shift 1.0 too (read in a stored copy; the pinned a125cd84 is not in
# the index, line numbers not counted); the fill graph adds no ModelSamplingFlux node.
_FLOW_SHIFT = ("noise schedule: the trainer shifts it by the picture size, ComfyUI's {} "
               "model samples unshifted (shift 1.0)")


def _number(value: Any, default: float) -> float:
    try:
        return default if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return default


def trainer_sampling(spec: TrainingJob) -> TrainerSampling:
    """What ``spec``'s trainer samples with, read from each trainer's sampling code:

    * built-in (``training_runtime/families/unet.py`` ``sample``: diffusers Euler, CFG
      ``extra.sample_guidance`` or 7.0 SD1.5 / 5.0 SDXL; ``_flux_shared.py`` ``sample``: Euler
      on the shifted sigmas, Flux dev guidance ``extra.sample_guidance`` or 3.5, Chroma real CFG
      ``extra.sample_cfg`` or 4.0 with ``extra.sample_negative_prompt``);
    * ai-toolkit (``plugins/ai_toolkit/backend.py`` ``_sample``: ``ddpm`` or ``flowmatch``,
      ``guidance_scale`` = ``fields.sample_guidance`` or 7.0 SD / 1.0 schnell / 4.0 other,
      schnell at most 4 steps);
    * kohya (``plugins/kohya/backend.py`` ``sample_prompt_lines``: SD ``euler_a`` with
      ``--l 7``; Flux dev ``--g 3.5``; schnell ``--g 0``, at most 4 steps; Chroma ``--l 4.0``
      and a negative prompt);
    * anything else: unknown here, so the Standard preset's settings, said in ``unmatched``.
    """
    family, extra, steps = spec.family, spec.extra or {}, int(spec.sample_steps)
    flow = family in FLOW_FAMILIES
    label = {"flux-schnell": "FLUX.1 schnell", "chroma": "Chroma"}.get(family, "")
    shifted = (_FLOW_SHIFT.format(label),) if label else ()
    if spec.backend == "builtin":
        if not flow:
            # unet.py sample: EulerDiscreteScheduler from the model's config, real CFG
            # uncond + guidance * (text - uncond), guidance extra.sample_guidance or the
            # family's 7.0 / 5.0 (training_runtime/families/unet.py:329-352)
            cfg = _number(extra.get("sample_guidance"), 7.0 if family == "sd15" else 5.0)
            return TrainerSampling(steps, cfg, None, "euler", "normal",
                                   unmatched=(_UNET_SCHEDULE.format("Euler"),))
        # _flux_shared.py sample (:373): Euler along flux_shift's sigmas (:69-85); schnell's
        # scheduler config has a fixed shift 1.0, so only Chroma (dynamic) differs here
        if family == "chroma":
            return TrainerSampling(steps, _number(extra.get("sample_cfg"), 4.0), None, "euler",
                                   "simple", str(extra.get("sample_negative_prompt") or ""),
                                   shifted)
        guidance = _number(extra.get("sample_guidance"), 3.5) if family == "flux-dev" else None
        return TrainerSampling(steps, 1.0, guidance, "euler", "simple")
    if spec.backend == "ai-toolkit":
        # seeds: ai-toolkit's sample loop sets current_seed = start_seed + i when
        # sample_config.walk_seed (seen in a find_string excerpt the index did not name the
        # file of; the pinned 27a03a91 was not opened, no line); walk_seed, guidance_scale
        # and sampler are what our backend writes (plugins/ai_toolkit/backend.py:255-262:
        # ddpm for SD, flowmatch for flow models, schnell at most 4 steps)
        raw = extra.get("fields")
        fields: dict[str, Any] = raw if isinstance(raw, dict) else {}
        default = {"flux-schnell": 1.0, "sdxl": 7.0, "sd15": 7.0}.get(family, 4.0)
        scale = _number(fields.get("sample_guidance"), default)
        if not flow:
            return TrainerSampling(steps, scale, None, "ddpm", "normal",
                                   unmatched=(_UNET_SCHEDULE.format("DDPM"),))
        if family == "flux-schnell":
            return TrainerSampling(min(steps, 4), 1.0, None, "euler", "simple")
        if family == "flux-dev":
            return TrainerSampling(steps, 1.0, scale, "euler", "simple")
        return TrainerSampling(steps, scale, None, "euler", "simple")
    if spec.backend == "kohya":
        # plugins/kohya/backend.py sample_prompt_lines writes Flux dev "--g 3.5", schnell
        # "--g 0", Chroma "--n ... --g 0 --l 4.0"; sd-scripts library/train_util.py
        # line_to_prompt_dict maps --l to "scale", --g to "guidance_scale", and
        # library/flux_train_utils.py@5dff02a6:157-158 reads "guidance_scale" as the embedded
        # guidance and "scale" as real CFG (default 1.0), :182-185/:223-230 using the negative
        # prompt only when that CFG != 1.0 (more in sample_prompt_lines)
        if family == "flux-dev":
            return TrainerSampling(steps, 1.0, 3.5, "euler", "simple")
        if family == "flux-schnell":
            return TrainerSampling(min(steps, 4), 1.0, None, "euler", "simple",
                                   unmatched=shifted)
        if family == "chroma":
            return TrainerSampling(steps, 4.0, None, "euler", "simple",
                                   "low quality, blurry, deformed", shifted)
        # SD: train_util.py sample_image_inference reads "scale" (--l) as CFG and the
        # sampler from sample_sampler, which build_args sets to euler_a for SD (read by
        # name, line numbers not counted)
        return TrainerSampling(steps, 7.0, None, "euler_ancestral", "normal",
                               unmatched=(_UNET_SCHEDULE.format("Euler ancestral"),))
    who = spec.backend or "this trainer"
    return TrainerSampling(steps, unmatched=(
        f"CFG, sampler and scheduler: {who}'s sampling settings are not known here, so the "
        "Standard preset's are used",))
