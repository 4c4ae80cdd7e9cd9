"""GPU, RAM and disk detection without torch: NVML for NVIDIA, ROCm/sysfs for AMD, the system
profiler for Apple; a CPU-only answer when none is found."""

from __future__ import annotations

from pathlib import Path

from .machine import MachineInfo

__all__ = ["detect_machine"]


def detect_machine(data_dir: Path) -> MachineInfo:
    """Read this computer's GPUs, RAM, CPUs and the free disk under ``data_dir``. Blocks for up
    to a second or two (NVML init, a subprocess on some systems): call it off the UI thread."""
    raise NotImplementedError("filled in by GPU detection (issue 12)")
