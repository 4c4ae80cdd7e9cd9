"""Which trainer-runtime lock fits this machine (and a plain message when none does)."""

from __future__ import annotations

from dataclasses import dataclass

from ..runtime.status import RuntimeDevice
from .machine import GpuInfo, MachineInfo

__all__ = ["LockChoice", "choose_lock"]


@dataclass(frozen=True)
class LockChoice:
    """The runtime lock picked for a machine.

    Attributes:
        device: the lock to install (CPU when no GPU can be used).
        gpu: the GPU it was chosen for; None for CPU.
        reason: one sentence saying why ("RTX 4090, driver 560 supports CUDA 12.6 → CUDA 12.6
            build").
        problem: "" when the GPU is supported; else a plain message naming the card and what
            is needed (e.g. the driver version), shown before anything is installed.
    """

    device: RuntimeDevice
    gpu: GpuInfo | None
    reason: str
    problem: str = ""


def choose_lock(machine: MachineInfo) -> LockChoice:
    """Pick the lock for ``machine``'s best GPU (see the tables in this module)."""
    raise NotImplementedError("filled in by GPU detection (issue 12)")
