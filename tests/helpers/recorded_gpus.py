"""Recorded NVML answers for GPU detection tests (what ``nvidia-smi -q`` / NVML report for
these cards), and a fake :class:`~isengard_desktop.core.hardware.gpu.NvmlApi` that replays them.

Memory totals are NVML's ``memory.total`` in bytes (a "24 GB" RTX 4090 reports 24564 MiB);
CUDA driver versions are NVML's encoding (``nvmlSystemGetCudaDriverVersion``: 12060 = 12.6).
Errors are real ``pynvml`` exceptions, as the real library raises them. The live values of
the resource monitor come from :class:`RecordedLive` per card, psutil's from
:class:`RecordedSystem` (``core.hardware.monitor.SystemApi``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pynvml

MIB = 1024 * 1024
GB = 1024 * MIB


@dataclass(frozen=True)
class RecordedCard:
    name: str
    memory_total: int          # bytes
    compute_capability: tuple[int, int]


RTX_4090 = RecordedCard("NVIDIA GeForce RTX 4090", 24564 * MIB, (8, 9))
RTX_3060_12GB = RecordedCard("NVIDIA GeForce RTX 3060", 12288 * MIB, (8, 6))
GTX_1080 = RecordedCard("NVIDIA GeForce GTX 1080", 8192 * MIB, (6, 1))
RTX_5090 = RecordedCard("NVIDIA GeForce RTX 5090", 32607 * MIB, (12, 0))
TESLA_V100 = RecordedCard("Tesla V100-SXM2-16GB", 16384 * MIB, (7, 0))
GTX_780 = RecordedCard("NVIDIA GeForce GTX 780", 3072 * MIB, (3, 5))

# (driver version string, NVML CUDA driver version)
DRIVER_590 = ("590.44.01", 13010)     # CUDA 13.1
DRIVER_580 = ("580.95.05", 13000)     # CUDA 13.0: the last branch that still drives Pascal
DRIVER_570 = ("570.133.07", 12080)    # CUDA 12.8: first branch with RTX 50-series
DRIVER_560 = ("560.35.03", 12060)     # CUDA 12.6
DRIVER_535 = ("535.183.01", 12020)    # CUDA 12.2
DRIVER_520 = ("520.61.05", 11080)     # CUDA 11.8
DRIVER_470 = ("470.256.02", 11040)    # CUDA 11.4


@dataclass(frozen=True)
class RecordedLive:
    """One card's live NVML answers at one moment (``nvidia-smi -q -d
    UTILIZATION,MEMORY,TEMPERATURE,POWER,PERFORMANCE``): utilisation %, VRAM used bytes,
    °C, milliwatts (``nvmlDeviceGetPowerUsage``), clock event reasons bit mask."""

    util: int = 0
    vram_used: int = 0
    temp_c: int = 40
    power_mw: int = 30_000
    reasons: int = 0


# clock event reason bits as NVML reports them (nvml.h nvmlClocksEventReason*)
REASON_GPU_IDLE = 0x1
REASON_SW_POWER_CAP = 0x4
REASON_SW_THERMAL = 0x20
REASON_HW_THERMAL = 0x40

# an RTX 4090 training: 98 % busy, 20.1 of 24 GB, 71 °C, 402 W, at its power limit
TRAINING_4090 = RecordedLive(98, 20580 * MIB, 71, 402_310, REASON_SW_POWER_CAP)
IDLE_4090 = RecordedLive(0, 512 * MIB, 38, 21_050, REASON_GPU_IDLE)


@dataclass
class RecordedNvml:
    """Replays one machine's NVML answers. ``init_error`` / ``errors`` (call name -> exception)
    make calls fail the way the real library does; ``calls`` records what was asked."""

    cards: list[RecordedCard] = field(default_factory=list)
    live: list[RecordedLive] = field(default_factory=list)   # per card; missing: idle
    driver: tuple[str, int] = DRIVER_580
    init_error: Exception | None = None
    errors: dict[str, Exception] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    initialised: bool = False

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name != "init" and name != "shutdown" and not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if name in self.errors:
            raise self.errors[name]

    def init(self) -> None:
        self._call("init")
        if self.init_error is not None:
            raise self.init_error
        self.initialised = True

    def shutdown(self) -> None:
        self._call("shutdown")
        self.initialised = False

    def device_count(self) -> int:
        self._call("device_count")
        return len(self.cards)

    def driver_version(self) -> str:
        self._call("driver_version")
        return self.driver[0]

    def cuda_driver_version(self) -> int:
        self._call("cuda_driver_version")
        return self.driver[1]

    def name(self, index: int) -> str:
        self._call("name")
        return self.cards[index].name

    def memory_total(self, index: int) -> int:
        self._call("memory_total")
        return self.cards[index].memory_total

    def compute_capability(self, index: int) -> tuple[int, int]:
        self._call("compute_capability")
        return self.cards[index].compute_capability

    # the live calls of core.hardware.monitor.NvmlSampleApi
    def _live(self, index: int) -> RecordedLive:
        return self.live[index] if index < len(self.live) else RecordedLive()

    def utilization(self, index: int) -> int:
        self._call("utilization")
        return self._live(index).util

    def memory_used(self, index: int) -> tuple[int, int]:
        self._call("memory_used")
        return self._live(index).vram_used, self.cards[index].memory_total

    def temperature(self, index: int) -> int:
        self._call("temperature")
        return self._live(index).temp_c

    def power_w(self, index: int) -> float:
        self._call("power_w")
        return self._live(index).power_mw / 1000.0

    def clock_event_reasons(self, index: int) -> int:
        self._call("clock_event_reasons")
        return self._live(index).reasons


def nvml_error(code: int) -> Exception:
    """The exception pynvml raises for ``code`` (e.g. ``pynvml.NVML_ERROR_LIBRARY_NOT_FOUND``)."""
    return pynvml.NVMLError(code)


@dataclass
class RecordedSystem:
    """psutil's answers for one moment (bytes, percent); ``disk_asked`` records the folders."""

    cpu: float = 37.5
    ram: tuple[int, int] = (11 * GB, 32 * GB)
    disk_space: tuple[int, int] = (120 * GB, 500 * GB)
    disk_asked: list[Path] = field(default_factory=list)

    def cpu_percent(self) -> float:
        return self.cpu

    def memory(self) -> tuple[int, int]:
        return self.ram

    def disk(self, folder: Path) -> tuple[int, int]:
        self.disk_asked.append(folder)
        return self.disk_space
