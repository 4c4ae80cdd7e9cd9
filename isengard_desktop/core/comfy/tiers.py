"""Server tiers: which ComfyUI servers a job of a tier may use (Qt-free, pure functions).

Every server has a tier — ``final`` (the big card: finals, upscales), ``standard`` or
``draft`` (small cards: the many quick drafts). Defaults come from the detected GPUs: the card
with the most VRAM is ``final``, a card with at least half of its VRAM ``standard``, a smaller
one ``draft`` (:func:`default_tiers`); the user changes them in Settings → ComfyUI.

A job has a tier too (the Generate tab sets it; without one it follows the quality preset:
Draft → draft, Standard → standard, High → final; :func:`job_tier`). Its pictures go to the
servers of that tier (:func:`tier_servers`):

* **home tier** — the job's tier; when no usable server has it, the nearest tier that has one,
  looking *up* first (a draft may run on a standard card), then down;
* **overflow** — when every home server is busy with *other* work beyond
  :data:`OVERFLOW_LOAD` (prompts running or queued there that are not this job's), the next
  tier *up* that has a server below that load helps. A final job never spills down onto a
  smaller card while a final card exists; a big draft batch never takes the final card just
  because it is big (its own pictures do not count towards "busy").

Within the servers allowed, :func:`should_wait` keeps a slow server from taking one of the
last pictures when a faster server would finish it sooner (the mixed-speed tail), using each
server's measured seconds per picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_TIER", "OVERFLOW_LOAD", "QUALITY_TO_TIER", "SERVER_TIERS", "TIER_LABELS",
           "TierCandidate", "default_tiers", "gpu_server_key", "job_tier", "should_wait",
           "tier_servers", "valid_tier"]

SERVER_TIERS = ("final", "standard", "draft")          # biggest first
TIER_LABELS = {"final": "Final", "standard": "Standard", "draft": "Draft"}
DEFAULT_TIER = "standard"
QUALITY_TO_TIER = {"Draft": "draft", "Standard": "standard", "High": "final"}
# a tier is "busy" when each of its servers has at least this many prompts of other work
# (running or queued); then the next tier up helps
OVERFLOW_LOAD = 2
_UP = {"draft": ("standard", "final"), "standard": ("final",), "final": ()}
_DOWN = {"draft": (), "standard": ("draft",), "final": ("standard", "draft")}


def valid_tier(value: Any) -> bool:
    return isinstance(value, str) and value in SERVER_TIERS


def gpu_server_key(index: int) -> str:
    """The key of the managed ComfyUI pinned to GPU ``index`` (driver order)."""
    return f"gpu{int(index)}"


def default_tiers(gpus: Sequence[Any]) -> dict[str, str]:
    """Default tier per managed GPU server (``gpu<index>`` → tier) for GPUs with ``index``
    and ``vram_mb``: the most VRAM → final (the first of equals), at least half of that →
    standard, less → draft. One GPU or none: {} (one managed server, tier ``final``)."""
    if len(gpus) < 2:
        return {}
    largest = max(int(g.vram_mb) for g in gpus)
    out: dict[str, str] = {}
    final_given = False
    for gpu in sorted(gpus, key=lambda g: int(g.index)):
        vram = int(gpu.vram_mb)
        if vram == largest and not final_given:
            tier = "final"
            final_given = True
        elif largest and vram * 2 >= largest:
            tier = "standard"
        else:
            tier = "draft"
        out[gpu_server_key(gpu.index)] = tier
    return out


def job_tier(server_tier: str, quality: str) -> str:
    """The tier a job runs on: ``server_tier`` when given, else from the quality preset."""
    if server_tier:
        if not valid_tier(server_tier):
            raise ValueError(f"Unknown server tier {server_tier!r} (known: "
                             f"{', '.join(SERVER_TIERS)}).")
        return server_tier
    return QUALITY_TO_TIER.get(quality, DEFAULT_TIER)


@dataclass(frozen=True)
class TierCandidate:
    """A server that could run the job's next picture (healthy, has the models).

    ``other_load``: prompts running or queued there that are not this job's."""

    key: str
    tier: str
    other_load: int = 0


def tier_servers(tier: str, candidates: Sequence[TierCandidate],
                 threshold: int = OVERFLOW_LOAD) -> tuple[list[str], str, bool]:
    """Keys of the candidates a picture of a ``tier`` job may use now (home tier first,
    least loaded first), the home tier, and whether overflow servers were added. See the
    module docstring for the rule."""
    by_tier: dict[str, list[TierCandidate]] = {}
    for c in candidates:
        by_tier.setdefault(c.tier if c.tier in SERVER_TIERS else DEFAULT_TIER, []).append(c)
    home = next((t for t in (tier, *_UP.get(tier, ()), *_DOWN.get(tier, ())) if by_tier.get(t)),
                "")
    if not home:
        return [], tier, False
    chosen = sorted(by_tier[home], key=lambda c: c.other_load)
    keys = [c.key for c in chosen]
    overflow = False
    if all(c.other_load >= threshold for c in chosen):
        for up in _UP.get(home, ()):
            free = sorted((c for c in by_tier.get(up, ()) if c.other_load < threshold),
                          key=lambda c: c.other_load)
            if free:
                keys += [c.key for c in free]
                overflow = True
                break
    return keys, home, overflow


def should_wait(key: str, pending: int, sec_per_picture: Mapping[str, float],
                remaining: Mapping[str, float]) -> bool:
    """Whether idle server ``key`` should leave the ``pending`` pictures to busy servers.

    ``remaining``: for each *busy* allowed server, the seconds its current picture still
    needs (estimated). It waits when at least ``pending`` busy servers would each finish one
    more picture before ``key`` could finish one (so taking one would only lengthen the
    batch). Unknown speeds never make a server wait."""
    mine = sec_per_picture.get(key, 0.0)
    if mine <= 0 or pending <= 0:
        return False
    sooner = 0
    for other, left in remaining.items():
        if other == key:
            continue
        theirs = sec_per_picture.get(other, 0.0)
        if theirs <= 0:
            continue
        if max(0.0, left) + theirs < mine:
            # a fast server may finish several before this one finishes one
            sooner += int((mine - max(0.0, left)) // theirs)
    return sooner >= pending
