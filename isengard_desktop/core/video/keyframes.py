"""Keyframe video: three or more pictures become consecutive first-last-frame segments.

A sequence of keyframes ``K0, K1, ..., Kn`` renders as ``n`` segments; segment ``k`` starts on
``Kk`` and ends on ``K(k+1)``. Segment ``k``'s last frame and segment ``k+1``'s first frame are
the same picture (``K(k+1)``), so joining drops the first frame of every segment after the first:
the shared frame appears once and the clip has no jump or stutter at the joins.

Frame counts follow the video models' latent packing: Wan decodes ``4n+1`` frames
(``WanFirstLastFrameToVideo``: latent length ``((length - 1) // 4) + 1``, ComfyUI
``comfy_extras/nodes_wan.py``), LTX-Video ``8n+1`` (``EmptyLTXVLatentVideo`` step 8,
``LTXVImgToVideo`` min 9 in ComfyUI 0.3.64's ``/object_info``). :func:`snap_length` rounds a
wanted length to such a count. Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Segment", "join_frames", "joined_length", "plan_segments", "segment_lengths",
           "snap_length"]

T = TypeVar("T")
F = TypeVar("F")


@dataclass(frozen=True)
class Segment:
    """One first-last-frame render of a keyframe sequence."""

    index: int
    first: int          # index of the start keyframe
    last: int           # index of the end keyframe (first + 1)
    frames: int         # frames this segment renders (shared frames included)


def snap_length(frames: int, step: int) -> int:
    """The nearest frame count of the form ``step * n + 1`` (at least ``step + 1``; ties go
    up)."""
    if step < 1:
        raise ValueError(f"step must be at least 1 (got {step})")
    if frames < 1:
        raise ValueError(f"a clip needs at least one frame (got {frames})")
    n = max(1, (frames - 1 + step // 2) // step)
    return step * n + 1


def segment_lengths(total_frames: int, segments: int, step: int) -> list[int]:
    """Per-segment frame counts (each ``step*n+1``) whose joined length is as close to
    ``total_frames`` as the step allows; the remainder goes to the first segments."""
    if segments < 1:
        raise ValueError(f"a sequence needs at least one segment (got {segments})")
    # joined = sum(len) - (segments - 1) = step * sum(n) + 1
    units = max(segments, (max(1, total_frames) - 1 + step // 2) // step)
    base, extra = divmod(units, segments)
    return [step * (base + (1 if i < extra else 0)) + 1 for i in range(segments)]


def plan_segments(keyframes: Sequence[T], lengths: int | Sequence[int]) -> list[Segment]:
    """Segments for ``keyframes`` (at least two). ``lengths`` is one frame count for every
    segment or one per segment; each must be at least 2 (a start and an end frame)."""
    if len(keyframes) < 2:
        raise ValueError(f"a keyframe sequence needs at least two keyframes (got {len(keyframes)})")
    count = len(keyframes) - 1
    if isinstance(lengths, int):
        per = [lengths] * count
    else:
        per = [int(n) for n in lengths]
        if len(per) != count:
            raise ValueError(f"{len(keyframes)} keyframes make {count} segments, but "
                             f"{len(per)} lengths were given")
    for i, n in enumerate(per):
        if n < 2:
            raise ValueError(f"segment {i + 1} needs at least 2 frames (got {n})")
    return [Segment(index=i, first=i, last=i + 1, frames=n) for i, n in enumerate(per)]


def joined_length(lengths: Sequence[int]) -> int:
    """Frames of the joined clip: every join shares one frame."""
    if not lengths:
        return 0
    return sum(lengths) - (len(lengths) - 1)


def join_frames(segments: Sequence[Sequence[F]]) -> list[F]:
    """Concatenate rendered segments, dropping each later segment's first frame (it is the
    previous segment's last frame: the shared keyframe). Empty segments are refused."""
    out: list[F] = []
    for i, frames in enumerate(segments):
        if not frames:
            raise ValueError(f"segment {i + 1} has no frames")
        out.extend(frames if i == 0 else frames[1:])
    return out
