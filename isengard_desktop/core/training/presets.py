"""Training presets per model family, the time estimate shown before Start, and dataset
warnings. Qt-free.

Presets are starting points that work for an identity LoRA on a 12–24 GB card with 15–50
photos; every value stays editable in the Advanced section. The step-time table behind
:func:`estimate_seconds` is a typical figure for a 24 GB consumer GPU (RTX 3090/4090 class) with
gradient checkpointing on; as soon as a job has run on this machine, the measured step time
replaces it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, is_dataclass, replace
from typing import Any, Protocol
from collections.abc import Iterable

from .spec import FAMILIES

PRESET_NAMES = ("Quick", "Balanced", "High Quality")
DEFAULT_PRESET = "Balanced"
FLOW_FAMILIES = ("flux-dev", "flux-schnell", "chroma")   # big transformers: 8-bit base on ≤ 24 GB
QUANTIZE_UP_TO_GB = 24.0


@dataclass(frozen=True)
class Preset:
    """The TrainingJob values a preset sets (field names match :class:`TrainingJob`)."""

    steps: int
    rank: int
    alpha: float
    learning_rate: float
    resolution: int
    batch_size: int
    grad_accum: int
    lr_scheduler: str
    warmup_steps: int
    checkpoint_every: int
    sample_every: int
    gradient_checkpointing: bool = True
    quantize_base: str = "none"
    keep_checkpoints: int = 3
    repeats: int = 1
    caption_dropout: float = 0.05


def _p(steps: int, rank: int, alpha: float, lr: float, res: int, batch: int, sched: str,
       warmup: int, every: int, quantize: str = "none", accum: int = 1) -> Preset:
    return Preset(steps=steps, rank=rank, alpha=alpha, learning_rate=lr, resolution=res,
                  batch_size=batch, grad_accum=accum, lr_scheduler=sched, warmup_steps=warmup,
                  checkpoint_every=every, sample_every=every, quantize_base=quantize)


_FLUX = {
    "Quick": _p(800, 16, 16, 1e-4, 768, 1, "constant", 40, 200, "int8"),
    "Balanced": _p(1500, 16, 16, 1e-4, 1024, 1, "cosine", 75, 250, "int8"),
    "High Quality": _p(2500, 32, 32, 1e-4, 1024, 1, "cosine", 125, 500, "int8"),
}

PRESETS: dict[str, dict[str, Preset]] = {
    # SD 1.5: 512 px native; small and quick, a slightly higher LR is safe.
    "sd15": {
        "Quick": _p(600, 16, 16, 2e-4, 512, 2, "constant", 30, 200),
        "Balanced": _p(1500, 16, 16, 1e-4, 512, 2, "cosine", 75, 250),
        "High Quality": _p(3000, 32, 16, 1e-4, 768, 2, "cosine", 150, 500),
    },
    # SDXL: 1024 px native.
    "sdxl": {
        "Quick": _p(800, 16, 16, 2e-4, 1024, 1, "constant", 40, 200),
        "Balanced": _p(1600, 16, 16, 1e-4, 1024, 1, "cosine", 80, 400),
        "High Quality": _p(3000, 32, 16, 1e-4, 1024, 1, "cosine", 150, 500, accum=2),
    },
    # Flux and Chroma: flow matching at lr 1e-4; the frozen base kept in int8 on ≤ 24 GB.
    "flux-dev": _FLUX,
    "flux-schnell": _FLUX,
    "chroma": {
        "Quick": _p(800, 16, 16, 1e-4, 768, 1, "constant", 40, 200, "int8"),
        "Balanced": _p(1500, 16, 16, 1e-4, 1024, 1, "cosine", 75, 250, "int8"),
        "High Quality": _p(2500, 32, 32, 1e-4, 1024, 1, "cosine", 125, 500, "int8"),
    },
}

PRESET_NOTES = {
    "Quick": "A first try in the least time: fewer steps, lower resolution where it is safe.",
    "Balanced": "The recommended default: a good likeness for most datasets.",
    "High Quality": "More steps and a larger LoRA: slower, more detail, more checkpoints.",
}


def preset(family: str, name: str) -> Preset:
    """The preset ``name`` for ``family``; raises ValueError naming what is unknown."""
    if family not in PRESETS:
        raise ValueError(f"family: unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    if name not in PRESETS[family]:
        raise ValueError(f"preset: unknown preset {name!r} (known: {', '.join(PRESET_NAMES)})")
    return PRESETS[family][name]


# the job fields the VRAM tier may change: what memory_fit's fixes touch, all in Preset
_TIER_FIELDS = frozenset({"resolution", "batch_size", "grad_accum", "gradient_checkpointing",
                          "quantize_base"})


def tier_values(family: str, name: str, vram_gb: float | None = None,
                backend: str = "builtin") -> tuple[dict[str, Any], str]:
    """Preset ``name`` of ``family`` for a card of ``vram_gb`` GiB (None: unknown, the
    preset as written) and a note saying what the card changed ("" when nothing).

    The presets are written for a 24 GB card; per VRAM tier (8/12/16/24/48 GB,
    :func:`.memory_fit.tier_for`) the memory model decides: Flux/Chroma keep an int8 base up
    to 24 GB; gradient checkpointing goes off where the job fits without it (built-in
    trainer); a preset that would not fit the card gets the smallest change that makes it fit
    (:func:`.memory_fit.fit`: a lower resolution bucket, batch 1 with accumulation…), so
    Start works without touching a setting. When nothing this trainer offers fits, the
    preset stays as written and the pre-flight line says why."""
    values = asdict(preset(family, name))
    if vram_gb is None:
        return values, ""
    if family in FLOW_FAMILIES and vram_gb > QUANTIZE_UP_TO_GB:
        values["quantize_base"] = "none"
    from .memory_fit import MemoryModelError, fit, predict, tier_for   # memory_fit imports us

    notes: list[str] = []
    try:
        if backend == "builtin":
            without = {**values, "family": family, "gradient_checkpointing": False}
            if fit(predict(without, family, backend), vram_gb).fits:
                values["gradient_checkpointing"] = False
        job = {**values, "family": family}
        verdict = fit(predict(job, family, backend), vram_gb, job_settings=job, family=family,
                      backend=backend)
    except (MemoryModelError, ValueError):
        return values, ""            # no estimate for this trainer: the preset as written
    if not verdict.fits and verdict.fix and set(verdict.fix) <= _TIER_FIELDS:
        values.update(verdict.fix)
        notes.append(verdict.fix_text.lower().removeprefix("use ")
                     if verdict.fix_text else "memory savers on")
    tier = tier_for(vram_gb)
    note = f"Tuned for your {tier} GB card: {', '.join(notes)}." if notes else ""
    return values, note


def apply_preset(job_fields: Any, family: str, name: str, vram_gb: float | None = None,
                 backend: str = "builtin") -> Any:
    """``job_fields`` with the preset's values filled in (and ``preset`` = name).

    ``job_fields`` is a dict of TrainingJob field values (a new dict is returned) or a
    TrainingJob (a new one is returned). For Flux and Chroma the frozen base is kept in int8
    unless ``vram_gb`` says the card has more than 24 GB. With the built-in trainer and a
    known card, gradient checkpointing (1.67× the time of a step, benchmarks/trainer_step.py)
    is on only where the memory model (:mod:`.memory_fit`) says the job needs it; should the
    estimate be wrong, out-of-memory recovery (:mod:`.oom`) turns it back on.
    """
    values, _note = tier_values(family, name, vram_gb, backend)
    values["preset"] = name
    if is_dataclass(job_fields) and not isinstance(job_fields, type):
        return replace(job_fields, family=family, **values)
    out = dict(job_fields)
    out.update(values)
    out["family"] = family
    return out


# -- time estimate ---------------------------------------------------------------------------

# Typical seconds per optimizer step at batch 1 and the family's reference resolution on a
# 24 GB consumer GPU (gradient checkpointing on; Flux/Chroma with an int8 base).
_TYPICAL_SEC_PER_STEP = {
    "sd15": (512, 0.30),
    "sdxl": (1024, 1.1),
    "flux-dev": (1024, 3.0),
    "flux-schnell": (1024, 3.0),
    "chroma": (1024, 2.4),
}
# Loading the base model, caching latents and text embeddings, saving: once per job.
_OVERHEAD_SEC = {"sd15": 45.0, "sdxl": 90.0, "flux-dev": 180.0, "flux-schnell": 180.0,
                 "chroma": 150.0}
_REFERENCE_GB = 24.0
CPU_HINT = "cpu"      # the GPU hint for "no usable GPU": estimate for this computer's CPU

# Typical seconds per step on a CPU (fp32, batch 1, the family's reference resolution, the
# trainer's defaults), for CPU_REFERENCE_CORES cores. These are NOT measured on this project's
# machines (only the tiny test models were: ~0.05-0.4 s a step at 64 px, see
# ../shared/reference/builtin-trainer.md): they are order-of-magnitude figures, a full-size
# model's CPU time per denoising step (SD 1.5 at 512 px ~1.5 s, SDXL at 1024 px ~12 s, Flux
# ~75 s, Chroma ~55 s on an 8-core desktop) times four for forward + backward with gradient
# checkpointing. The app replaces them with its own measurement as soon as one CPU job has
# completed on this computer (``measured_sec_per_step`` with device "cpu"), and says which one
# it used.
_TYPICAL_CPU_SEC_PER_STEP = {
    "sd15": (512, 6.0),
    "sdxl": (1024, 50.0),
    "flux-dev": (1024, 300.0),
    "flux-schnell": (1024, 300.0),
    "chroma": (1024, 220.0),
}
CPU_REFERENCE_CORES = 8
_CPU_OVERHEAD_FACTOR = 2.0   # loading fp32 weights and caching latents on the CPU


def _gpu_factor(gpu_hint: str | None) -> tuple[float, str]:
    """(slow-down factor vs a 24 GB card, words for the basis) from a hint like
    "NVIDIA GeForce RTX 3060, 12 GB" or "16 GB"."""
    if not gpu_hint:
        return 1.0, "a 24 GB GPU"
    hint = gpu_hint.strip()     # "cpu" never gets here: estimate_seconds uses the CPU table
    match = re.search(r"(\d+(?:\.\d+)?)\s*(?:GB|GiB|G)\b", hint, re.IGNORECASE)
    if not match:
        return 1.0, f"a 24 GB GPU ({hint} not recognised)"
    gb = float(match.group(1))
    if gb <= 8:
        factor = 2.6
    elif gb <= 12:
        factor = 1.8
    elif gb <= 16:
        factor = 1.35
    elif gb <= 24:
        factor = 1.0
    elif gb <= 48:
        factor = 0.75
    else:
        factor = 0.5
    return factor, f"a {gb:g} GB GPU"


def estimate_seconds(family: str, resolution: int, steps: int, batch: int,
                     measured_sec_per_step: float | None = None,
                     gpu_hint: str | None = None, *,
                     cpu_cores: int | None = None) -> tuple[float, str]:
    """Estimated wall time of a job (seconds) and a one-line basis for it.

    A step time measured on this machine (same family and resolution, from earlier jobs on
    the same device) wins; otherwise a typical figure for the GPU in ``gpu_hint`` (a 24 GB
    card when unknown), scaled by pixel count and batch size. With ``gpu_hint`` =
    :data:`CPU_HINT` the job runs on this computer's CPU: the family's CPU figure, scaled by
    pixel count, batch size and ``cpu_cores`` (default :data:`CPU_REFERENCE_CORES`). A fixed
    overhead for loading and caching is added.
    """
    if family not in _TYPICAL_SEC_PER_STEP:
        raise ValueError(f"family: unknown model family {family!r}")
    steps, batch = max(1, int(steps)), max(1, int(batch))
    on_cpu = (gpu_hint or "").strip().lower() in (CPU_HINT, "none", "no gpu")
    overhead = _OVERHEAD_SEC[family] * (_CPU_OVERHEAD_FACTOR if on_cpu else 1.0)
    if measured_sec_per_step is not None and measured_sec_per_step > 0:
        seconds = overhead + steps * measured_sec_per_step
        where = "this computer's CPU" if on_cpu else "this machine"
        return seconds, f"measured on {where}: {_fmt_rate(measured_sec_per_step)}/step"
    if on_cpu:
        return _cpu_estimate(family, resolution, steps, batch, overhead, cpu_cores)
    ref_res, ref_sec = _TYPICAL_SEC_PER_STEP[family]
    pixels = (max(64, resolution) / ref_res) ** 2
    per_step = ref_sec * pixels * batch ** 0.9
    factor, words = _gpu_factor(gpu_hint)
    per_step *= factor
    return overhead * min(factor, 3.0) + steps * per_step, f"typical for {words}"


def _cpu_estimate(family: str, resolution: int, steps: int, batch: int, overhead: float,
                  cpu_cores: int | None) -> tuple[float, str]:
    ref_res, ref_sec = _TYPICAL_CPU_SEC_PER_STEP[family]
    cores = max(1, int(cpu_cores or CPU_REFERENCE_CORES))
    # more cores help less than linearly (memory bandwidth); never more than 4× either way
    core_factor = min(4.0, max(0.25, (CPU_REFERENCE_CORES / cores) ** 0.8))
    per_step = (ref_sec * (max(64, resolution) / ref_res) ** 2 * batch ** 0.9 * core_factor)
    return overhead + steps * per_step, (
        f"a typical step time on this computer's CPU ({cores} cores): about "
        f"{_fmt_rate(per_step)}/step, until a CPU job here measures it")


def _fmt_rate(sec: float) -> str:
    return f"{sec:.2f} s" if sec < 10 else f"{sec:.0f} s"


def format_duration(seconds: float) -> str:
    """“about 25 min”, “about 1 h 40 min”, “under a minute”."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return "under a minute"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"about {minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours >= 24:
        days, hours = divmod(hours, 24)
        return f"about {days} d {hours} h"
    return f"about {hours} h {rest:02d} min" if rest else f"about {hours} h"


def format_clock(seconds: float) -> str:
    """A short running clock: 42 s, 3:07, 1:02:09."""
    seconds = int(max(0, round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# -- dataset warnings ------------------------------------------------------------------------

MIN_PHOTOS = 10
GOOD_PHOTOS = "15–50"
MAX_PHOTOS = 200
LOW_RES_SHARE = 0.2
MAX_ASPECT = 2.5


MIN_SHORT_SIDE = 512
# The short side a family trains at natively (its photos below that are upscaled); a family
# not listed trains at LARGE_MODEL_SHORT_SIDE.
NATIVE_SHORT_SIDE = {"sd15": 512}
LARGE_MODEL_SHORT_SIDE = 1024


def min_short_side(family: str | None = None, resolution: int | None = None) -> int:
    """The one low-resolution rule, for the Dataset checks and the Training warnings
    alike: under :data:`MIN_SHORT_SIDE` until a model is known; then under the family's native side, or
    under the training ``resolution`` when that is lower."""
    limit = (MIN_SHORT_SIDE if family is None
             else NATIVE_SHORT_SIDE.get(family, LARGE_MODEL_SHORT_SIDE))
    return min(limit, resolution) if resolution else limit


class DatasetImage(Protocol):
    """What the warnings read from an image record (ImageRecord fits)."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def caption(self) -> str: ...


def dataset_warnings(images: Iterable[DatasetImage],
                     resolution: int = MIN_SHORT_SIDE) -> list[str]:
    """Plain-language problems with a character's photos for training at ``resolution``."""
    images = list(images)
    n = len(images)
    if n == 0:
        return ["No photos yet: add 15–50 varied photos of the person in the Dataset tab."]
    out: list[str] = []
    if n < MIN_PHOTOS:
        out.append(f"Only {n} photo{'s' if n != 1 else ''}: {GOOD_PHOTOS} varied photos "
                   "(angles, light, expressions) give a much better likeness.")
    elif n > MAX_PHOTOS:
        out.append(f"{n} photos: more than {MAX_PHOTOS} slows training and rarely helps; "
                   "keep the best 20–100.")
    small = sum(1 for i in images if 0 < min(i.width, i.height) < resolution)
    if small and small / n >= LOW_RES_SHARE:
        out.append(f"{small} of {n} photos are smaller than {resolution} px on the short side: "
                   "they will be upscaled and look soft. Replace them or lower the resolution.")
    wide = sum(1 for i in images
               if min(i.width, i.height) > 0
               and max(i.width, i.height) / min(i.width, i.height) > MAX_ASPECT)
    if wide:
        out.append(f"{wide} photo{'s have' if wide != 1 else ' has'} an extreme aspect ratio "
                   "(over 2.5:1); crop them around the person.")
    missing = sum(1 for i in images if not (i.caption or "").strip())
    if missing == n:
        out.append("No photo has a caption: the trigger word alone will be used. That works "
                   "for a first try; short captions (clothes, place, light) make a more "
                   "flexible LoRA.")
    elif missing:
        out.append(f"{missing} of {n} photos have no caption; they will be trained with the "
                   "trigger word alone.")
    return out
