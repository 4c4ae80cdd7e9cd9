"""Which trainer-runtime lock fits this machine (and a plain message when none does).

The tables below are what PyTorch 2.13.0's builds support. Sources (checked 2026-12):

* PyPI's ``torch==2.13.0`` Linux x86_64 wheel *is* the CUDA 13.0 build: its ``torch/version.py``
  reads ``__version__ = '2.13.0+cu130'``, ``cuda = '13.0'``, and its metadata requires
  ``cuda-toolkit[...]==13.0.3`` and ``nvidia-cudnn-cu13`` (read from the wheel on PyPI; the
  lock ``resources/runtime/cu130.txt`` resolves the same). PyPI's Windows wheel is
  ``2.13.0+cpu``; macOS has only ``macosx_14_0_arm64``.
* Architectures per build, PyTorch's RELEASE.md "PyTorch CUDA Support Matrix" (stated there to
  hold for 2.12, 2.13 and 2.14: pytorch/pytorch PR #197555, table from PR #182849):
  CUDA 12.6.3: Maxwell 5.0, Pascal 6.0, Volta 7.0, Turing 7.5, Ampere 8.0/8.6, Hopper 9.0;
  CUDA 13.0.2: Turing 7.5, Ampere 8.0/8.6, Hopper 9.0, Blackwell 10.0 and 12.0 (+PTX on
  Linux only). CUDA 13 removed Maxwell, Pascal and Volta (NVIDIA CUDA 13.0 release notes,
  "Deprecated Architectures"; PyTorch issue #157517, #172352), so those cards need cu126, and
  an RTX 50-series card (compute capability 12.0) has kernels only in the 13.x builds.
* Driver floors, NVIDIA "CUDA Minor Version Compatibility" table
  (docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html): CUDA 13.x
  runs on drivers ``>= 580``, CUDA 12.x on ``>= 525``. NVML reports the newest CUDA a driver
  supports (``nvmlSystemGetCudaDriverVersion``); we compare that, and fall back to the driver's
  major version when it is unknown.
* ROCm: PyTorch 2.13 publishes ROCm 7.2 wheels for Linux only (pytorch.org "Get started"
  selector for 2.13.0); no ROCm build for Windows.

Cards binary-compatible within a major architecture (8.9 runs 8.6 kernels, 6.1 runs 6.0, 5.2
runs 5.0), so a build covers a card when it has kernels for the card's major version at or
below its minor. Compute capability 12.x beyond 12.0 runs the CUDA 13 build's 12.0 PTX.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..runtime.status import RuntimeDevice
from .machine import GpuInfo, GpuVendor, MachineInfo

__all__ = ["CUDA_BUILDS", "ROCM_TARGETS", "CudaBuild", "LockChoice", "choose_lock",
           "device_label", "gpu_summary", "resolve_device"]


@dataclass(frozen=True)
class CudaBuild:
    """One CUDA build of torch 2.13.0 and what it needs.

    Attributes:
        device: its lock.
        cuda: the CUDA version it was built with.
        min_cc: the oldest compute capability it has kernels for.
        max_major: the newest architecture (compute capability major) it has kernels for;
            newer minors of that major run them.
        min_driver_cuda: the CUDA version the driver must support (minor-version
            compatibility: any driver of that major family).
        min_driver: the driver branch that gives it ("580").
    """

    device: RuntimeDevice
    cuda: tuple[int, int]
    min_cc: tuple[int, int]
    max_major: int
    min_driver_cuda: tuple[int, int]
    min_driver: int


# Best first: the newest build a card and its driver can run is chosen.
CUDA_BUILDS: tuple[CudaBuild, ...] = (
    CudaBuild(RuntimeDevice.CUDA13, cuda=(13, 0), min_cc=(7, 5), max_major=12,
              min_driver_cuda=(13, 0), min_driver=580),
    CudaBuild(RuntimeDevice.CUDA126, cuda=(12, 6), min_cc=(5, 0), max_major=9,
              min_driver_cuda=(12, 0), min_driver=525),
)

_LABELS = {
    RuntimeDevice.CUDA13: "NVIDIA, CUDA 13.0",
    RuntimeDevice.CUDA126: "NVIDIA, CUDA 12.6 (older cards and drivers)",
    RuntimeDevice.ROCM: "AMD, ROCm 7.2 (Linux)",
    RuntimeDevice.MPS: "Apple silicon (Metal)",
    RuntimeDevice.CPU: "CPU only",
}

MIN_MACOS = (14, 0)   # PyPI's torch 2.13.0 macOS wheel is macosx_14_0_arm64

# GPU targets PyTorch's ROCm 7.x wheels are built for: PYTORCH_ROCM_ARCH in
# pytorch/pytorch .ci/docker/manywheel/build.sh (read on main, 2026; the ROCm 7.2 build also
# gets gfx900/gfx906). 2.13's branch may lack the newest entries (gfx1103 was added after
# 2.12); a card outside the list gets "invalid device function" errors, so it is told here.
ROCM_TARGETS = frozenset(("gfx900", "gfx906", "gfx908", "gfx90a", "gfx942", "gfx950", "gfx1030",
                          "gfx1100", "gfx1101", "gfx1102", "gfx1103", "gfx1150", "gfx1151",
                          "gfx1200", "gfx1201"))
# where a target of the same family has kernels, ROCm's documented override makes it use them
_ROCM_OVERRIDES = {"gfx103": "10.3.0", "gfx110": "11.0.0", "gfx120": "12.0.0"}


def device_label(device: RuntimeDevice) -> str:
    """A short human name for a lock ("NVIDIA, CUDA 13.0")."""
    return _LABELS[device]


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


def _version(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def _driver_major(driver: str) -> int | None:
    head = driver.strip().split(".")[0]
    return int(head) if head.isdigit() else None


def _driver_ok(gpu: GpuInfo, build: CudaBuild) -> bool | None:
    """Whether ``gpu``'s driver runs ``build``; None when the driver is unknown."""
    if gpu.cuda_driver_version is not None:
        return gpu.cuda_driver_version >= build.min_driver_cuda
    major = _driver_major(gpu.driver_version)
    return None if major is None else major >= build.min_driver


def _has_kernels(cc: tuple[int, int], build: CudaBuild) -> bool:
    return build.min_cc <= cc and cc[0] <= build.max_major


def _driver_text(gpu: GpuInfo) -> str:
    text = f"driver {gpu.driver_version}" if gpu.driver_version else "an unknown driver"
    if gpu.cuda_driver_version is not None:
        text += f" (supports CUDA {_version(gpu.cuda_driver_version)})"
    return text


def gpu_summary(gpu: GpuInfo) -> str:
    """"NVIDIA GeForce RTX 4090, 24 GB, compute 8.9" (for reasons and the Settings page)."""
    parts = [gpu.name]
    if gpu.vram_mb:
        parts.append(f"{gpu.vram_mb / 1024:.0f} GB")
    if gpu.compute_capability is not None:
        parts.append(f"compute {_version(gpu.compute_capability)}")
    return ", ".join(parts)


def _nvidia(gpu: GpuInfo) -> LockChoice:
    cc = gpu.compute_capability
    fitting = [b for b in CUDA_BUILDS if cc is None or _has_kernels(cc, b)]
    if not fitting:
        if cc is not None and cc >= (13, 0):
            # newer than any build's kernels: the CUDA 13 build's PTX is the only chance
            fitting = [CUDA_BUILDS[0]]
        else:
            oldest = min(b.min_cc for b in CUDA_BUILDS)
            return LockChoice(RuntimeDevice.CPU, gpu, "No PyTorch build supports this GPU.",
                              problem=(f"{gpu.name} (compute capability {_version(cc or (0, 0))})"
                                       f" is too old for PyTorch 2.13: its oldest build needs "
                                       f"compute capability {_version(oldest)} (Maxwell) or newer. "
                                       "Training would run on the CPU."))
    for build in fitting:
        ok = _driver_ok(gpu, build)
        if ok is None:
            return LockChoice(build.device, gpu,
                              f"{gpu_summary(gpu)}: driver version unknown, assuming it runs "
                              f"the CUDA {_version(build.cuda)} build.",
                              problem=(f"The driver of {gpu.name} could not be read. Install or "
                                       f"update the NVIDIA driver (version {build.min_driver} or "
                                       "newer), then check again."))
        if ok:
            why = f"{gpu_summary(gpu)}, {_driver_text(gpu)} → CUDA {_version(build.cuda)} build"
            if build is not CUDA_BUILDS[0]:
                newest = CUDA_BUILDS[0]
                if cc is not None and not _has_kernels(cc, newest):
                    why += (f" (CUDA {_version(newest.cuda)} has no kernels for compute "
                            f"capability {_version(cc)})")
                else:
                    why += (f" (CUDA {_version(newest.cuda)} needs driver {newest.min_driver} "
                            "or newer)")
            return LockChoice(build.device, gpu, why + ".")
    # the card has kernels in some build, but the driver is too old for all of them
    need = min(fitting, key=lambda b: b.min_driver)
    best = fitting[0]
    advice = (f"driver {need.min_driver} or newer" if need is best else
              f"driver {need.min_driver} or newer ({best.min_driver} or newer for the CUDA "
              f"{_version(best.cuda)} build)")
    return LockChoice(RuntimeDevice.CPU, gpu,
                      f"{gpu_summary(gpu)}: {_driver_text(gpu)} is too old for every build.",
                      problem=(f"{gpu.name} has {_driver_text(gpu)}, too old for PyTorch 2.13. "
                               f"Install NVIDIA {advice}, then check again."))


def _macos_ok(version: str) -> bool:
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
    return not parts or tuple(parts + [0])[:2] >= MIN_MACOS


def choose_lock(machine: MachineInfo) -> LockChoice:
    """Pick the lock for ``machine``'s best usable GPU (see the tables in this module).

    GPUs are tried best first (most VRAM); the first one some build supports decides. When
    none does, the answer is the CPU lock with ``problem`` naming the best GPU and what it
    needs."""
    first_problem: LockChoice | None = None
    for gpu in machine.gpus:
        choice = _choice_for(gpu, machine)
        if choice is None:
            continue
        if not choice.problem:
            return _with_left_out(choice, machine)
        if first_problem is None:
            first_problem = choice
    if first_problem is not None:
        return first_problem
    if machine.os_name == "Darwin" and machine.arch.lower() not in ("arm64", "aarch64"):
        return LockChoice(RuntimeDevice.CPU, None, "No GPU found.",
                          problem=("PyTorch 2.13 has no build for Macs with an Intel processor; "
                                   "training needs a Mac with Apple silicon or another computer."))
    return LockChoice(RuntimeDevice.CPU, None, "No GPU found: training runs on the CPU (slow).")


def _with_left_out(choice: LockChoice, machine: MachineInfo) -> LockChoice:
    """``choice`` with its reason naming the other NVIDIA GPUs its build has no kernels for
    (a mixed rig: training uses the chosen card)."""
    build = next((b for b in CUDA_BUILDS if b.device is choice.device), None)
    if build is None:
        return choice
    left_out = [g.name for g in machine.gpus if g is not choice.gpu
                and g.vendor is GpuVendor.NVIDIA and g.compute_capability is not None
                and not _has_kernels(g.compute_capability, build)]
    if not left_out:
        return choice
    return LockChoice(choice.device, choice.gpu,
                      f"{choice.reason} This build cannot use: {', '.join(left_out)}.")


def _choice_for(gpu: GpuInfo, machine: MachineInfo) -> LockChoice | None:
    """The lock for one GPU; None for a GPU the trainer cannot use at all (Intel)."""
    if gpu.vendor is GpuVendor.NVIDIA:
        return _nvidia(gpu)
    if gpu.vendor is GpuVendor.AMD:
        if machine.os_name == "Linux":
            if gpu.arch and gpu.arch not in ROCM_TARGETS:
                override = _ROCM_OVERRIDES.get(gpu.arch[:6])
                hint = (" To try it anyway (not supported by AMD or PyTorch): start Isengard "
                        f"with the environment variable HSA_OVERRIDE_GFX_VERSION={override} and "
                        "choose the ROCm build under Trainer build." if override else "")
                return LockChoice(RuntimeDevice.CPU, gpu,
                                  f"{gpu_summary(gpu)} ({gpu.arch}): not a ROCm build target.",
                                  problem=(f"{gpu.name} ({gpu.arch}) has no kernels in PyTorch's "
                                           "ROCm build, so training runs on the CPU (slow)."
                                           + hint))
            arch = f" ({gpu.arch})" if gpu.arch else ""
            return LockChoice(RuntimeDevice.ROCM, gpu,
                              f"{gpu_summary(gpu)}{arch} on Linux → ROCm 7.2 build.")
        system = machine.os_name or "this system"
        return LockChoice(RuntimeDevice.CPU, gpu,
                          f"{gpu_summary(gpu)}: no ROCm build for {system}.",
                          problem=(f"PyTorch has no ROCm build for {system}, so {gpu.name} "
                                   "cannot train here; training runs on the CPU (slow). On "
                                   "Linux this card can use the ROCm build."))
    if gpu.vendor is GpuVendor.APPLE:
        if not _macos_ok(machine.os_version):
            return LockChoice(RuntimeDevice.CPU, gpu, f"{gpu.name}: macOS {machine.os_version}.",
                              problem=(f"PyTorch 2.13 needs macOS {_version(MIN_MACOS)} or newer "
                                       f"for {gpu.name}; this Mac runs {machine.os_version}. "
                                       "Update macOS to train on the GPU."))
        return LockChoice(RuntimeDevice.MPS, gpu,
                          f"{gpu.name} with {gpu.vram_mb / 1024:.0f} GB unified memory → "
                          "Apple Metal (MPS) build.")
    return None


def resolve_device(choice: LockChoice, override: str = "") -> RuntimeDevice:
    """The lock to install: the user's override (``Settings.runtime_device_override``, a
    :class:`RuntimeDevice` value) when set and known, else the detected ``choice``."""
    try:
        return RuntimeDevice(override) if override else choice.device
    except ValueError:
        return choice.device
