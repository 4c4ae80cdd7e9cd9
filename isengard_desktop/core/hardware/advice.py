"""Plain warnings about what a machine means for training (Settings "This machine" and the
first-run wizard show the same sentences)."""

from __future__ import annotations

from .locks import LockChoice
from .machine import GpuVendor, MachineInfo
from ..runtime.status import RuntimeDevice

__all__ = ["LOW_DISK_MB", "SMALL_VRAM_MB", "gb_text", "machine_advice"]

SMALL_VRAM_MB = 12 * 1024        # below this: SD 1.5 and SDXL LoRAs only
LOW_DISK_MB = 30 * 1024          # a CUDA runtime is several GB, base models 2-24 GB each


def gb_text(mb: int) -> str:
    """"12 GB", "7.5 GB", "0.5 GB": one decimal only where it says something."""
    text = f"{mb / 1024:.1f}" if mb < 10 * 1024 else f"{mb / 1024:.0f}"
    return (text[:-2] if text.endswith(".0") else text) + " GB"


def machine_advice(info: MachineInfo, choice: LockChoice) -> list[str]:
    """Warnings for ``info`` with the lock ``choice`` made for it: no usable GPU (hours per
    LoRA), under 12 GB of GPU memory (SD 1.5 / SDXL only), little free disk."""
    out: list[str] = []
    gpu = choice.gpu
    if choice.device is RuntimeDevice.CPU:
        out.append("No usable GPU: training runs on the processor and a LoRA takes hours.")
    elif gpu is not None and gpu.vram_mb and gpu.vram_mb < SMALL_VRAM_MB \
            and gpu.vendor is not GpuVendor.APPLE:
        out.append(f"{gpu.name} has {gb_text(gpu.vram_mb)} of memory: enough for SD 1.5 and "
                   "SDXL LoRAs; Flux and Chroma need 12 GB or more.")
    if info.free_disk_mb is not None and info.free_disk_mb < LOW_DISK_MB:
        out.append(f"Only {gb_text(info.free_disk_mb)} free on the data folder's disk: the "
                   "trainer runtime needs several GB and each base model 2-24 GB.")
    return out
