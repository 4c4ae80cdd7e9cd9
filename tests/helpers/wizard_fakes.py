"""Stand-ins for the wizard's inputs: a runtime service with the real one's signals and
methods (install/cancel/status), machine facts for a few computers, and a settings store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from isengard_desktop.core.hardware.locks import LockChoice
from isengard_desktop.core.hardware.machine import GpuInfo, GpuVendor, MachineInfo
from isengard_desktop.core.runtime.python import PythonSource, TrainerPython
from isengard_desktop.core.runtime.status import (InstallPhase, RuntimeDevice, RuntimeState,
                                                  RuntimeStatus)
from isengard_desktop.core.settings import Settings
from isengard_desktop.core.types import Progress

RTX_3060 = GpuInfo(GpuVendor.NVIDIA, "NVIDIA GeForce RTX 3060", vram_mb=12288,
                   driver_version="560.35.03", compute_capability=(8, 6),
                   cuda_driver_version=(12, 6))
GTX_1060 = GpuInfo(GpuVendor.NVIDIA, "NVIDIA GeForce GTX 1060 6GB", vram_mb=6144,
                   driver_version="470.42.01", compute_capability=(6, 1),
                   cuda_driver_version=(11, 4))


def machine(*gpus: GpuInfo, ram_mb: int = 32768, free_disk_mb: int | None = 400_000
            ) -> MachineInfo:
    return MachineInfo(gpus=tuple(gpus), ram_mb=ram_mb, cpu_count=16, os_name="Linux",
                       arch="x86_64", free_disk_mb=free_disk_mb)


def lock_for(info: MachineInfo, problem: str = "") -> LockChoice:
    gpu = info.best_gpu
    if gpu is None:
        return LockChoice(RuntimeDevice.CPU, None, "No GPU found → CPU build.")
    return LockChoice(RuntimeDevice.CUDA126, gpu, f"The {gpu.name} is a Pascal card: the CUDA "
                      "12.6 build still has kernels for it.", problem)


class SettingsStore:
    """What ``SettingsService`` gives the wizard: the current settings and ``update``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.saved: list[Settings] = []

    def get(self) -> Settings:
        return self.settings

    def update(self, settings: Settings) -> None:
        self.settings = dataclasses.replace(settings)
        self.saved.append(self.settings)


class FakeRuntime(QObject):
    """Duck-typed ``RuntimeService``. Each ``install`` plays the next outcome of ``outcomes``:
    "ready" (download + install progress, then READY), "fail" (progress, then BROKEN with a
    problem) or "hold" (progress, then waits for ``cancel``)."""

    status_changed = Signal(object)
    progress = Signal(object)
    finished = Signal(object)

    def __init__(self, root: Path, state: RuntimeState = RuntimeState.MISSING,
                 outcomes: list[str] | None = None) -> None:
        super().__init__()
        self.root = root
        self.state = state
        self.outcomes = list(outcomes or ["ready"])
        self.installs: list[tuple[RuntimeDevice, Path | None]] = []
        self.cancelled = 0
        self.device = RuntimeDevice.CPU

    def _status(self, problem: str = "") -> RuntimeStatus:
        ready = self.state == RuntimeState.READY
        folder = self.root / f"0.1-{self.device}"
        return RuntimeStatus(self.state, self.device, folder,
                             folder / "bin" / "python" if ready else None, problem)

    def status(self, device: RuntimeDevice | None = None) -> RuntimeStatus:
        if device is not None:
            self.device = device
        return self._status()

    def install(self, device: RuntimeDevice, offline_folder: Path | None = None) -> None:
        self.installs.append((device, offline_folder))
        self.device = device
        self.state = RuntimeState.INSTALLING
        outcome = self.outcomes.pop(0) if self.outcomes else "ready"
        steps = [Progress(InstallPhase.DOWNLOADING.value, 312, 2400,
                          "312 of 2,400 MB · 24 MB/s · about 1 min left"),
                 Progress(InstallPhase.INSTALLING.value, 12, 40, "package 12 of 40")]
        for n, step in enumerate(steps):
            QTimer.singleShot(10 * (n + 1), lambda s=step: self.progress.emit(s))
        if outcome == "ready":
            QTimer.singleShot(50, lambda: self._end(RuntimeState.READY))
        elif outcome == "fail":
            QTimer.singleShot(50, lambda: self._end(
                RuntimeState.INCOMPLETE, "The download of torch-2.13.0 stopped: connection "
                                         "reset. Retry continues where it stopped."))

    def cancel(self) -> None:
        self.cancelled += 1
        QTimer.singleShot(0, lambda: self._end(RuntimeState.INCOMPLETE,
                                               "The install was cancelled."))

    def _end(self, state: RuntimeState, problem: str = "") -> None:
        self.state = state
        status = self._status(problem)
        self.status_changed.emit(status)
        self.finished.emit(status)


def trainer_python_none() -> TrainerPython:
    return TrainerPython(None, PythonSource.NONE, "no trainer runtime is installed")


def trainer_python_checkout() -> TrainerPython:
    return TrainerPython(Path("/src/isengard/.venv/bin/python"), PythonSource.CHECKOUT)
