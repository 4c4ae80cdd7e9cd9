"""Video jobs: the model families, their workflows, presets per VRAM tier, and one request.

A :class:`VideoRequest` is one Generate click of the Video tab. :func:`plan_video` turns it into
the ComfyUI runs it needs: one run for image-to-video (one keyframe) or text-to-video (none),
one first-last-frame run per segment for two or more keyframes (see :mod:`.keyframes`).
:func:`run_params` gives each run's workflow parameters (the names of ``workflows/manifest.yaml``).

Presets are rules of thumb for ComfyUI with its default offloading, not measurements (no GPU
here); ``benchmarks/gpu`` is where they would be checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .keyframes import plan_segments, segment_lengths, snap_length

__all__ = ["CONTAINER_CHOICES", "TIERS", "VIDEO_FAMILIES", "VideoFamily", "VideoRequest",
           "VideoRun", "frames_for", "plan_video", "run_params", "tier_for", "workflow_for"]

TIERS = ("8–12 GB", "16 GB", "24 GB+")
CONTAINER_CHOICES = ("mp4", "webm")


@dataclass(frozen=True)
class VideoFamily:
    id: str
    label: str
    step: int                    # frames come in step*n+1 (latent packing)
    fps: float                   # the model's native frame rate
    workflows: Mapping[str, str]  # kind -> workflow name
    sizes: Mapping[str, tuple[int, int]]  # VRAM tier -> (width, height)
    size_step: int               # width/height multiple the conditioning node asks for
    max_seconds: float           # longest clip one run makes well


VIDEO_FAMILIES: Mapping[str, VideoFamily] = {
    # Wan 2.1: 16 fps (its model cards), 81 frames (5 s) per run; WanImageToVideo step 16.
    # The I2V/FLF2V 14B models in fp8 need ~16 GB+ at 480p with offloading; 720p wants 24 GB+.
    "wan21": VideoFamily("wan21", "Wan 2.1", 4, 16.0,
                         {"img2vid": "wan21-i2v", "flf2vid": "wan21-flf2v", "txt2vid": "wan21-t2v"},
                         {"8–12 GB": (512, 288), "16 GB": (640, 368), "24 GB+": (832, 480)},
                         16, 5.0),
    # LTX-Video 2B: 25 fps by default (LTXVConditioning.frame_rate), 97 frames, step 32 sizes;
    # runs on ~12 GB at 768×512.
    "ltxv": VideoFamily("ltxv", "LTX-Video", 8, 25.0,
                        {"img2vid": "ltxv-i2v", "flf2vid": "ltxv-flf2v", "txt2vid": "ltxv-t2v"},
                        {"8–12 GB": (512, 320), "16 GB": (640, 416), "24 GB+": (768, 512)},
                        32, 8.0),
}


def tier_for(vram_gb: float | None) -> str:
    """The preset tier for a card (None/0: the smallest)."""
    if not vram_gb or vram_gb < 15.5:
        return TIERS[0]
    if vram_gb < 23.5:
        return TIERS[1]
    return TIERS[2]


def workflow_for(family: str, keyframes: int) -> str:
    """The workflow a job of ``family`` with ``keyframes`` pictures runs (as :func:`plan_video`
    plans it): none → text to video, one → image to video, more → first-last-frame."""
    kind = "txt2vid" if keyframes == 0 else "img2vid" if keyframes == 1 else "flf2vid"
    return VIDEO_FAMILIES[family].workflows[kind]


def frames_for(seconds: float, fps: float, step: int) -> int:
    """Frames for ``seconds`` at ``fps``, snapped to the model's ``step*n+1``."""
    return snap_length(max(1, round(seconds * fps)) + 1, step)


@dataclass(frozen=True)
class VideoRequest:
    """One Generate click of the Video tab. ``keyframes`` are local image paths (0: text to
    video, 1: image to video, 2+: first-last-frame segments); ``seed=None`` means random."""

    prompt: str
    family: str = "wan21"
    keyframes: tuple[str, ...] = ()
    negative: str = ""
    seconds: float = 2.0
    fps: float = 16.0
    width: int = 832
    height: int = 480
    seed: int | None = None
    steps: int | None = None
    model: str = ""
    container: str = "mp4"
    save_frames: bool = False
    character_id: int | None = None
    trigger: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["keyframes"] = list(self.keyframes)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VideoRequest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "keyframes" in known:
            known["keyframes"] = tuple(str(k) for k in known["keyframes"] or ())
        return cls(**known)


@dataclass(frozen=True)
class VideoRun:
    """One ComfyUI run of a video job."""

    index: int
    workflow: str
    kind: str
    keyframes: tuple[str, ...]   # local paths: () / (start,) / (start, end)
    frames: int


def plan_video(request: VideoRequest) -> list[VideoRun]:
    """The runs ``request`` needs, in order. Raises ValueError naming the field."""
    fam = VIDEO_FAMILIES.get(request.family)
    if fam is None:
        raise ValueError(f"family: unknown video model family {request.family!r} "
                         f"(known: {', '.join(VIDEO_FAMILIES)})")
    if not request.prompt.strip():
        raise ValueError("prompt: say what should happen in the clip")
    if request.seconds <= 0 or request.fps <= 0:
        raise ValueError("length/fps: both must be positive")
    if request.container not in CONTAINER_CHOICES:
        raise ValueError(f"container: {request.container!r} is not one of "
                         f"{', '.join(CONTAINER_CHOICES)}")
    total = frames_for(request.seconds, request.fps, fam.step)
    keys = request.keyframes
    if len(keys) == 0:
        return [VideoRun(0, fam.workflows["txt2vid"], "txt2vid", (), total)]
    if len(keys) == 1:
        return [VideoRun(0, fam.workflows["img2vid"], "img2vid", (keys[0],), total)]
    lengths = segment_lengths(total, len(keys) - 1, fam.step)
    return [VideoRun(s.index, fam.workflows["flf2vid"], "flf2vid", (keys[s.first], keys[s.last]),
                     s.frames) for s in plan_segments(keys, lengths)]


def run_params(request: VideoRequest, run: VideoRun, seed: int,
               uploaded: Mapping[str, str]) -> dict[str, Any]:
    """Workflow parameters for one run. ``uploaded`` maps a local keyframe path to the name
    ComfyUI gave it on upload (what LoadImage takes)."""
    fam = VIDEO_FAMILIES[request.family]
    w = max(fam.size_step, request.width // fam.size_step * fam.size_step)
    h = max(fam.size_step, request.height // fam.size_step * fam.size_step)
    params: dict[str, Any] = {"prompt": request.prompt, "seed": seed + run.index, "width": w,
                              "height": h, "length": run.frames, "fps": float(request.fps),
                              "filename_prefix": "isengard/video"}
    if request.negative:
        params["negative"] = request.negative
    if request.steps:
        params["steps"] = int(request.steps)
    if request.model:
        params["model"] = request.model
    if run.keyframes:
        params["start_image"] = uploaded[run.keyframes[0]]
    if len(run.keyframes) > 1:
        params["end_image"] = uploaded[run.keyframes[1]]
    return params
