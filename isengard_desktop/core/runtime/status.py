"""Names for the trainer runtime's devices, states and install phases."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = ["InstallPhase", "RuntimeDevice", "RuntimeState", "RuntimeStatus"]


class RuntimeDevice(StrEnum):
    """Which lock a runtime is made from (the lock files are ``resources/runtime/<value>.txt``)."""

    CUDA13 = "cu130"      # current NVIDIA cards, recent drivers (also RTX 50-series)
    CUDA126 = "cu126"     # Pascal/Maxwell cards, or drivers too old for CUDA 13
    ROCM = "rocm"         # AMD on Linux
    MPS = "mps"           # Apple silicon (PyPI's macOS build)
    CPU = "cpu"


class RuntimeState(StrEnum):
    MISSING = "missing"          # no runtime folder for this app version and device
    INSTALLING = "installing"    # an install is running now (this process)
    READY = "ready"              # made, verified
    INCOMPLETE = "incomplete"    # an install was cut short (the marker is still there)
    BROKEN = "broken"            # made, but verify failed (``problem`` says what)
    OUTDATED = "outdated"        # made for another app version or lock; a new one is needed


class InstallPhase(StrEnum):
    PREPARING = "preparing"      # checking the payload / creating the venv
    DOWNLOADING = "downloading"  # MB, MB/s, ETA
    INSTALLING = "installing"    # package k of n
    VERIFYING = "verifying"      # the runtime's own probe


@dataclass(frozen=True)
class RuntimeStatus:
    """Where the trainer runtime stands.

    Attributes:
        state: see :class:`RuntimeState`.
        device: the lock it is (or would be) made from.
        folder: ``<data>/runtime/<version>-<device>``.
        python: its interpreter when ``state`` is READY, else None.
        problem: "" when ready; else one plain sentence saying what is wrong or missing.
    """

    state: RuntimeState
    device: RuntimeDevice
    folder: Path
    python: Path | None = None
    problem: str = ""
