"""Value types of the ComfyUI client (Qt-free, frozen).

Shared by the client, the generation service and the UI. Node ids are strings ("1", "2", ...),
exactly as ComfyUI's API-format graphs spell them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".gif", ".webp")


@dataclass(frozen=True)
class ImageRef:
    """An output file on a ComfyUI server (what /history and ``executed`` name).

    Core ComfyUI returns videos under the same ``images`` key as pictures: ``SaveVideo`` and
    ``SaveWEBM`` answer ``{"images": [...], "animated": [true]}`` (``comfy_api/latest/_ui.py``
    ``PreviewVideo.as_dict``), ``SaveAnimatedWEBP``/``PNG`` ``"animated": [frames != 1]``.
    ``animated`` carries that flag of the output the file came from."""

    filename: str
    subfolder: str = ""
    type: str = "output"   # output | temp | input
    animated: bool = False

    @classmethod
    def from_json(cls, item: Mapping[str, Any], animated: bool = False) -> ImageRef:
        return cls(filename=str(item.get("filename", "")),
                   subfolder=str(item.get("subfolder", "") or ""),
                   type=str(item.get("type", "output") or "output"),
                   animated=animated)

    @property
    def is_video(self) -> bool:
        """An animated output (a clip, not a still)."""
        return self.animated and self.filename.lower().endswith(VIDEO_SUFFIXES)


def output_animated(output: Mapping[str, Any]) -> bool:
    """The ``animated`` flag of one node's ui output (``[true]`` / ``[false]`` / absent)."""
    flag = output.get("animated")
    if isinstance(flag, (list, tuple)):
        return bool(flag) and bool(flag[0])
    return bool(flag)


@dataclass(frozen=True)
class Device:
    name: str
    type: str
    index: int | None
    vram_total: int
    vram_free: int


@dataclass(frozen=True)
class SystemStats:
    comfyui_version: str
    os: str
    python_version: str
    pytorch_version: str
    devices: tuple[Device, ...]

    @property
    def gpu_name(self) -> str:
        return self.devices[0].name if self.devices else ""

    @property
    def gpu_label(self) -> str:
        """The GPU name without ComfyUI's decorations: "cuda:0 NVIDIA RTX 4090 : cudaMallocAsync"
        -> "NVIDIA RTX 4090"; "" when there is no device, "CPU" for the CPU device."""
        if not self.devices:
            return ""
        device = self.devices[0]
        if device.type == "cpu":
            return "CPU"
        name = device.name.split(" : ", 1)[0].strip()
        head, _, rest = name.partition(" ")
        if rest and ":" in head and head.split(":", 1)[1].isdigit():
            name = rest.strip()
        return name

    @property
    def vram_total(self) -> int:
        return self.devices[0].vram_total if self.devices else 0

    @property
    def vram_free(self) -> int:
        return self.devices[0].vram_free if self.devices else 0


@dataclass(frozen=True)
class QueueState:
    running: tuple[str, ...]   # prompt ids
    pending: tuple[str, ...]

    @property
    def length(self) -> int:
        return len(self.running) + len(self.pending)


# Run events, delivered in order to the on_event callback of ComfyClient.run()

@dataclass(frozen=True)
class RunStarted:
    prompt_id: str


@dataclass(frozen=True)
class NodesCached:
    prompt_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class NodeStarted:
    prompt_id: str
    node: str
    class_type: str   # class from the graph ("" when the graph does not name it)


@dataclass(frozen=True)
class NodeProgress:
    prompt_id: str
    node: str
    value: float
    max: float


@dataclass(frozen=True)
class PreviewImage:
    prompt_id: str
    node: str | None
    mime: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class NodeExecuted:
    prompt_id: str
    node: str
    images: tuple[ImageRef, ...]


RunEvent = RunStarted | NodesCached | NodeStarted | NodeProgress | PreviewImage | NodeExecuted


@dataclass(frozen=True)
class RunResult:
    prompt_id: str
    images: tuple[ImageRef, ...]         # every image of every output node, in node order
    cached: tuple[str, ...]              # nodes served from cache
    history: dict = field(repr=False, hash=False, compare=False)   # the raw /history/<id> entry
