"""GPU, RAM and disk detection without torch: NVML for NVIDIA, ROCm/sysfs for AMD, the system
profiler for Apple; a CPU-only answer when none is found.

Every source sits behind a small seam so tests feed recorded values:

* NVIDIA: :class:`NvmlApi` (the few NVML calls used); :class:`PynvmlApi` is the real one
  (``nvidia-ml-py``, imported lazily, so a machine without it or without a driver still works).
* AMD/Intel on Linux: the ``/sys/class/drm/card*/device`` files under ``sysfs_root``, plus
  ``rocm-smi --json`` for product names when that tool is installed.
* Windows video controllers, Apple ``sysctl``: through ``run`` (a command runner).

Nothing here raises for a missing tool, library or driver: each becomes one plain sentence in
:attr:`MachineInfo.notes`.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

from .machine import GpuInfo, GpuVendor, MachineInfo

__all__ = ["NvmlApi", "PynvmlApi", "RunCommand", "detect_machine", "free_disk_mb", "gfx_name",
           "ram_mb", "use_pci_bus_order"]

MIB = 1024 * 1024
PCI_VENDORS = {"0x10de": GpuVendor.NVIDIA, "0x1002": GpuVendor.AMD, "0x8086": GpuVendor.INTEL}
COMMAND_TIMEOUT_S = 5.0

# (argv) -> stdout text; raises OSError / subprocess errors when the command cannot run
RunCommand = Callable[[Sequence[str]], str]


class NvmlApi(Protocol):
    """The NVML calls detection needs (indices are NVML's device order)."""

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def device_count(self) -> int: ...
    def driver_version(self) -> str: ...

    def cuda_driver_version(self) -> int:
        """The newest CUDA the driver supports, as NVML encodes it (12060 = 12.6)."""
        ...

    def name(self, index: int) -> str: ...
    def memory_total(self, index: int) -> int:
        """Bytes."""
        ...

    def compute_capability(self, index: int) -> tuple[int, int]: ...


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class PynvmlApi:
    """:class:`NvmlApi` over ``nvidia-ml-py`` (module ``pynvml``), imported on first use."""

    def __init__(self) -> None:
        self._nvml: Any = None

    def init(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise RuntimeError("nvidia-ml-py is not installed, so NVIDIA GPUs cannot be "
                               "read") from exc
        self._nvml = pynvml
        pynvml.nvmlInit()

    def shutdown(self) -> None:
        if self._nvml is not None:
            self._nvml.nvmlShutdown()

    def device_count(self) -> int:
        return int(self._nvml.nvmlDeviceGetCount())

    def driver_version(self) -> str:
        return _text(self._nvml.nvmlSystemGetDriverVersion())

    def cuda_driver_version(self) -> int:
        return int(self._nvml.nvmlSystemGetCudaDriverVersion())

    def _handle(self, index: int) -> Any:
        return self._nvml.nvmlDeviceGetHandleByIndex(index)

    def name(self, index: int) -> str:
        return _text(self._nvml.nvmlDeviceGetName(self._handle(index)))

    def memory_total(self, index: int) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle(index)).total)

    def compute_capability(self, index: int) -> tuple[int, int]:
        major, minor = self._nvml.nvmlDeviceGetCudaComputeCapability(self._handle(index))
        return int(major), int(minor)

    # live values for the resource monitor (core.hardware.monitor.NvmlSampleApi)
    def utilization(self, index: int) -> int:
        return int(self._nvml.nvmlDeviceGetUtilizationRates(self._handle(index)).gpu)

    def memory_used(self, index: int) -> tuple[int, int]:
        info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle(index))
        return int(info.used), int(info.total)

    def temperature(self, index: int) -> int:
        return int(self._nvml.nvmlDeviceGetTemperature(self._handle(index),
                                                       self._nvml.NVML_TEMPERATURE_GPU))

    def power_w(self, index: int) -> float:
        return int(self._nvml.nvmlDeviceGetPowerUsage(self._handle(index))) / 1000.0  # mW

    def clock_event_reasons(self, index: int) -> int:
        # the "clocks event" name since driver 535; older nvidia-ml-py has only "throttle"
        get = getattr(self._nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) \
            or self._nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(get(self._handle(index)))


def _run(argv: Sequence[str]) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True,
                          timeout=COMMAND_TIMEOUT_S).stdout


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _nvml_reason(exc: BaseException) -> str:
    """A plain sentence for why NVML could not start."""
    name = type(exc).__name__
    if name == "NVMLError_LibraryNotFound":
        return "No NVIDIA driver found (the NVML library is not installed)."
    if name == "NVMLError_DriverNotLoaded":
        return "An NVIDIA driver is installed but not loaded (restart, or check the driver)."
    if isinstance(exc, RuntimeError) and "nvidia-ml-py" in str(exc):
        return str(exc) + "."
    return f"NVIDIA driver could not be read ({_why(exc)})."


def _nvidia_gpus(nvml: NvmlApi, notes: list[str]) -> list[GpuInfo]:
    try:
        nvml.init()
    except Exception as exc:  # noqa: BLE001 - no driver / no library is a finding
        notes.append(_nvml_reason(exc))
        return []
    gpus: list[GpuInfo] = []
    try:
        driver = ""
        try:
            driver = nvml.driver_version()
        except Exception as exc:  # noqa: BLE001
            notes.append(f"NVIDIA driver version unreadable ({_why(exc)}).")
        cuda: tuple[int, int] | None = None
        try:
            code = nvml.cuda_driver_version()
            cuda = (code // 1000, (code % 1000) // 10)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"CUDA version of the NVIDIA driver unreadable ({_why(exc)}).")
        try:
            count = nvml.device_count()
        except Exception as exc:  # noqa: BLE001
            notes.append(f"NVIDIA GPUs could not be counted ({_why(exc)}).")
            count = 0
        for index in range(count):
            try:
                name = nvml.name(index)
            except Exception as exc:  # noqa: BLE001
                notes.append(f"NVIDIA GPU {index}: name unreadable ({_why(exc)}).")
                name = f"NVIDIA GPU {index}"
            vram = 0
            try:
                vram = nvml.memory_total(index) // MIB
            except Exception as exc:  # noqa: BLE001
                notes.append(f"{name}: memory unreadable ({_why(exc)}).")
            cc: tuple[int, int] | None = None
            try:
                cc = nvml.compute_capability(index)
            except Exception as exc:  # noqa: BLE001
                notes.append(f"{name}: compute capability unreadable ({_why(exc)}).")
            gpus.append(GpuInfo(GpuVendor.NVIDIA, name, vram_mb=vram, driver_version=driver,
                                compute_capability=cc, cuda_driver_version=cuda, index=index))
    finally:
        try:
            nvml.shutdown()
        except Exception as exc:  # noqa: BLE001
            logger.debug("nvmlShutdown failed: {}", exc)
    return gpus


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _rocm_names(run: RunCommand) -> dict[str, str]:
    """``{"card0": "Radeon RX 7900 XTX", ...}`` from ``rocm-smi``; {} when it is absent."""
    if shutil.which("rocm-smi") is None:
        return {}
    try:
        data = json.loads(run(["rocm-smi", "--showproductname", "--json"]))
    except Exception as exc:  # noqa: BLE001 - an optional tool failing is only logged
        logger.debug("rocm-smi failed: {}", exc)
        return {}
    names: dict[str, str] = {}
    if isinstance(data, dict):
        for card, info in data.items():
            if isinstance(info, dict):
                name = info.get("Card Series") or info.get("Card series") or info.get(
                    "Card model") or ""
                if isinstance(name, str) and name.strip():
                    names[card] = name.strip()
    return names


def gfx_name(target_version: int) -> str:
    """KFD's ``gfx_target_version`` as the GPU target name: 110000 -> "gfx1100",
    90010 -> "gfx90a", 110501 -> "gfx1151" (major, minor, stepping; minor/stepping in hex)."""
    major, rest = divmod(target_version, 10000)
    minor, stepping = divmod(rest, 100)
    return f"gfx{major}{minor:x}{stepping:x}"


def _kfd_targets(sysfs_root: Path) -> dict[str, str]:
    """``{"0000:03:00.0": "gfx1100"}`` from the ROCm kernel driver's topology nodes (each
    names its PCI slot as ``domain`` and ``location_id`` = bus << 8 | device << 3 | function)."""
    out: dict[str, str] = {}
    nodes = sysfs_root / "class" / "kfd" / "kfd" / "topology" / "nodes"
    for props in sorted(nodes.glob("*/properties")):
        values: dict[str, int] = {}
        for line in _read(props).splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                values[key] = int(value)
        target = values.get("gfx_target_version", 0)
        if not target:          # CPU nodes have 0
            continue
        loc = values.get("location_id", 0)
        slot = (f"{values.get('domain', 0):04x}:{loc >> 8:02x}:{(loc >> 3) & 0x1f:02x}."
                f"{loc & 0x7:x}")
        out[slot] = gfx_name(target)
    return out


def _sysfs_gpus(sysfs_root: Path, run: RunCommand, notes: list[str]) -> list[GpuInfo]:
    """AMD, Intel (and driverless NVIDIA) cards from ``<sysfs>/class/drm/card<N>/device``."""
    drm = sysfs_root / "class" / "drm"
    if not drm.is_dir():
        return []
    cards = sorted((p for p in drm.glob("card*") if p.name[4:].isdigit()),
                   key=lambda p: int(p.name[4:]))
    rocm_names: dict[str, str] | None = None
    targets: dict[str, str] | None = None
    seen: set[str] = set()
    gpus: list[GpuInfo] = []
    amd_index = 0
    for card in cards:
        device = card / "device"
        vendor = PCI_VENDORS.get(_read(device / "vendor").lower())
        if vendor is None:
            continue
        try:
            key = str(device.resolve())
        except OSError:
            key = str(device)
        if key in seen:
            continue
        seen.add(key)
        pci_id = _read(device / "device")
        vram_text = _read(device / "mem_info_vram_total")
        vram = int(vram_text) // MIB if vram_text.isdigit() else 0
        if vendor is GpuVendor.AMD:
            if rocm_names is None:
                rocm_names = _rocm_names(run)
            name = (rocm_names.get(card.name) or _read(device / "product_name")
                    or f"AMD GPU (PCI device {pci_id or 'unknown'})")
            if targets is None:
                targets = _kfd_targets(sysfs_root)
            gpus.append(GpuInfo(GpuVendor.AMD, name, vram_mb=vram,
                                driver_version=_read(sysfs_root / "module" / "amdgpu" / "version"),
                                index=amd_index, arch=targets.get(Path(key).name, "")))
            amd_index += 1
        elif vendor is GpuVendor.INTEL:
            gpus.append(GpuInfo(GpuVendor.INTEL, f"Intel GPU (PCI device {pci_id or 'unknown'})",
                                vram_mb=vram))
        else:
            gpus.append(GpuInfo(GpuVendor.NVIDIA, f"NVIDIA GPU (PCI device {pci_id or 'unknown'})"))
            notes.append(f"An NVIDIA GPU (PCI device {pci_id or 'unknown'}) is present but its "
                         "driver could not be read.")
    return gpus


def _windows_gpus(run: RunCommand, notes: list[str]) -> list[GpuInfo]:
    """AMD and Intel video controllers on Windows (NVIDIA ones come from NVML)."""
    script = ("Get-CimInstance Win32_VideoController | Select-Object Name,AdapterCompatibility,"
              "AdapterRAM,DriverVersion | ConvertTo-Json")
    try:
        data = json.loads(run(["powershell", "-NoProfile", "-Command", script]) or "[]")
    except Exception as exc:  # noqa: BLE001
        notes.append(f"Video controllers could not be listed ({_why(exc)}).")
        return []
    gpus: list[GpuInfo] = []
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict):
            continue
        maker = str(item.get("AdapterCompatibility") or "").lower()
        name = str(item.get("Name") or "").strip()
        vendor = (GpuVendor.AMD if "advanced micro devices" in maker or "amd" in maker
                  else GpuVendor.INTEL if "intel" in maker else None)
        if vendor is None or not name:
            continue
        ram = item.get("AdapterRAM")
        # AdapterRAM is a 32-bit field: it reads at most 4 GB, so larger cards show 4095 MiB
        vram = int(ram) // MIB if isinstance(ram, int) and ram > 0 else 0
        gpus.append(GpuInfo(vendor, name, vram_mb=vram,
                            driver_version=str(item.get("DriverVersion") or "")))
    return gpus


def _apple_gpu(run: RunCommand, ram: int, notes: list[str]) -> GpuInfo:
    try:
        chip = run(["sysctl", "-n", "machdep.cpu.brand_string"]).strip()
    except Exception as exc:  # noqa: BLE001
        notes.append(f"Apple chip name unreadable ({_why(exc)}).")
        chip = ""
    return GpuInfo(GpuVendor.APPLE, f"{chip or 'Apple silicon'} GPU", vram_mb=ram)


class _MemoryStatus(ctypes.Structure):
    _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]


def ram_mb(system: str, run: RunCommand = _run) -> int:
    """Installed memory in MiB; 0 when it cannot be read."""
    try:
        if system == "Darwin":
            return int(run(["sysctl", "-n", "hw.memsize"]).strip()) // MIB
        if system == "Windows":
            status = _MemoryStatus()
            status.dwLength = ctypes.sizeof(_MemoryStatus)
            windll = getattr(ctypes, "windll")  # noqa: B009 - exists on Windows only
            if windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
                return int(status.ullTotalPhys) // MIB
            return 0
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB
    except Exception as exc:  # noqa: BLE001
        logger.debug("RAM unreadable: {}", exc)
        return 0


def free_disk_mb(folder: Path) -> int | None:
    """Free space (MiB) on the disk that holds ``folder`` or its nearest existing parent."""
    path = Path(folder).expanduser().absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        return shutil.disk_usage(path).free // MIB
    except OSError as exc:
        logger.debug("free disk unreadable at {}: {}", path, exc)
        return None


def detect_machine(data_dir: Path, *, nvml: NvmlApi | None = None,
                   sysfs_root: Path = Path("/sys"), run: RunCommand = _run,
                   system: str | None = None, machine: str | None = None) -> MachineInfo:
    """Read this computer's GPUs, RAM, CPUs and the free disk under ``data_dir``. Blocks for up
    to a second or two (NVML init, a subprocess on some systems): call it off the UI thread.

    The keyword arguments are seams for tests: ``nvml`` (default :class:`PynvmlApi`),
    ``sysfs_root`` (Linux ``/sys``), ``run`` (runs rocm-smi / sysctl / powershell),
    ``system`` / ``machine`` (default :mod:`platform`'s answers)."""
    system = system or platform.system()
    machine = machine or platform.machine()
    notes: list[str] = []
    ram = ram_mb(system, run)
    if not ram:
        notes.append("Installed memory (RAM) could not be read.")
    gpus: list[GpuInfo] = []
    if system == "Darwin":
        if machine.lower() in ("arm64", "aarch64"):
            gpus.append(_apple_gpu(run, ram, notes))
        else:
            notes.append("This Mac has an Intel processor: PyTorch supports GPU training on "
                         "Macs with Apple silicon only.")
    else:
        nvml_notes: list[str] = []
        gpus.extend(_nvidia_gpus(nvml or PynvmlApi(), nvml_notes))
        others: list[GpuInfo] = []
        if system == "Linux":
            others = _sysfs_gpus(sysfs_root, run, notes)
            if gpus:   # NVML saw the NVIDIA cards; sysfs adds only the other vendors
                others = [g for g in others if g.vendor is not GpuVendor.NVIDIA]
                notes[:] = [n for n in notes if "is present but its driver" not in n]
        elif system == "Windows":
            others = _windows_gpus(run, notes)
        # "no NVIDIA driver" is noise on a machine whose GPU is an AMD/Intel one
        no_library = any(n.startswith("No NVIDIA driver found") for n in nvml_notes)
        if not (no_library and others and all(g.vendor is not GpuVendor.NVIDIA for g in others)):
            notes[:0] = nvml_notes
        gpus.extend(others)
    if not gpus:
        notes.append("No GPU found: training would run on the CPU.")
    gpus.sort(key=lambda g: (g.vendor is GpuVendor.INTEL, -g.vram_mb))
    os_version = platform.mac_ver()[0] if system == "Darwin" else ""
    info = MachineInfo(gpus=tuple(gpus), ram_mb=ram, cpu_count=os.cpu_count() or 1,
                       os_name=system, arch=machine, free_disk_mb=free_disk_mb(data_dir),
                       notes=tuple(notes), os_version=os_version)
    logger.info("Machine: {} {}, {} MiB RAM, GPUs: {}{}", system, machine, ram,
                ", ".join(f"{g.name} ({g.vram_mb} MiB)" for g in gpus) or "none",
                f"; notes: {' '.join(notes)}" if notes else "")
    return info


def use_pci_bus_order(environ: MutableMapping[str, str]) -> bool:
    """Make CUDA number the GPUs as NVML (and so this app's GPU list) does, for every child
    that inherits ``environ``: ``CUDA_DEVICE_ORDER=PCI_BUS_ID``. Without it CUDA numbers cards
    fastest first (CUDA Programming Guide, "CUDA Environment Variables"), so on a machine with
    two different cards "GPU 0" in our list and ``CUDA_VISIBLE_DEVICES=0`` (a managed ComfyUI
    pinned to a card, a trainer's ``gpu_ids``) could be different cards. A value the user set
    is kept. Returns whether the order is now the PCI bus order."""
    environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
