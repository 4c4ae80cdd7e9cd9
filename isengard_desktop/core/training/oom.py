"""Out-of-memory recovery: the next lower memory tier of a job's settings (Qt-free, pure).

When a trainer runs out of memory, the training service resumes the job from its last
checkpoint with :func:`next_tier` of its settings, at most :data:`MAX_RECOVERIES` times; the
total number of steps never changes. One tier applies every memory saver that is still off
and steps the resolution down one bucket:

* batch size 1 (gradient accumulation multiplied by the old batch, so the effective batch
  and the learning-rate schedule stay what they were);
* gradient checkpointing on;
* the resolution one bucket lower (:data:`RESOLUTION_LADDER`: 1024 → 768 → 512 ...), never
  below the family's floor (:data:`MIN_RESOLUTION`);
* the frozen base model in 8-bit for the big flow transformers (Flux, Chroma) when the
  backend can load it so (``quantize_options``: the backend's ``capabilities()["quantize_base"]``);
* for the external trainers: more transformer blocks swapped to CPU memory (kohya,
  diffusion-pipe: ``block_swap`` = (blocks now, most allowed), which their backends report) or
  ai-toolkit's ``low_vram`` switch.

``None`` means nothing is left to lower: the job fails with :func:`give_up_message`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from .presets import FLOW_FAMILIES
from .spec import TrainingJob

__all__ = ["BLOCK_SWAP_STEP", "MAX_RECOVERIES", "MIN_RESOLUTION", "OomTier",
           "RESOLUTION_LADDER", "give_up_message", "lower_resolution", "next_tier",
           "recovery_note"]

MAX_RECOVERIES = 2
RESOLUTION_LADDER = (2048, 1536, 1280, 1024, 768, 512, 384, 256)
# below these an identity LoRA of the family is no longer worth training
MIN_RESOLUTION = {"sd15": 384, "sdxl": 512, "flux-dev": 512, "flux-schnell": 512,
                  "chroma": 512}
BLOCK_SWAP_STEP = 8            # kohya's own VRAM presets go 0 → 8 → 16 → 22 → 28 blocks
_QUANTIZE_PREFERENCE = ("int8", "float8")
_SWAP_BACKENDS = ("kohya", "diffusion-pipe")


@dataclass(frozen=True)
class OomTier:
    """The job's settings one tier lower and what changed, in words (``"1024 → 768 px"``)."""

    job: TrainingJob
    changes: tuple[str, ...]

    def note(self, step: int) -> str:
        """The line shown in the job panel and the history."""
        return recovery_note(step, self.changes)


def recovery_note(step: int, changes: Sequence[str]) -> str:
    where = f"at step {step}" if step > 0 else "before the first step"
    return f"recovered from out-of-memory {where}: {', '.join(changes)}"


def lower_resolution(resolution: int, family: str) -> int:
    """The next bucket below ``resolution`` on :data:`RESOLUTION_LADDER`, not below the
    family's floor; ``resolution`` itself when there is none."""
    floor = MIN_RESOLUTION.get(family, 512)
    lower = [r for r in RESOLUTION_LADDER if r < resolution and r >= floor]
    return max(lower) if lower else resolution


def next_tier(job: TrainingJob, quantize_options: Sequence[str] = (),
              block_swap: tuple[int, int] | None = None) -> OomTier | None:
    """``job``'s settings one memory tier lower (a new job; ``job`` is not changed), or None
    when every saver is already on and the resolution is at the family's floor.

    ``quantize_options``: the base-model precisions the job's backend can load (e.g.
    ``["none", "int8", "float8"]``); ``block_swap``: (blocks swapped now, the most the
    backend allows) for a backend that can swap transformer blocks to CPU memory."""
    new = copy.deepcopy(job)
    changes: list[str] = []
    resolution = lower_resolution(job.resolution, job.family)
    if resolution != job.resolution:
        new.resolution = resolution
        changes.append(f"{job.resolution} → {resolution} px")
    if job.batch_size > 1:
        new.batch_size = 1
        new.grad_accum = job.grad_accum * job.batch_size
        changes.append(f"batch {job.batch_size} → 1 (gradient accumulation "
                       f"{job.grad_accum} → {new.grad_accum})")
    if not job.gradient_checkpointing:
        new.gradient_checkpointing = True
        changes.append("gradient checkpointing on")
    if job.family in FLOW_FAMILIES and job.quantize_base == "none":
        mode = next((m for m in _QUANTIZE_PREFERENCE if m in quantize_options), None)
        if mode is not None:
            new.quantize_base = mode
            changes.append(f"base model in 8-bit ({mode})")
    elif job.family in FLOW_FAMILIES and job.quantize_base in _QUANTIZE_PREFERENCE \
            and "nf4" in quantize_options:
        new.quantize_base = "nf4"
        changes.append(f"base model {job.quantize_base} → 4-bit (nf4)")
    fields = dict(job.extra.get("fields") or {}) if isinstance(job.extra.get("fields"),
                                                                dict) else {}
    if job.family in FLOW_FAMILIES and job.backend in _SWAP_BACKENDS and block_swap:
        now, most = block_swap
        blocks = min(most, max(0, now) + BLOCK_SWAP_STEP)
        if blocks > now:
            fields["blocks_to_swap"] = blocks
            changes.append(f"blocks swapped to CPU memory {now} → {blocks}")
    if job.family in FLOW_FAMILIES and job.backend == "ai-toolkit" \
            and not fields.get("low_vram"):
        fields["low_vram"] = True
        changes.append("low-VRAM mode on")
    if fields != (job.extra.get("fields") or {}):
        new.extra = {**job.extra, "fields": fields}
    if not changes:
        return None
    return OomTier(new, tuple(changes))


def give_up_message(step: int, notes: Sequence[str], last_error: str, *,
                    nothing_left: bool) -> str:
    """The failed job's message after the last out-of-memory error: what was tried and what
    the user can do."""
    where = f"at step {step}" if step > 0 else "before the first step"
    if nothing_left:
        head = (f"The GPU ran out of memory {where}, and the job already uses the lowest "
                f"memory settings Isengard can choose for it.")
    else:
        times = "a third time" if len(notes) == 2 else f"{len(notes) + 1} times"
        resumed = {1: "once", 2: "twice"}.get(len(notes), f"{len(notes)} times")
        head = (f"The GPU ran out of memory {where}, {times}: Isengard lowered the memory "
                f"settings and resumed {resumed}, which is as far as it goes.")
    tried = "".join(f"\n  • {n[0].upper()}{n[1:]}" for n in notes)
    parts = [head]
    if tried:
        parts.append("Tried:" + tried)
    parts.append("What you can do: close other programs that use the GPU (a running "
                 "ComfyUI, games, browsers with hardware acceleration), lower the LoRA rank "
                 "or the resolution in Advanced, or train on a card with more memory; then "
                 "Resume (from the last checkpoint, if one was saved, with the lowered "
                 "settings) or Re-run.")
    if last_error:
        parts.append(f"The trainer said: {last_error}")
    return "\n".join(parts)
