"""The draft funnel ("Explore") and "more like this" as plain rules (Qt-free).

A funnel narrows many cheap drafts to one finished picture in three rendered stages:

* ``draft``    — N txt2img pictures (default 20) at the Draft quality preset, a smaller size
  (:data:`DRAFT_SIDE_SCALE`) and fixed distinct seeds ``seed, seed+1, …``, on the draft GPU tier;
* ``standard`` — each kept draft again at full size and the Standard preset, with the SAME seed,
  as image to image from the draft (:data:`STAGE_DENOISE` keeps its composition), standard tier;
* ``final``    — each kept standard picture at the High preset with the same seed, a lower
  denoise and the upscale extra when a server can upscale, on the final tier.

The user keeps ``sizes.standard`` (8) drafts, then ``sizes.final`` (3) standard pictures, then
one final. Every picture records its lineage (parent generation id, stage, seed, parameters:
``generations.parent_id`` / ``stage`` / ``funnel_id`` / ``pick``, migration 8) so any stage can
be re-opened and the chosen picture's history shown as a tree (:func:`lineage_rows`).

"More like this" is image to image from one picture at a low denoise (default
:data:`MORE_LIKE_DENOISE`) with nearby seeds (``seed+1 …``, :func:`nearby_seed`); the children
record the picture as their parent and stay in its stage.

Numbers: the stage denoise values follow the reference notes (``../shared/reference/
generation.md`` §F2: refinement is img2img at low denoise with the same seed; Fooocus' "Vary
(Subtle)" is 0.5 and its upscale re-diffuses at 0.382, ``lllyasviel/Fooocus:modules/flags.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .jobs import GenerationRequest, LoraChoice

__all__ = [
    "DRAFT_SIDE_SCALE",
    "MORE_LIKE_COUNT",
    "MORE_LIKE_DENOISE",
    "PICKS",
    "SERVER_TIERS",
    "STAGES",
    "STAGE_DENOISE",
    "STAGE_QUALITY",
    "STAGE_TITLES",
    "FunnelSizes",
    "LineageRow",
    "draft_request",
    "lineage_rows",
    "more_like_request",
    "nearby_seed",
    "next_stage",
    "scaled_size",
    "stage_items",
    "stage_request",
]

STAGES = ("draft", "standard", "final")
# the GPU tier a stage's jobs ask the router for (``GenerationRequest.server_tier``)
SERVER_TIERS = ("draft", "standard", "final")
STAGE_TITLES = {"draft": "Drafts", "standard": "Standard", "final": "Final"}
# the quality preset (core/comfy/presets.py QUALITY_TIERS) each stage renders with
STAGE_QUALITY = {"draft": "Draft", "standard": "Standard", "final": "High"}
# image-to-image strength when a stage re-renders its parent (draft has no parent)
STAGE_DENOISE = {"standard": 0.55, "final": 0.35}
# drafts are made at this fraction of the family's native side (SDXL 1024 → 768)
DRAFT_SIDE_SCALE = 0.75
MIN_SIDE = 256
# KSampler.seed's maximum in ComfyUI 0.3.64 (= workflow_manifest.MAX_SEED; not imported from
# there: that module pulls in PyYAML, and the database code imports this one)
MAX_SEED = 2**64 - 1
MORE_LIKE_DENOISE = 0.35
MORE_LIKE_COUNT = 4
PICKS = ("", "keep", "discard")


@dataclass(frozen=True)
class FunnelSizes:
    """How many drafts are made and how many pictures each stage keeps (20 → 8 → 3 → 1)."""

    drafts: int = 20
    standard: int = 8
    final: int = 3
    chosen: int = 1

    LIMITS = {"drafts": (2, 64), "standard": (1, 32), "final": (1, 16)}

    @classmethod
    def from_values(cls, drafts: int, standard: int, final: int) -> FunnelSizes:
        """Sizes clamped to their limits and kept decreasing (a stage never keeps more than
        the stage before it made)."""
        lo, hi = cls.LIMITS["drafts"]
        d = max(lo, min(hi, int(drafts)))
        lo, hi = cls.LIMITS["standard"]
        s = max(lo, min(hi, int(standard), d))
        lo, hi = cls.LIMITS["final"]
        f = max(lo, min(hi, int(final), s))
        return cls(d, s, f)

    def made(self, stage: str) -> int:
        """How many pictures ``stage`` renders (drafts) or should be fed (kept before it)."""
        return {"draft": self.drafts, "standard": self.standard, "final": self.final}[stage]

    def keep(self, stage: str) -> int:
        """How many pictures of ``stage`` the user is asked to keep."""
        return {"draft": self.standard, "standard": self.final, "final": self.chosen}[stage]


def next_stage(stage: str) -> str | None:
    """The stage after ``stage`` (None after final); ValueError for an unknown stage."""
    if stage not in STAGES:
        raise ValueError(f"Unknown funnel stage {stage!r} (known: {', '.join(STAGES)}).")
    index = STAGES.index(stage)
    return STAGES[index + 1] if index + 1 < len(STAGES) else None


def nearby_seed(seed: int, offset: int = 1) -> int:
    """``seed + offset`` wrapped into ComfyUI's seed range (0 … 2**64-1)."""
    return (int(seed) + int(offset)) % (MAX_SEED + 1)


def scaled_size(width: int, height: int, scale: float, multiple: int) -> tuple[int, int]:
    """``width × height`` scaled by ``scale``, each side a multiple of ``multiple`` and at least
    :data:`MIN_SIDE` (the aspect stays as close as the multiple allows)."""
    if scale == 1.0:
        return width, height

    def side(value: int) -> int:
        return max(MIN_SIDE, int(round(value * scale / multiple)) * multiple)

    return side(width), side(height)


@dataclass(frozen=True)
class LineageRow:
    """One picture in a lineage tree: its generation id, parent id (None for a root), stage,
    seed, how it was made and whether it is the picture asked about."""

    id: int
    parent_id: int | None
    stage: str
    seed: int
    label: str
    depth: int
    current: bool


def _origin(params: Mapping[str, Any]) -> str:
    origin = str(params.get("origin") or "")
    return {"more_like_this": "more like this", "funnel": "", "": ""}.get(origin, origin)


def lineage_rows(items: Iterable[Any], item_id: int) -> list[LineageRow]:
    """The lineage of ``item_id`` as a depth-first list: from its root ancestor down through
    every descendant (siblings included, so a funnel's stages read as a tree). ``items`` are
    GalleryItem-like objects with ``id``, ``parent_id``, ``stage``, ``seed``, ``params``,
    ``pick``; rows whose parent is missing are roots. An unknown id gives []."""
    by_id = {int(i.id): i for i in items}
    if item_id not in by_id:
        return []
    root = by_id[item_id]
    seen = {root.id}
    while root.parent_id is not None and root.parent_id in by_id and root.parent_id not in seen:
        root = by_id[root.parent_id]
        seen.add(root.id)
    children: dict[int, list[Any]] = {}
    for item in by_id.values():
        if item.parent_id is not None and item.parent_id in by_id:
            children.setdefault(item.parent_id, []).append(item)
    out: list[LineageRow] = []
    visited: set[int] = set()

    def walk(item: Any, depth: int) -> None:
        if item.id in visited:
            return
        visited.add(item.id)
        params: Mapping[str, Any] = item.params or {}
        bits = [STAGE_TITLES.get(item.stage, item.stage or "picture"), f"seed {item.seed}"]
        how = _origin(params)
        if how:
            bits.append(how)
        denoise = (params.get("feature_inputs") or {}).get("denoise")
        if denoise is not None and item.parent_id is not None:
            bits.append(f"denoise {denoise}")
        if getattr(item, "pick", ""):
            bits.append("kept" if item.pick == "keep" else "discarded")
        out.append(LineageRow(item.id, item.parent_id, item.stage, item.seed, " · ".join(bits),
                              depth, item.id == item_id))
        for child in sorted(children.get(item.id, ()), key=lambda c: c.id):
            walk(child, depth + 1)

    walk(root, 0)
    return out


def stage_items(items: Sequence[Any], funnel_id: str, stage: str) -> list[Any]:
    """The pictures of one funnel stage, oldest first."""
    return sorted((i for i in items if i.funnel_id == funnel_id and i.stage == stage),
                  key=lambda i: i.id)


# -- requests ------------------------------------------------------------------------------------
_NOT_INHERITED = {"img2img", "upscale"}
_INPUTS_NOT_INHERITED = {"denoise", "init_image"}


def draft_request(base: GenerationRequest, sizes: FunnelSizes, funnel_id: str,
                  seed: int) -> GenerationRequest:
    """The first stage of a funnel from the form's request: ``sizes.drafts`` pictures with
    seeds ``seed, seed+1, …`` at the Draft preset and :data:`DRAFT_SIDE_SCALE`, draft tier."""
    return replace(base, tier=STAGE_QUALITY["draft"], seed=int(seed) % (MAX_SEED + 1),
                   batch=sizes.drafts, funnel_id=funnel_id, stage="draft", origin="funnel",
                   server_tier="draft", size_scale=DRAFT_SIDE_SCALE, parent_id=None,
                   features=frozenset(base.features - {"upscale"}))


def _lora_of(params: Mapping[str, Any]) -> LoraChoice | None:
    lora = params.get("lora")
    if not isinstance(lora, Mapping) or not lora.get("path"):
        return None
    return LoraChoice(int(lora.get("character_id") or 0), str(lora["path"]),
                      float(lora.get("strength", 1.0)), str(lora.get("trigger") or ""))


def _from_item(item: Any, **changes: Any) -> GenerationRequest:
    """A request that makes ``item`` again (its prompt, model, size, LoRA and extras, without
    image to image and upscale), then ``changes``."""
    p: Mapping[str, Any] = item.params or {}
    features = frozenset(str(f) for f in (p.get("features") or ())) - _NOT_INHERITED
    inputs = {str(k): str(v) for k, v in (p.get("feature_inputs") or {}).items()
              if k not in _INPUTS_NOT_INHERITED and not str(k).startswith("upscale_")}
    values: dict[str, Any] = dict(
        prompt=str(p.get("prompt", item.prompt)), negative=str(p.get("negative",
                                                                     item.negative)),
        family=str(p.get("family") or "sdxl"), model=str(p.get("model") or item.model),
        aspect=str(p.get("aspect") or "1:1"), tier=str(p.get("tier") or "Standard"),
        seed=int(item.seed), batch=1, lora=_lora_of(p), features=features,
        feature_inputs=inputs, target="gallery", character_id=item.character_id,
        parent_image=item.path, parent_id=int(item.id), funnel_id=item.funnel_id,
        stage=item.stage, origin="", server_tier=str(p.get("server_tier") or ""),
        size_scale=float(p.get("size_scale") or 1.0))
    values.update(changes)
    return GenerationRequest(**values)


def stage_request(parent: Any, stage: str, upscale: bool = False) -> GenerationRequest:
    """``parent`` (a kept picture of the stage before) rendered again for ``stage`` with the
    SAME seed: image to image from it at :data:`STAGE_DENOISE`, the stage's quality preset and
    full size, on the stage's tier; the final stage adds the upscale extra when ``upscale``."""
    if stage not in STAGE_DENOISE:
        raise ValueError(f"Stage {stage!r} is not made from a parent (one of "
                         f"{', '.join(STAGE_DENOISE)}).")
    request = _from_item(parent, stage=stage, tier=STAGE_QUALITY[stage], origin="funnel",
                         server_tier=stage, size_scale=1.0)
    features = request.features | {"img2img"} | ({"upscale"} if upscale else frozenset())
    inputs = {**request.feature_inputs, "denoise": f"{STAGE_DENOISE[stage]:.2f}"}
    return replace(request, features=frozenset(features), feature_inputs=inputs)


def more_like_request(item: Any, denoise: float = MORE_LIKE_DENOISE,
                      count: int = MORE_LIKE_COUNT) -> GenerationRequest:
    """"More like this": ``count`` pictures from ``item`` by image to image at ``denoise`` with
    the nearby seeds ``seed+1 … seed+count``; they stay in ``item``'s funnel stage (if any),
    at its size and quality, and name it as their parent."""
    if not 0.05 <= float(denoise) <= 1.0:
        raise ValueError(f"The strength (denoise) must be between 0.05 and 1, not {denoise}.")
    if not 1 <= int(count) <= 16:
        raise ValueError(f"The count must be between 1 and 16, not {count}.")
    p: Mapping[str, Any] = item.params or {}
    request = _from_item(item, seed=nearby_seed(item.seed, 1), batch=int(count),
                         origin="more_like_this",
                         server_tier=str(p.get("server_tier") or item.stage or ""))
    features = request.features | {"img2img"} | (
        {"upscale"} if "upscale" in (p.get("features") or ()) else frozenset())
    inputs = {**request.feature_inputs, "denoise": f"{float(denoise):.2f}"}
    return replace(request, features=frozenset(features), feature_inputs=inputs)
