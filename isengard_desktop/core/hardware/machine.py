"""The facts about this computer that decide how (and whether) it can train.

Read without torch (the GUI never imports it): see ``gpu.py`` for the detection, ``locks.py``
for the runtime lock the facts select.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["GpuInfo", "GpuVendor", "MachineInfo"]


class GpuVendor(StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"
    APPLE = "apple"
    INTEL = "intel"


@dataclass(frozen=True)
class GpuInfo:
    """One GPU.

    Attributes:
        vendor: who made it.
        name: the name the driver reports ("NVIDIA GeForce RTX 4090").
        vram_mb: its memory in MiB (Apple: the unified memory the GPU may use); 0 if unknown.
        driver_version: the driver's version string ("560.35.03"); "" if unknown.
        compute_capability: NVIDIA's (major, minor), e.g. (8, 9); None for other vendors.
        cuda_driver_version: the newest CUDA the driver supports as (major, minor), e.g.
            (12, 6); None when not NVIDIA or unknown.
        index: its position in the driver's list (0-based).
        arch: AMD's GPU target ("gfx1100") when known, which decides whether the ROCm build
            has kernels for it; "" otherwise.
    """

    vendor: GpuVendor
    name: str
    vram_mb: int = 0
    driver_version: str = ""
    compute_capability: tuple[int, int] | None = None
    cuda_driver_version: tuple[int, int] | None = None
    index: int = 0
    arch: str = ""


@dataclass(frozen=True)
class MachineInfo:
    """This computer, as far as training cares.

    Attributes:
        gpus: every GPU found, best first (most VRAM); empty = none usable.
        ram_mb: installed memory in MiB (0 if unknown).
        cpu_count: logical CPUs.
        os_name: "Linux", "Windows" or "Darwin".
        arch: machine architecture ("x86_64", "arm64", "AMD64").
        free_disk_mb: free space on the data folder's disk in MiB; None if unknown.
        notes: what detection could not read, in plain words (for the log and Settings).
        os_version: the macOS version ("14.5") on a Mac, else "" (PyPI's torch for Macs needs
            macOS 14).
    """

    gpus: tuple[GpuInfo, ...]
    ram_mb: int
    cpu_count: int
    os_name: str
    arch: str
    free_disk_mb: int | None = None
    notes: tuple[str, ...] = ()
    os_version: str = ""

    @property
    def best_gpu(self) -> GpuInfo | None:
        return self.gpus[0] if self.gpus else None
