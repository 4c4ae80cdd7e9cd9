"""Frozen values the generation service emits and accepts (Qt-free).

* :class:`ServerStatus` — one ComfyUI server as the backend bar shows it.
* :class:`LoraChoice` — a character's trained LoRA picked for a job.
* :class:`GenerationRequest` — what the Generate tab asks for.
* :class:`GalleryItem` — one generated image as stored in the ``generations`` table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "GALLERY_STATUSES",
    "SERVER_STATES",
    "ServerState",
    "TARGETS",
    "GalleryItem",
    "GenerationRequest",
    "LoraChoice",
    "ServerStatus",
]



class ServerState(StrEnum):
    """A ComfyUI server's state as the app shows it (compares equal to its string value)."""

    STOPPED = "stopped"      # managed server not running
    STARTING = "starting"    # managed server launched, not answering yet
    READY = "ready"
    BUSY = "busy"            # ready, with a queue or a job of ours in flight
    OFFLINE = "offline"      # remote server not reachable
    ERROR = "error"          # managed server failed to start or died


SERVER_STATES = tuple(ServerState)
GALLERY_STATUSES = ("gallery", "staging", "kept", "discarded")
# "compare": the checkpoint comparison's "fill the gaps" (one picture written to the request's
# ``output_path``; no gallery row)
TARGETS = ("gallery", "staging", "compare")


@dataclass(frozen=True)
class ServerStatus:
    """One ComfyUI server: the managed local one (``kind="managed"``) or a remote URL."""

    key: str
    url: str
    label: str
    kind: str                    # "managed" | "remote"
    state: ServerState
    gpu_name: str = ""
    vram_total: int = 0
    vram_free: int = 0
    queue_length: int = 0
    message: str = ""            # why it is offline/in error, or what it is doing
    tier: str = ""               # final | standard | draft (core.comfy.tiers)

    @property
    def healthy(self) -> bool:
        return self.state in (ServerState.READY, ServerState.BUSY)


@dataclass(frozen=True)
class LoraChoice:
    """A trained LoRA of a character: its file (``LoraRecord.path``), strength and trigger."""

    character_id: int
    path: str
    strength: float
    trigger: str


@dataclass(frozen=True)
class GenerationRequest:
    """One Generate click. ``seed=None`` means random; ``target="staging"`` puts the images in
    the character's staging area (synthetic dataset expansion) instead of the gallery."""

    prompt: str
    negative: str = ""
    family: str = "sdxl"         # sd15 | sdxl | flux-dev | flux-schnell | chroma
    model: str = ""              # model file name as the server lists it
    aspect: str = "1:1"
    tier: str = "Standard"
    seed: int | None = None
    batch: int = 1
    lora: LoraChoice | None = None
    features: frozenset[str] = frozenset()
    feature_inputs: Mapping[str, str] = field(default_factory=dict, hash=False)
    target: str = "gallery"
    character_id: int | None = None
    parent_image: str = ""
    # the server tier (final | standard | draft); "" = from ``tier`` (Draft → draft,
    # Standard → standard, High → final), see core.comfy.tiers.job_tier
    server_tier: str = ""
    # lineage (core/comfy/funnel.py): the generation the pictures come from, the funnel and
    # its stage ("draft" | "standard" | "final"; "" outside a funnel), how they were made
    # ("funnel" | "more_like_this" | "")
    parent_id: int | None = None
    funnel_id: str = ""
    stage: str = ""
    origin: str = ""
    # the picture size times this factor (funnel drafts are made smaller; 1.0 = the preset)
    size_scale: float = 1.0
    # fixed size and sampler steps (0: from ``aspect`` and ``tier``), e.g. what a trainer
    # sampled with; ``output_path``: where the one picture of a ``target="compare"`` job goes
    width: int = 0
    height: int = 0
    steps: int = 0
    output_path: str = ""
    # the sampler settings of a trainer's samples (checkpoint comparison); None / "": the
    # ``tier``'s. ``guidance``: Flux dev's embedded guidance
    cfg: float | None = None
    guidance: float | None = None
    sampler: str = ""
    scheduler: str = ""


@dataclass(frozen=True)
class GalleryItem:
    """One generated image (a row of the ``generations`` table)."""

    id: int
    job_id: str
    path: str
    prompt: str
    negative: str
    seed: int
    width: int
    height: int
    workflow: str
    model: str
    lora_path: str
    lora_strength: float
    character_id: int | None
    status: str                  # one of GALLERY_STATUSES
    params: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    created: str = ""
    server: str = ""
    parent_image: str = ""
    prompt_id: str = ""
    # lineage (migration 8): parent generation id, funnel id and stage, the funnel decision
    parent_id: int | None = None
    funnel_id: str = ""
    stage: str = ""
    pick: str = ""               # "" | "keep" | "discard" (funnel triage; files stay)
