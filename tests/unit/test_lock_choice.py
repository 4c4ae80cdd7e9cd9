"""Which trainer-runtime lock a machine gets (issue 12, item 2): a table of recorded cards and
drivers, detected through the NVML seam and then chosen, plus AMD, Apple and CPU machines."""

from __future__ import annotations

from pathlib import Path

import pytest

from isengard_desktop.core.hardware.gpu import detect_machine
from isengard_desktop.core.hardware.locks import (CUDA_BUILDS, choose_lock, device_label,
                                                  resolve_device)
from isengard_desktop.core.hardware.machine import GpuInfo, GpuVendor, MachineInfo
from isengard_desktop.core.runtime.status import RuntimeDevice
from tests.helpers.recorded_gpus import (DRIVER_470, DRIVER_520, DRIVER_535, DRIVER_560,
                                         DRIVER_570, DRIVER_580, DRIVER_590, GTX_780, GTX_1080,
                                         RTX_3060_12GB, RTX_4090, RTX_5090, TESLA_V100,
                                         RecordedCard, RecordedNvml)

CU130, CU126, CPU = RuntimeDevice.CUDA13, RuntimeDevice.CUDA126, RuntimeDevice.CPU


def nvidia_machine(tmp_path: Path, cards: list[RecordedCard],
                   driver: tuple[str, int]) -> MachineInfo:
    return detect_machine(tmp_path, nvml=RecordedNvml(cards, driver=driver),
                          sysfs_root=tmp_path / "no-sys", system="Linux", machine="x86_64")


# card, driver -> lock, words the reason (or problem) must hold
TABLE = [
    # current cards on a CUDA 13 driver take PyPI's CUDA 13.0 build
    (RTX_4090, DRIVER_580, CU130, "", "CUDA 13.0 build"),
    (RTX_4090, DRIVER_590, CU130, "", "supports CUDA 13.1"),
    (RTX_3060_12GB, DRIVER_580, CU130, "", "compute 8.6"),
    (RTX_5090, DRIVER_590, CU130, "", "compute 12.0"),
    (RTX_5090, DRIVER_580, CU130, "", "CUDA 13.0 build"),
    # a driver too old for CUDA 13 -> the CUDA 12.6 build
    (RTX_4090, DRIVER_560, CU126, "", "needs driver 580 or newer"),
    (RTX_3060_12GB, DRIVER_535, CU126, "", "supports CUDA 12.2"),
    # Pascal / Volta: CUDA 13 has no kernels for them, whatever the driver
    (GTX_1080, DRIVER_580, CU126, "", "no kernels for compute capability 6.1"),
    (GTX_1080, DRIVER_560, CU126, "", "CUDA 12.6 build"),
    (TESLA_V100, DRIVER_590, CU126, "", "no kernels for compute capability 7.0"),
    # RTX 50-series has kernels only in the CUDA 13 build: never cu126
    (RTX_5090, DRIVER_570, CPU, "driver 580 or newer", "too old for every build"),
    # a driver too old for any build
    (RTX_4090, DRIVER_520, CPU, "driver 525 or newer", "too old for every build"),
    (GTX_1080, DRIVER_470, CPU, "driver 525 or newer", "supports CUDA 11.4"),
    # a card older than every build
    (GTX_780, DRIVER_470, CPU, "compute capability 3.5", "No PyTorch build"),
]


@pytest.mark.parametrize("card, driver, device, problem, reason", TABLE,
                         ids=[f"{c.name.split()[-1]}-{d[0]}" for c, d, *_ in TABLE])
def test_nvidia_table(tmp_path, card, driver, device, problem, reason) -> None:
    choice = choose_lock(nvidia_machine(tmp_path, [card], driver))
    assert choice.device is device
    assert choice.gpu is not None and choice.gpu.name == card.name
    assert reason in choice.reason
    if problem:
        # the message names the card, its driver and what is needed
        assert problem in choice.problem and card.name in choice.problem
        if card is not GTX_780:
            assert driver[0] in choice.problem
    else:
        assert choice.problem == ""


def test_the_best_usable_card_decides(tmp_path) -> None:
    choice = choose_lock(nvidia_machine(tmp_path, [GTX_1080, RTX_4090], DRIVER_580))
    assert choice.device is CU130 and choice.gpu is not None
    assert choice.gpu.name == RTX_4090.name
    assert choice.reason.endswith(f"This build cannot use: {GTX_1080.name}.")
    both = choose_lock(nvidia_machine(tmp_path, [RTX_3060_12GB, RTX_4090], DRIVER_580))
    assert "cannot use" not in both.reason
    # an unusable big card does not hide a usable smaller one
    old_big = RecordedCard("Tesla K80", 12288 * 1024 * 1024, (3, 7))
    choice = choose_lock(nvidia_machine(tmp_path, [old_big, GTX_1080], DRIVER_580))
    assert choice.device is CU126 and choice.gpu is not None and choice.gpu.name == GTX_1080.name


def test_unknown_driver_assumes_the_newest_build_and_says_so() -> None:
    gpu = GpuInfo(GpuVendor.NVIDIA, "NVIDIA GPU (PCI device 0x2684)")
    choice = choose_lock(MachineInfo((gpu,), 32768, 16, "Linux", "x86_64"))
    assert choice.device is CU130
    assert "could not be read" in choice.problem and "580 or newer" in choice.problem


def test_driver_version_string_is_used_when_nvml_has_no_cuda_version() -> None:
    old = GpuInfo(GpuVendor.NVIDIA, "NVIDIA GeForce RTX 3060", 12288, driver_version="560.35.03",
                  compute_capability=(8, 6))
    assert choose_lock(MachineInfo((old,), 0, 8, "Windows", "AMD64")).device is CU126
    new = GpuInfo(GpuVendor.NVIDIA, "NVIDIA GeForce RTX 3060", 12288, driver_version="581.57",
                  compute_capability=(8, 6))
    assert choose_lock(MachineInfo((new,), 0, 8, "Windows", "AMD64")).device is CU130


RADEON = GpuInfo(GpuVendor.AMD, "Radeon RX 7900 XTX", 24560)
APPLE = GpuInfo(GpuVendor.APPLE, "Apple M2 Pro GPU", 32768)


def test_amd_on_linux_takes_rocm() -> None:
    choice = choose_lock(MachineInfo((RADEON,), 65536, 16, "Linux", "x86_64"))
    assert choice.device is RuntimeDevice.ROCM and choice.problem == ""
    assert "ROCm" in choice.reason and RADEON.name in choice.reason


def test_amd_targets_the_rocm_build_lacks_are_told() -> None:
    listed = GpuInfo(GpuVendor.AMD, "Radeon RX 7900 XTX", 24560, arch="gfx1100")
    choice = choose_lock(MachineInfo((listed,), 65536, 16, "Linux", "x86_64"))
    assert choice.device is RuntimeDevice.ROCM and "(gfx1100)" in choice.reason
    rx6600 = GpuInfo(GpuVendor.AMD, "Radeon RX 6600", 8176, arch="gfx1032")
    choice = choose_lock(MachineInfo((rx6600,), 32768, 12, "Linux", "x86_64"))
    assert choice.device is CPU
    assert "Radeon RX 6600 (gfx1032) has no kernels" in choice.problem
    assert "HSA_OVERRIDE_GFX_VERSION=10.3.0" in choice.problem
    vega = GpuInfo(GpuVendor.AMD, "Radeon RX Vega 8", 512, arch="gfx90c")
    choice = choose_lock(MachineInfo((vega,), 16384, 8, "Linux", "x86_64"))
    assert choice.device is CPU and "HSA_OVERRIDE" not in choice.problem


def test_amd_on_windows_falls_back_to_cpu_with_a_message() -> None:
    choice = choose_lock(MachineInfo((RADEON,), 65536, 16, "Windows", "AMD64"))
    assert choice.device is CPU and choice.gpu == RADEON
    assert "no ROCm build for Windows" in choice.problem and RADEON.name in choice.problem


def test_apple_silicon_takes_mps() -> None:
    choice = choose_lock(MachineInfo((APPLE,), 32768, 12, "Darwin", "arm64", os_version="15.1"))
    assert choice.device is RuntimeDevice.MPS and choice.problem == ""
    assert "32 GB unified memory" in choice.reason


def test_apple_silicon_on_an_old_macos_is_told_to_update() -> None:
    choice = choose_lock(MachineInfo((APPLE,), 32768, 12, "Darwin", "arm64", os_version="13.6"))
    assert choice.device is CPU
    assert "macOS 14.0 or newer" in choice.problem and "13.6" in choice.problem


def test_an_intel_mac_is_told_plainly() -> None:
    choice = choose_lock(MachineInfo((), 16384, 8, "Darwin", "x86_64"))
    assert choice.device is CPU and "Intel processor" in choice.problem


def test_no_gpu_means_cpu(tmp_path) -> None:
    machine = detect_machine(tmp_path, nvml=RecordedNvml([]), sysfs_root=tmp_path / "no-sys",
                             system="Linux", machine="x86_64")
    choice = choose_lock(machine)
    assert choice.device is CPU and choice.gpu is None and choice.problem == ""
    assert "No GPU found" in choice.reason


def test_an_intel_gpu_alone_means_cpu() -> None:
    igpu = GpuInfo(GpuVendor.INTEL, "Intel GPU (PCI device 0xa780)")
    choice = choose_lock(MachineInfo((igpu,), 16384, 8, "Linux", "x86_64"))
    assert choice.device is CPU and choice.problem == "" and "No GPU found" in choice.reason


def test_every_device_has_a_label_and_the_cuda_builds_are_newest_first() -> None:
    assert all(device_label(d) for d in RuntimeDevice)
    assert [b.cuda for b in CUDA_BUILDS] == sorted((b.cuda for b in CUDA_BUILDS), reverse=True)


def test_the_override_wins_when_set(tmp_path) -> None:
    choice = choose_lock(nvidia_machine(tmp_path, [GTX_1080], DRIVER_580))
    assert resolve_device(choice) is CU126
    assert resolve_device(choice, "cpu") is CPU
    assert resolve_device(choice, "cu118") is CU126      # an unknown value is ignored


def test_advice_in_plain_words() -> None:
    from isengard_desktop.core.hardware.advice import gb_text, machine_advice

    assert [gb_text(m) for m in (12288, 8192, 7680, 512, 24560)] == [
        "12 GB", "8 GB", "7.5 GB", "0.5 GB", "24 GB"]
    small = GpuInfo(GpuVendor.NVIDIA, "NVIDIA GeForce GTX 1080", 8192, driver_version="580.95.05",
                    compute_capability=(6, 1), cuda_driver_version=(13, 0))
    machine = MachineInfo((small,), 16384, 8, "Linux", "x86_64", free_disk_mb=20_000)
    words = machine_advice(machine, choose_lock(machine))
    assert words[0].startswith("NVIDIA GeForce GTX 1080 has 8 GB of memory: enough for SD 1.5")
    assert words[1].startswith("Only 20 GB free")
    big = MachineInfo((GpuInfo(GpuVendor.NVIDIA, "RTX 4090", 24564, "580.95.05", (8, 9),
                               (13, 0)),), 65536, 16, "Linux", "x86_64", free_disk_mb=900_000)
    assert machine_advice(big, choose_lock(big)) == []
    none = MachineInfo((), 16384, 8, "Linux", "x86_64", free_disk_mb=900_000)
    assert machine_advice(none, choose_lock(none)) == [
        "No usable GPU: training runs on the processor and a LoRA takes hours."]
