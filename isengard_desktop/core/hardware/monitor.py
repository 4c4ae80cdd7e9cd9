"""Live resource samples for the Training tab's monitor: GPU utilisation, VRAM, temperature,
power and thermal throttling (NVML), CPU, RAM and free disk of the data folder (psutil), and
the alerts they raise. Qt-free; every call here may block (NVML can), so the GUI process runs
:class:`ResourceSampler` on its own worker thread (``services.resource_monitor``), never the
UI thread and never the trainer.

Seams for tests: ``nvml`` (:class:`NvmlSampleApi`, the NVML calls of detection plus the live
ones; :class:`~.gpu.PynvmlApi` is the real one) and ``system`` (:class:`SystemApi`;
:class:`PsutilApi` is the real one).

* :func:`resource_alerts`: free disk below the next checkpoint, VRAM above 97 %, a GPU
  slowing down because it is too hot.
* :func:`estimate_checkpoint_bytes`: the size of a job's newest checkpoint (or its LoRA).
* :func:`sample_record`: the compact JSON line a running job's ``resources.jsonl`` gets.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

from .gpu import MIB, NvmlApi, PynvmlApi, _nvml_reason, _why

__all__ = ["THERMAL_REASONS", "VRAM_ALERT_FRACTION", "GpuSample", "NvmlSampleApi", "PsutilApi",
           "ResourceAlert", "ResourceSample", "ResourceSampler", "SystemApi",
           "cuda_numbers_are_nvml", "estimate_checkpoint_bytes", "nearest_existing", "resource_alerts", "sample_record"]

VRAM_ALERT_FRACTION = 0.97
# NVML clock event (throttle) reason bits that mean "too hot": software thermal slowdown
# (nvmlClocksEventReasonSwThermalSlowdown 0x20) and hardware thermal slowdown (…Hw… 0x40)
THERMAL_REASONS = 0x20 | 0x40
DISK_MARGIN = 1.10          # the next checkpoint needs its size plus 10 % (temp file, manifest)
GB = 1024 ** 3


class NvmlSampleApi(NvmlApi, Protocol):
    """Detection's NVML calls plus the ones a live sample needs (indices: NVML order)."""

    def utilization(self, index: int) -> int:
        """GPU busy percentage over the last sample period."""
        ...

    def memory_used(self, index: int) -> tuple[int, int]:
        """(used, total) bytes of VRAM."""
        ...

    def temperature(self, index: int) -> int:
        """Core temperature, °C."""
        ...

    def power_w(self, index: int) -> float: ...

    def clock_event_reasons(self, index: int) -> int:
        """NVML's bit mask of why clocks are lowered (``nvmlClocksEventReason*``)."""
        ...


class SystemApi(Protocol):
    """The psutil calls a sample needs."""

    def cpu_percent(self) -> float:
        """All CPUs' busy percentage since the previous call."""
        ...

    def memory(self) -> tuple[int, int]:
        """(used, total) bytes of RAM."""
        ...

    def disk(self, folder: Path) -> tuple[int, int]:
        """(free, total) bytes of the disk holding ``folder``."""
        ...


def nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent (a data folder not made yet still has a disk)."""
    path = Path(folder).expanduser().absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


class PsutilApi:
    """:class:`SystemApi` over psutil."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        psutil.cpu_percent(interval=None)   # the first call only starts the count

    def cpu_percent(self) -> float:
        return float(self._psutil.cpu_percent(interval=None))

    def memory(self) -> tuple[int, int]:
        vm = self._psutil.virtual_memory()
        return int(vm.total - vm.available), int(vm.total)

    def disk(self, folder: Path) -> tuple[int, int]:
        usage = self._psutil.disk_usage(str(nearest_existing(folder)))
        return int(usage.free), int(usage.total)


@dataclass(frozen=True)
class GpuSample:
    """One NVIDIA GPU at one moment; a value NVML could not give is None."""

    index: int
    name: str
    util_pct: float | None = None
    vram_used: int | None = None      # bytes
    vram_total: int | None = None     # bytes
    temp_c: float | None = None
    power_w: float | None = None
    thermal_throttle: bool = False

    @property
    def vram_fraction(self) -> float | None:
        if self.vram_used is None or not self.vram_total:
            return None
        return self.vram_used / self.vram_total


@dataclass(frozen=True)
class ResourceSample:
    """The machine at time ``t`` (epoch seconds). ``gpu_note`` says why there are no GPU
    values ("" when NVML answered)."""

    t: float
    cpu_pct: float | None
    ram_used: int | None
    ram_total: int | None
    disk_free: int | None
    disk_total: int | None
    gpus: tuple[GpuSample, ...] = ()
    gpu_note: str = ""

    @property
    def ram_fraction(self) -> float | None:
        if self.ram_used is None or not self.ram_total:
            return None
        return self.ram_used / self.ram_total


@dataclass(frozen=True)
class ResourceAlert:
    """A warning the job panel shows: ``kind`` is "disk", "vram" or "thermal"; ``gpu`` is the
    NVML index of the GPU it is about (None for the disk)."""

    kind: str
    message: str
    gpu: int | None = None

    @property
    def key(self) -> tuple[str, int | None]:
        """What the alert is about (its message changes with the numbers; this does not)."""
        return self.kind, self.gpu


def _gb(value: float) -> str:
    gb = value / GB
    return f"{gb:.2f} GB" if gb < 10 else f"{gb:.1f} GB"


def resource_alerts(sample: ResourceSample,
                    next_checkpoint_bytes: int | None = None) -> tuple[ResourceAlert, ...]:
    """The alerts ``sample`` raises; ``next_checkpoint_bytes`` (the running job's estimate,
    None when there is no job or nothing to estimate from) enables the disk alert."""
    alerts: list[ResourceAlert] = []
    if (next_checkpoint_bytes and sample.disk_free is not None
            and sample.disk_free < next_checkpoint_bytes * DISK_MARGIN):
        alerts.append(ResourceAlert(
            "disk", f"Free disk ({_gb(sample.disk_free)} on the data folder's drive) will not "
                    f"hold the next checkpoint (about {_gb(next_checkpoint_bytes)}): free some "
                    "space now, or saving it will fail."))
    for gpu in sample.gpus:
        fraction = gpu.vram_fraction
        if fraction is not None and fraction > VRAM_ALERT_FRACTION:
            alerts.append(ResourceAlert(
                "vram", f"GPU {gpu.index} ({gpu.name}) VRAM is {fraction * 100:.1f} % full: an "
                        "out-of-memory error is close. Close other programs that use the GPU, "
                        "or lower the batch size or resolution for the next run.", gpu.index))
        if gpu.thermal_throttle:
            temp = f" at {gpu.temp_c:.0f} °C" if gpu.temp_c is not None else ""
            alerts.append(ResourceAlert(
                "thermal", f"GPU {gpu.index} ({gpu.name}) is slowing down because it is too "
                           f"hot{temp} (thermal throttling): check its fans and the airflow "
                           "around the computer.", gpu.index))
    return tuple(alerts)


def cuda_numbers_are_nvml(names: Sequence[str], env: Mapping[str, str]) -> bool:
    """Whether a job's GPU numbers (CUDA's, which the launchers and torch use) name the same
    cards as NVML's indices. NVML numbers cards by PCI bus; CUDA numbers them fastest first
    unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is set (CUDA Programming Guide, "CUDA Environment
    Variables"). They agree when that variable is set in ``env`` (the trainer inherits the
    app's environment, where the app's entry sets it unless the user chose another order:
    ``core/hardware/gpu.py`` ``use_pci_bus_order``), and in practice when every card is the same model, so that none is
    faster (the usual multi-GPU machine; not checked on hardware here — matching CUDA and
    NVML UUIDs would be exact, but needs the trainer to report them). With mixed cards and no
    variable they may not: the monitor then treats the job's GPUs as unknown (charts and
    records every GPU) rather than guess."""
    if env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return True
    return len(set(names)) <= 1


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            continue
    return total


def estimate_checkpoint_bytes(job_dir: Path) -> int | None:
    """What the job's next checkpoint will take on disk: the size of its newest
    ``checkpoints/checkpoint-<step>`` folder, else its largest ``.safetensors`` file (a LoRA an
    external trainer saved under ``output/``); None when it has saved nothing yet."""
    root = Path(job_dir)
    folders = []
    for path in (root / "checkpoints").glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and path.is_dir():
            folders.append((int(step), path))
    for _, folder in sorted(folders, reverse=True):
        size = _folder_bytes(folder)
        if size:
            return size
    sizes = []
    for path in root.rglob("*.safetensors"):
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            continue
    return max(sizes) if sizes else None


def _mb(value: int | None) -> int | None:
    return None if value is None else value // MIB


def sample_record(sample: ResourceSample,
                  alerts: tuple[ResourceAlert, ...] = ()) -> dict[str, Any]:
    """The compact form a job's ``resources.jsonl`` keeps (sizes in MiB)."""
    record: dict[str, Any] = {
        "v": 1, "t": round(sample.t, 2),
        "cpu": None if sample.cpu_pct is None else round(sample.cpu_pct, 1),
        "ram_mb": [_mb(sample.ram_used), _mb(sample.ram_total)],
        "disk_free_mb": _mb(sample.disk_free),
        "gpus": [{"i": g.index, "util": g.util_pct,
                  "vram_mb": [_mb(g.vram_used), _mb(g.vram_total)],
                  "temp": g.temp_c, "w": None if g.power_w is None else round(g.power_w, 1),
                  "thermal": g.thermal_throttle} for g in sample.gpus],
    }
    if alerts:
        record["alerts"] = [a.kind for a in alerts]
    return record


class ResourceSampler:
    """Takes :class:`ResourceSample` s. NVML starts on the first :meth:`sample` (on the calling
    thread) and stays open until :meth:`close`; when it cannot start, samples carry no GPUs
    and say why in ``gpu_note``. Not thread-safe: one thread calls it."""

    def __init__(self, data_dir: Path, *, nvml: NvmlSampleApi | None = None,
                 system: SystemApi | None = None, clock: Any = time.time) -> None:
        self.data_dir = Path(data_dir)
        self._nvml: NvmlSampleApi = nvml if nvml is not None else PynvmlApi()
        self._system = system
        self._clock = clock
        self._started = False
        self._names: list[str] = []
        self._note = ""
        self._nvml_open = False
        self._logged: set[str] = set()

    def _start(self) -> None:
        self._started = True
        if self._system is None:
            self._system = PsutilApi()
        try:
            self._nvml.init()
        except Exception as exc:  # noqa: BLE001 - no driver / no library: CPU values only
            self._note = _nvml_reason(exc)
            return
        self._nvml_open = True
        try:
            count = self._nvml.device_count()
        except Exception as exc:  # noqa: BLE001
            self._note = f"NVIDIA GPUs could not be counted ({_why(exc)})."
            count = 0
        for index in range(count):
            try:
                self._names.append(self._nvml.name(index))
            except Exception:  # noqa: BLE001
                self._names.append(f"NVIDIA GPU {index}")
        if not self._names and not self._note:
            self._note = "No NVIDIA GPU found."

    def _value(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - one unreadable value is not fatal
            if what not in self._logged:       # once: it would repeat every second
                self._logged.add(what)
                logger.debug("resource monitor: {} unreadable: {}", what, _why(exc))
            return None

    def _gpu(self, index: int) -> GpuSample:
        nvml = self._nvml
        util = self._value("GPU utilisation", nvml.utilization, index)
        memory = self._value("VRAM", nvml.memory_used, index)
        temp = self._value("GPU temperature", nvml.temperature, index)
        power = self._value("GPU power", nvml.power_w, index)
        reasons = self._value("GPU clock event reasons", nvml.clock_event_reasons, index)
        return GpuSample(index, self._names[index],
                         util_pct=None if util is None else float(util),
                         vram_used=None if memory is None else int(memory[0]),
                         vram_total=None if memory is None else int(memory[1]),
                         temp_c=None if temp is None else float(temp),
                         power_w=None if power is None else float(power),
                         thermal_throttle=bool(reasons is not None
                                               and int(reasons) & THERMAL_REASONS))

    def sample(self) -> ResourceSample:
        """The machine now (blocks for NVML's and psutil's calls)."""
        if not self._started:
            self._start()
        system = self._system
        assert system is not None
        cpu = self._value("CPU", system.cpu_percent)
        ram = self._value("RAM", system.memory)
        disk = self._value("free disk", system.disk, self.data_dir)
        gpus = tuple(self._gpu(i) for i in range(len(self._names)))
        return ResourceSample(
            t=float(self._clock()), cpu_pct=cpu,
            ram_used=None if ram is None else ram[0], ram_total=None if ram is None else ram[1],
            disk_free=None if disk is None else disk[0],
            disk_total=None if disk is None else disk[1], gpus=gpus, gpu_note=self._note)

    def close(self) -> None:
        """Shut NVML down (when it started); the next :meth:`sample` starts it again."""
        if self._nvml_open:
            self._nvml_open = False
            try:
                self._nvml.shutdown()
            except Exception as exc:  # noqa: BLE001
                logger.debug("nvmlShutdown failed: {}", exc)
        self._started = False
        self._names = []
        self._note = ""
