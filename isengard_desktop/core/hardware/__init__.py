"""What this computer has for training: GPUs (NVIDIA via NVML, AMD/ROCm, Apple), RAM and free
disk, read without torch; and which trainer-runtime lock fits it. Exports :class:`MachineInfo`."""

from .machine import GpuInfo, GpuVendor, MachineInfo

__all__ = ["GpuInfo", "GpuVendor", "MachineInfo"]
