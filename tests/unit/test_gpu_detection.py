"""GPU, RAM and disk detection (issue 12, item 2): recorded NVML answers, an AMD sysfs tree in
a temp folder, Apple and Windows through the command seam. Failures become notes, never
exceptions."""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import pynvml
import pytest

from isengard_desktop.core.hardware.gpu import PynvmlApi, detect_machine, free_disk_mb, gfx_name
from isengard_desktop.core.hardware.machine import GpuVendor
from tests.helpers.recorded_gpus import (DRIVER_535, DRIVER_560, DRIVER_580, GTX_1080, MIB,
                                         RTX_3060_12GB, RTX_4090, RTX_5090, RecordedNvml,
                                         nvml_error)

def no_nvml() -> RecordedNvml:
    return RecordedNvml(init_error=nvml_error(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))


def no_commands(argv: Sequence[str]) -> str:
    raise FileNotFoundError(argv[0])


def detect(tmp_path: Path, nvml: RecordedNvml, **kw) -> object:
    kw.setdefault("sysfs_root", tmp_path / "no-sys")
    kw.setdefault("system", "Linux")
    kw.setdefault("machine", "x86_64")
    return detect_machine(tmp_path / "data", nvml=nvml, **kw)


@pytest.mark.parametrize("card, driver, vram, cuda", [
    (RTX_4090, DRIVER_580, 24564, (13, 0)),
    (RTX_3060_12GB, DRIVER_560, 12288, (12, 6)),
    (GTX_1080, DRIVER_535, 8192, (12, 2)),
    (RTX_5090, DRIVER_580, 32607, (13, 0)),
])
def test_one_nvidia_card_is_read_from_nvml(tmp_path, card, driver, vram, cuda) -> None:
    nvml = RecordedNvml([card], driver=driver)
    info = detect(tmp_path, nvml)
    assert len(info.gpus) == 1 and info.notes == ()
    gpu = info.gpus[0]
    assert gpu.vendor is GpuVendor.NVIDIA and gpu.name == card.name
    assert gpu.vram_mb == vram
    assert gpu.driver_version == driver[0]
    assert gpu.compute_capability == card.compute_capability
    assert gpu.cuda_driver_version == cuda
    assert nvml.calls[0] == "init" and nvml.calls[-1] == "shutdown"


def test_several_cards_come_best_first_and_keep_their_driver_index(tmp_path) -> None:
    info = detect(tmp_path, RecordedNvml([GTX_1080, RTX_4090]))
    assert [g.name for g in info.gpus] == [RTX_4090.name, GTX_1080.name]
    assert [g.index for g in info.gpus] == [1, 0]
    assert info.best_gpu is not None and info.best_gpu.name == RTX_4090.name


def test_no_gpu_gives_an_empty_list_and_notes(tmp_path) -> None:
    info = detect(tmp_path, no_nvml())
    assert info.gpus == () and info.best_gpu is None
    assert "No NVIDIA driver found" in info.notes[0]
    assert any("No GPU found" in n for n in info.notes)


def test_a_driver_that_is_not_loaded_is_a_note(tmp_path) -> None:
    info = detect(tmp_path, RecordedNvml(init_error=nvml_error(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)))
    assert info.gpus == ()
    assert any("installed but not loaded" in n for n in info.notes)


def test_one_unreadable_field_keeps_the_card(tmp_path) -> None:
    nvml = RecordedNvml([RTX_4090], errors={
        "compute_capability": nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED),
        "cuda_driver_version": nvml_error(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)})
    info = detect(tmp_path, nvml)
    gpu = info.gpus[0]
    assert gpu.name == RTX_4090.name and gpu.vram_mb == 24564
    assert gpu.compute_capability is None and gpu.cuda_driver_version is None
    assert any("compute capability unreadable" in n and "Not Supported" in n for n in info.notes)
    assert any("CUDA version of the NVIDIA driver unreadable" in n for n in info.notes)
    assert nvml.calls[-1] == "shutdown"


def test_ram_cpus_and_free_disk_of_this_machine(tmp_path) -> None:
    info = detect(tmp_path, no_nvml())
    expected_ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB
    assert info.ram_mb == expected_ram > 0
    assert info.cpu_count == os.cpu_count()
    assert info.os_name == "Linux" and info.arch == "x86_64"
    # data_dir does not exist yet: the nearest existing parent's disk is measured
    assert not (tmp_path / "data").exists()
    free = shutil.disk_usage(tmp_path).free // MIB
    assert info.free_disk_mb is not None and abs(info.free_disk_mb - free) < 512


def test_free_disk_walks_up_to_an_existing_folder(tmp_path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    assert free_disk_mb(deep) == pytest.approx(shutil.disk_usage(tmp_path).free // MIB, abs=512)


def _pci_device(root: Path, slot: str, vendor: str, device: str, vram: int | None) -> Path:
    folder = root / "devices" / "pci0000:00" / slot
    folder.mkdir(parents=True)
    (folder / "vendor").write_text(vendor + "\n")
    (folder / "device").write_text(device + "\n")
    if vram is not None:
        (folder / "mem_info_vram_total").write_text(f"{vram}\n")
    return folder


def _drm_card(root: Path, name: str, device: Path) -> None:
    card = root / "class" / "drm" / name
    card.mkdir(parents=True)
    (card / "device").symlink_to(device)


def amd_sysfs(tmp_path: Path) -> Path:
    """A Linux /sys with a Radeon RX 7900 XTX (card1), an Intel iGPU (card0), connector and
    render nodes beside them, as amdgpu and i915 lay them out."""
    root = tmp_path / "sys"
    radeon = _pci_device(root, "0000:03:00.0", "0x1002", "0x744c", 25753026560)
    igpu = _pci_device(root, "0000:00:02.0", "0x8086", "0xa780", None)
    _drm_card(root, "card0", igpu)
    _drm_card(root, "card1", radeon)
    _drm_card(root, "card1-DP-1", radeon)        # a connector, not a card
    _drm_card(root, "renderD128", radeon)
    (root / "class" / "drm" / "version").write_text("drm 1.1.0 20060810\n")
    (root / "module" / "amdgpu").mkdir(parents=True)
    # the ROCm kernel driver's topology: node 0 is the CPU, node 1 the Radeon at 03:00.0
    nodes = root / "class" / "kfd" / "kfd" / "topology" / "nodes"
    (nodes / "0").mkdir(parents=True)
    (nodes / "0" / "properties").write_text("cpu_cores_count 16\nsimd_count 0\n"
                                            "gfx_target_version 0\nlocation_id 0\ndomain 0\n")
    (nodes / "1").mkdir(parents=True)
    (nodes / "1" / "properties").write_text("cpu_cores_count 0\nsimd_count 192\n"
                                            "gfx_target_version 110000\nlocation_id 768\n"
                                            "domain 0\n")
    return root


def test_an_amd_card_is_read_from_sysfs(tmp_path) -> None:
    info = detect(tmp_path, no_nvml(), sysfs_root=amd_sysfs(tmp_path), run=no_commands)
    assert [g.vendor for g in info.gpus] == [GpuVendor.AMD, GpuVendor.INTEL]
    radeon = info.gpus[0]
    assert radeon.vram_mb == 25753026560 // MIB == 24560
    assert radeon.name == "AMD GPU (PCI device 0x744c)"
    assert radeon.compute_capability is None and radeon.cuda_driver_version is None
    assert radeon.arch == "gfx1100"
    # "no NVIDIA driver" is noise on an AMD machine
    assert not any("NVIDIA" in n for n in info.notes)


def test_rocm_smi_names_the_amd_card(tmp_path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "rocm-smi"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    asked: list[list[str]] = []

    def run(argv: Sequence[str]) -> str:
        asked.append(list(argv))
        return json.dumps({"card1": {"Card Series": "Radeon RX 7900 XTX", "Card Vendor":
                                     "Advanced Micro Devices, Inc. [AMD/ATI]"}})

    info = detect(tmp_path, no_nvml(), sysfs_root=amd_sysfs(tmp_path), run=run)
    assert info.gpus[0].name == "Radeon RX 7900 XTX"
    assert asked == [["rocm-smi", "--showproductname", "--json"]]


def test_an_nvidia_card_without_a_driver_is_still_listed(tmp_path) -> None:
    root = tmp_path / "sys"
    _drm_card(root, "card0", _pci_device(root, "0000:01:00.0", "0x10de", "0x2684", None))
    nvml = RecordedNvml(init_error=nvml_error(pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    info = detect(tmp_path, nvml, sysfs_root=root, run=no_commands)
    assert [g.name for g in info.gpus] == ["NVIDIA GPU (PCI device 0x2684)"]
    assert info.gpus[0].driver_version == ""
    assert any("installed but not loaded" in n for n in info.notes)
    assert any("0x2684" in n and "driver could not be read" in n for n in info.notes)


def test_sysfs_does_not_repeat_cards_nvml_saw(tmp_path) -> None:
    root = tmp_path / "sys"
    _drm_card(root, "card0", _pci_device(root, "0000:01:00.0", "0x10de", "0x2684", None))
    info = detect(tmp_path, RecordedNvml([RTX_4090]), sysfs_root=root, run=no_commands)
    assert [g.name for g in info.gpus] == [RTX_4090.name] and info.notes == ()


def test_apple_silicon_uses_unified_memory(tmp_path) -> None:
    answers = {"hw.memsize": "34359738368\n", "machdep.cpu.brand_string": "Apple M2 Pro\n"}
    nvml = RecordedNvml([RTX_4090])
    info = detect(tmp_path, nvml, system="Darwin", machine="arm64",
                  run=lambda argv: answers[argv[-1]])
    assert info.ram_mb == 32768
    assert len(info.gpus) == 1
    gpu = info.gpus[0]
    assert gpu.vendor is GpuVendor.APPLE and gpu.name == "Apple M2 Pro GPU"
    assert gpu.vram_mb == 32768
    assert nvml.calls == []          # no NVML on a Mac


def test_an_intel_mac_has_no_training_gpu(tmp_path) -> None:
    info = detect(tmp_path, no_nvml(), system="Darwin", machine="x86_64",
                  run=lambda argv: "17179869184\n")
    assert info.gpus == () and info.ram_mb == 16384
    assert any("Intel processor" in n for n in info.notes)


def test_windows_lists_amd_cards_from_the_video_controllers(tmp_path) -> None:
    controllers = [{"Name": "AMD Radeon RX 7900 XTX", "AdapterCompatibility":
                    "Advanced Micro Devices, Inc.", "AdapterRAM": 4293918720,
                    "DriverVersion": "32.0.12011.1036"},
                   {"Name": "Microsoft Basic Display Adapter", "AdapterCompatibility":
                    "(Standard display types)", "AdapterRAM": None, "DriverVersion": "10.0"}]
    info = detect(tmp_path, no_nvml(), system="Windows", machine="AMD64",
                  run=lambda argv: json.dumps(controllers))
    assert [(g.vendor, g.name, g.driver_version) for g in info.gpus] == [
        (GpuVendor.AMD, "AMD Radeon RX 7900 XTX", "32.0.12011.1036")]
    assert not any("NVIDIA" in n for n in info.notes)


def test_a_failing_tool_is_a_note_not_an_exception(tmp_path) -> None:
    info = detect(tmp_path, no_nvml(), system="Windows", machine="AMD64", run=no_commands)
    assert info.gpus == () and info.ram_mb == 0
    assert any("Video controllers could not be listed" in n for n in info.notes)
    assert any("RAM" in n for n in info.notes)


def test_the_real_adapter_reads_pynvml(monkeypatch) -> None:
    """PynvmlApi against a stand-in ``pynvml`` module with the real library's call shapes
    (driver version as bytes, like older releases return it)."""
    fake = types.ModuleType("pynvml")
    calls: list[str] = []

    class Memory:
        total = RTX_4090.memory_total

    def record(name, value):
        def call(*args):
            calls.append(name)
            return value
        return call

    fake.nvmlInit = record("nvmlInit", None)
    fake.nvmlShutdown = record("nvmlShutdown", None)
    fake.nvmlDeviceGetCount = record("nvmlDeviceGetCount", 1)
    fake.nvmlSystemGetDriverVersion = record("nvmlSystemGetDriverVersion", b"580.95.05")
    fake.nvmlSystemGetCudaDriverVersion = record("nvmlSystemGetCudaDriverVersion", 13000)
    fake.nvmlDeviceGetHandleByIndex = record("nvmlDeviceGetHandleByIndex", object())
    fake.nvmlDeviceGetName = record("nvmlDeviceGetName", RTX_4090.name)
    fake.nvmlDeviceGetMemoryInfo = record("nvmlDeviceGetMemoryInfo", Memory())
    fake.nvmlDeviceGetCudaComputeCapability = record("nvmlDeviceGetCudaComputeCapability", (8, 9))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    api = PynvmlApi()
    api.init()
    assert api.device_count() == 1
    assert api.driver_version() == "580.95.05"
    assert api.cuda_driver_version() == 13000
    assert api.name(0) == RTX_4090.name
    assert api.memory_total(0) == RTX_4090.memory_total
    assert api.compute_capability(0) == (8, 9)
    api.shutdown()
    assert calls[0] == "nvmlInit" and calls[-1] == "nvmlShutdown"


def test_the_real_adapter_without_nvidia_ml_py(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)      # import pynvml -> ImportError
    info = detect_machine(tmp_path, nvml=PynvmlApi(), sysfs_root=tmp_path / "no-sys",
                          system="Linux", machine="x86_64")
    assert info.gpus == ()
    assert any("nvidia-ml-py is not installed" in n for n in info.notes)


def test_gfx_target_names() -> None:
    assert [gfx_name(v) for v in (110000, 90010, 110501, 100300, 120001, 90402)] == [
        "gfx1100", "gfx90a", "gfx1151", "gfx1030", "gfx1201", "gfx942"]


def test_detection_and_the_page_load_no_ml_library(tmp_path) -> None:
    """The GUI never imports torch & co.: detection (real NVML adapter) and the settings page
    module, in a fresh interpreter."""
    import subprocess

    code = ("import sys, pathlib\n"
            "from isengard_desktop.core.hardware.gpu import detect_machine\n"
            "from isengard_desktop.core.hardware.locks import choose_lock\n"
            "import isengard_desktop.ui.settings.machine_page\n"
            f"choose_lock(detect_machine(pathlib.Path({str(tmp_path)!r})))\n"
            "bad = [m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules]\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[2], check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_cuda_numbers_the_gpus_as_our_list_does_for_every_child(monkeypatch):
    """NVML (our GPU list) numbers cards by PCI bus, CUDA fastest first: without
    CUDA_DEVICE_ORDER=PCI_BUS_ID a managed ComfyUI pinned with CUDA_VISIBLE_DEVICES=0, or a
    trainer's gpu_ids, could land on another card than "GPU 0" of the list on a machine with
    two different cards. The app's entry sets it before any child starts; a user's value
    stays."""
    import os

    from isengard_desktop import __main__ as entry
    from isengard_desktop.core.hardware.gpu import use_pci_bus_order

    env: dict[str, str] = {}
    assert use_pci_bus_order(env) and env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    mine = {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}
    assert not use_pci_bus_order(mine) and mine["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"

    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    seen: list[str | None] = []

    def runtime_command(args) -> int:  # noqa: ANN001 - the CLI's Namespace
        seen.append(os.environ.get("CUDA_DEVICE_ORDER"))
        return 0

    monkeypatch.setattr("isengard_desktop.cli.runtime_commands.runtime_command", runtime_command)
    assert entry.main(["runtime", "status"]) == 0
    assert seen == ["PCI_BUS_ID"]
