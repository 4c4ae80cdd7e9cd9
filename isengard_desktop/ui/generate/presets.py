"""What the Generate form shows for the presets: families, the 7 aspect ratios with their
sizes, the quality tiers, batch sizes and the extras, in words. The numbers come from
:mod:`isengard_desktop.core.comfy.presets`; this module only phrases them.
"""

from __future__ import annotations

from ...core.comfy import presets

FAMILIES: tuple[tuple[str, str], ...] = (
    ("sdxl", "SDXL"), ("sd15", "SD 1.5"), ("flux-dev", "Flux dev"),
    ("flux-schnell", "Flux schnell"), ("chroma", "Chroma"))
_FAMILY_WORDS = dict(FAMILIES)
ASPECTS: tuple[str, ...] = tuple(presets.ASPECT_PRESETS)
TIERS: tuple[str, ...] = tuple(presets.TIERS)
DEFAULT_ASPECT = "1:1" if "1:1" in ASPECTS else ASPECTS[0]
DEFAULT_TIER = "Standard" if "Standard" in TIERS else TIERS[0]
BATCH_SIZES = (1, 2, 4, 8)
# (feature key, label, tooltip) in the order shown
FEATURES: tuple[tuple[str, str, str], ...] = (
    ("controlnet", "ControlNet",
     "Follow the pose and outlines of a control image you choose (needs a ControlNet model "
     "of this family on the server)."),
    ("ipadapter", "IP-Adapter",
     "Borrow the look of a reference image you choose: face, style or colours (needs the "
     "IP-Adapter nodes and models on the server)."),
    ("facedetailer", "FaceDetailer",
     "Find faces after the picture is made and redraw them at higher detail (needs the "
     "Impact Pack nodes and a face detector on the server)."),
    ("upscale", "Upscale",
     "Enlarge the finished picture with an upscale model (e.g. 4x-UltraSharp), sharper than "
     "plain resizing."),
)
FLUX = ("flux-dev", "flux-schnell")


def family_label(family: str | None) -> str:
    return _FAMILY_WORDS.get(family or "", family or "unknown family")


def family_of_workflow(name: str) -> str:
    """``sdxl-lora`` → ``sdxl``; ``flux-dev-img2img`` → ``flux-dev``; "" when unknown."""
    for key, _label in sorted(FAMILIES, key=lambda f: -len(f[0])):
        if name == key or name.startswith(key + "-"):
            return key
    return ""


def lora_fits(lora_family: str, family: str) -> bool:
    """A LoRA runs on its own family (Flux dev and schnell LoRAs load on either)."""
    return lora_family == family or (lora_family in FLUX and family in FLUX)


def aspect_size(aspect: str, family: str) -> tuple[int, int]:
    return presets.size_for(aspect, family)


megapixels = presets.megapixels


def aspect_tooltip(aspect: str, family: str) -> str:
    w, h = aspect_size(aspect, family)
    label = presets.ASPECT_PRESETS[aspect].label
    return (f"{label.capitalize()}: {w} × {h} px ({megapixels(w, h):.2f} MP), sized for "
            f"{family_label(family)}'s native resolution.")


def tier_note(tier: str, family: str) -> str:
    """``Standard: 28 steps · dpmpp_2m / karras · CFG 6.5``"""
    t = presets.tier_settings(tier, family)
    bits = [f"{t.steps} steps", f"{t.sampler} / {t.scheduler}"]
    if t.guidance is not None:
        bits.append(f"guidance {t.guidance:g}")
    else:
        bits.append(f"CFG {t.cfg:g}")
    return f"{tier}: " + " · ".join(bits)
