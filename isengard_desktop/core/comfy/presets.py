"""Generation presets: aspect ratios -> sizes per model family, and quality tiers.

Sizes stay close to each family's native area (SD 1.5: 512², SDXL, Flux and Chroma: 1024²) and
are multiples of 64 for SD 1.5 / SDXL and of 16 for Flux / Chroma. SDXL uses the resolution
buckets it was trained on. Sampler and scheduler names are ComfyUI's (KSampler lists).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

from ..training.buckets import FAMILY_MULTIPLE, NATIVE_SIDE  # one place for both (the trainer's)

__all__ = [
    "ASPECT_PRESETS",
    "FAMILY_MULTIPLE",
    "NATIVE_SIDE",
    "QUALITY_TIERS",
    "TIERS",
    "AspectPreset",
    "TierSettings",
    "family_base",
    "megapixels",
    "size_for",
    "tier_settings",
]


@dataclass(frozen=True)
class AspectPreset:
    key: str  # "16:9"
    label: str  # "16:9 landscape"
    ratio_w: int
    ratio_h: int

    @property
    def ratio(self) -> float:
        return self.ratio_w / self.ratio_h


_ASPECTS = (
    AspectPreset("1:1", "1:1 square", 1, 1),
    AspectPreset("4:5", "4:5 portrait", 4, 5),
    AspectPreset("2:3", "2:3 portrait", 2, 3),
    AspectPreset("9:16", "9:16 tall", 9, 16),
    AspectPreset("5:4", "5:4 landscape", 5, 4),
    AspectPreset("3:2", "3:2 landscape", 3, 2),
    AspectPreset("16:9", "16:9 wide", 16, 9),
)
ASPECT_PRESETS: MappingProxyType[str, AspectPreset] = MappingProxyType({a.key: a for a in _ASPECTS})


# SDXL's trained resolution buckets for these aspects.
_SDXL_BUCKETS = {
    "1:1": (1024, 1024), "4:5": (896, 1152), "2:3": (832, 1216), "9:16": (768, 1344),
    "5:4": (1152, 896), "3:2": (1216, 832), "16:9": (1344, 768),
}


def family_base(family: str) -> str:
    """The preset family of a model family name ("flux" -> "flux-dev"); ValueError if unknown."""
    fam = family.strip().lower()
    if fam in NATIVE_SIDE:
        return fam
    if fam == "flux":
        return "flux-dev"
    raise ValueError(f"Unknown model family {family!r} (known: {', '.join(NATIVE_SIDE)}).")


def _aspect(aspect: str) -> AspectPreset:
    try:
        return ASPECT_PRESETS[aspect]
    except KeyError:
        raise ValueError(f"Unknown aspect ratio {aspect!r} (known: {', '.join(ASPECT_PRESETS)}).") from None


def _fit(ratio: float, area: int, m: int) -> tuple[int, int]:
    """Multiples of ``m`` with the aspect closest to ``ratio`` and the area within 10% of ``area``."""
    best: tuple[float, int, int] | None = None
    ideal_w = math.sqrt(area * ratio)
    for w in range(m, int(ideal_w * 1.3) + m, m):
        for h in {max(m, math.floor(w / ratio / m) * m), math.ceil(w / ratio / m) * m}:
            a = w * h / area
            if not 0.9 <= a <= 1.1:
                continue
            score = abs(math.log((w / h) / ratio)) + 0.3 * abs(math.log(a))
            if best is None or score < best[0]:
                best = (score, w, h)
    assert best is not None
    return best[1], best[2]


def size_for(aspect: str, family: str) -> tuple[int, int]:
    """(width, height) for an aspect preset key ("16:9") and model family."""
    preset = _aspect(aspect)
    fam = family_base(family)
    if fam == "sdxl":
        return _SDXL_BUCKETS[preset.key]
    side = NATIVE_SIDE[fam]
    return _fit(preset.ratio, side * side, FAMILY_MULTIPLE[fam])


def megapixels(width: int, height: int) -> float:
    """Megapixels (10^6 pixels), rounded to 2 decimals: 1024 x 1024 -> 1.05."""
    return round(width * height / 1_000_000, 2)


@dataclass(frozen=True)
class TierSettings:
    steps: int
    cfg: float
    sampler: str  # ComfyUI sampler_name
    scheduler: str  # ComfyUI scheduler
    guidance: float | None = None  # Flux dev's FluxGuidance ("Distilled CFG")

    def as_params(self) -> dict[str, object]:
        """Workflow params (see workflows/manifest.yaml) for these settings."""
        params: dict[str, object] = {"steps": self.steps, "cfg": self.cfg, "sampler": self.sampler,
                                     "scheduler": self.scheduler}
        if self.guidance is not None:
            params["guidance"] = self.guidance
        return params


TIERS = ("Draft", "Standard", "High")

QUALITY_TIERS: MappingProxyType[str, MappingProxyType[str, TierSettings]] = MappingProxyType({
    "Draft": MappingProxyType({
        "flux-schnell": TierSettings(2, 1.0, "euler", "simple"),
        "flux-dev": TierSettings(12, 1.0, "euler", "simple", guidance=3.5),
        "chroma": TierSettings(16, 4.0, "euler", "beta"),
        "sdxl": TierSettings(15, 6.0, "dpmpp_2m", "karras"),
        "sd15": TierSettings(15, 7.0, "dpmpp_2m", "karras"),
    }),
    "Standard": MappingProxyType({
        "flux-schnell": TierSettings(4, 1.0, "euler", "simple"),
        "flux-dev": TierSettings(20, 1.0, "euler", "simple", guidance=3.5),
        "chroma": TierSettings(26, 4.0, "euler", "beta"),
        "sdxl": TierSettings(30, 6.5, "dpmpp_2m", "karras"),
        "sd15": TierSettings(25, 7.0, "dpmpp_2m", "karras"),
    }),
    "High": MappingProxyType({
        "flux-schnell": TierSettings(6, 1.0, "euler", "beta"),
        "flux-dev": TierSettings(30, 1.0, "euler", "beta", guidance=3.5),
        "chroma": TierSettings(40, 4.0, "res_multistep", "beta"),
        "sdxl": TierSettings(40, 6.5, "dpmpp_2m_sde", "karras"),
        "sd15": TierSettings(35, 7.0, "dpmpp_2m_sde", "karras"),
    }),
})


def tier_settings(tier: str, family: str) -> TierSettings:
    """The settings of a quality tier ("Draft" | "Standard" | "High") for a model family."""
    try:
        per_family = QUALITY_TIERS[tier]
    except KeyError:
        raise ValueError(f"Unknown quality tier {tier!r} (known: {', '.join(TIERS)}).") from None
    return per_family[family_base(family)]
