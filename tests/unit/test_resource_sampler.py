"""Issue 16 item 3: resource samples and alerts from recorded NVML/psutil answers, a real
psutil run, the checkpoint size estimate and the debug bundle's copy of the samples."""

from __future__ import annotations

import json
import sys
import types
import zipfile
from dataclasses import replace
from pathlib import Path

import pynvml

from isengard_desktop.core.hardware.gpu import PynvmlApi
from isengard_desktop.core.hardware.monitor import (GB, THERMAL_REASONS, GpuSample, ResourceSample,
                                                    ResourceSampler, estimate_checkpoint_bytes,
                                                    resource_alerts, sample_record)
from isengard_desktop.core.training.job_files import write_debug_bundle
from isengard_desktop.core.training.spec import JobPaths
from tests.helpers.recorded_gpus import (MIB, REASON_HW_THERMAL, REASON_SW_THERMAL,
                                         RTX_3060_12GB, RTX_4090, TRAINING_4090, RecordedLive,
                                         RecordedNvml, RecordedSystem, nvml_error)


def test_recorded_gpu_and_system_become_a_sample(tmp_path):
    nvml = RecordedNvml(cards=[RTX_4090, RTX_3060_12GB],
                        live=[TRAINING_4090, RecordedLive(5, 900 * MIB, 45, 15_500, 0)])
    system = RecordedSystem()
    sampler = ResourceSampler(tmp_path / "data", nvml=nvml, system=system, clock=lambda: 1234.5)
    sample = sampler.sample()
    assert sample.t == 1234.5
    assert sample.cpu_pct == 37.5
    assert (sample.ram_used, sample.ram_total) == (11 * GB, 32 * GB)
    assert (sample.disk_free, sample.disk_total) == (120 * GB, 500 * GB)
    assert system.disk_asked == [tmp_path / "data"]
    first, second = sample.gpus
    assert first == GpuSample(0, RTX_4090.name, util_pct=98.0, vram_used=20580 * MIB,
                              vram_total=RTX_4090.memory_total, temp_c=71.0, power_w=402.31,
                              thermal_throttle=False)    # power cap is not heat
    assert second.name == RTX_3060_12GB.name and second.util_pct == 5.0
    assert second.vram_total == RTX_3060_12GB.memory_total
    assert sample.gpu_note == ""
    assert resource_alerts(sample, 1 * GB) == ()
    # NVML starts once and stays open between samples; close shuts it down
    sampler.sample()
    assert nvml.calls.count("init") == 1
    sampler.close()
    assert nvml.calls[-1] == "shutdown"


def test_no_nvidia_driver_still_samples_cpu_ram_and_disk(tmp_path):
    nvml = RecordedNvml(init_error=nvml_error(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    sample = ResourceSampler(tmp_path, nvml=nvml, system=RecordedSystem()).sample()
    assert sample.gpus == ()
    assert sample.gpu_note.startswith("No NVIDIA driver found")
    assert sample.cpu_pct == 37.5 and sample.disk_free == 120 * GB


def test_one_unreadable_value_leaves_the_others(tmp_path):
    nvml = RecordedNvml(cards=[RTX_4090], live=[TRAINING_4090],
                        errors={"temperature": nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED),
                                "power_w": nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)})
    gpu = ResourceSampler(tmp_path, nvml=nvml, system=RecordedSystem()).sample().gpus[0]
    assert gpu.temp_c is None and gpu.power_w is None
    assert gpu.util_pct == 98.0 and gpu.vram_used == 20580 * MIB


def _gpu_sample(tmp_path: Path, live: RecordedLive, disk_free: int = 120 * GB) -> ResourceSample:
    nvml = RecordedNvml(cards=[RTX_4090], live=[live])
    system = RecordedSystem(disk_space=(disk_free, 500 * GB))
    return ResourceSampler(tmp_path, nvml=nvml, system=system).sample()


def test_alerts_for_full_vram_heat_and_a_disk_too_small_for_the_next_checkpoint(tmp_path):
    total = RTX_4090.memory_total
    at_97 = replace(TRAINING_4090, vram_used=int(total * 0.97))
    assert resource_alerts(_gpu_sample(tmp_path, at_97)) == ()
    full = replace(TRAINING_4090, vram_used=int(total * 0.985))
    (alert,) = resource_alerts(_gpu_sample(tmp_path, full))
    assert alert.kind == "vram" and "98.5 % full" in alert.message
    assert RTX_4090.name in alert.message
    for bit in (REASON_SW_THERMAL, REASON_HW_THERMAL):
        hot = replace(TRAINING_4090, temp_c=88, reasons=bit)
        (alert,) = resource_alerts(_gpu_sample(tmp_path, hot))
        assert alert.kind == "thermal" and "88 °C" in alert.message
    low_disk = _gpu_sample(tmp_path, TRAINING_4090, disk_free=int(1.05 * GB))
    assert resource_alerts(low_disk) == ()             # no job: nothing to estimate
    assert resource_alerts(low_disk, 512 * MIB) == ()  # room for it
    (alert,) = resource_alerts(low_disk, 1 * GB)       # 1 GB + 10 % margin does not fit
    assert alert.kind == "disk" and "(1.05 GB on" in alert.message
    assert "(about 1.00 GB)" in alert.message
    everything = _gpu_sample(tmp_path, replace(full, reasons=REASON_HW_THERMAL),
                             disk_free=100 * MIB)
    assert [a.kind for a in resource_alerts(everything, 1 * GB)] == ["disk", "vram", "thermal"]


def test_checkpoint_size_from_the_newest_checkpoint_or_the_lora(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    assert estimate_checkpoint_bytes(job) is None
    (job / "output").mkdir()
    (job / "output" / "anna_000250.safetensors").write_bytes(b"x" * 700)
    (job / "output" / "anna_000500.safetensors").write_bytes(b"x" * 900)
    assert estimate_checkpoint_bytes(job) == 900       # an external trainer's LoRA files
    old = job / "checkpoints" / "checkpoint-100"
    new = job / "checkpoints" / "checkpoint-200"
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "optimizer.bin").write_bytes(b"x" * 3000)
    new.mkdir()
    (new / "lora.safetensors").write_bytes(b"x" * 4000)
    (new / "optimizer.bin").write_bytes(b"x" * 1000)
    assert estimate_checkpoint_bytes(job) == 5000      # the newest by step, all its files


def test_sample_record_is_compact_json(tmp_path):
    sample = _gpu_sample(tmp_path, TRAINING_4090)
    alerts = resource_alerts(sample, 200 * GB)
    record = json.loads(json.dumps(sample_record(sample, alerts)))
    assert record["cpu"] == 37.5
    assert record["ram_mb"] == [11 * 1024, 32 * 1024]
    assert record["disk_free_mb"] == 120 * 1024
    assert record["gpus"] == [{"i": 0, "util": 98.0, "vram_mb": [20580, 24564], "temp": 71.0,
                               "w": 402.3, "thermal": False}]
    assert record["alerts"] == ["disk"]
    assert len(json.dumps(sample_record(sample), separators=(",", ":"))) < 200


def test_a_real_psutil_sample_is_plausible(tmp_path):
    sampler = ResourceSampler(tmp_path / "not-made-yet")   # real psutil, real NVML if any
    try:
        sampler.sample()
        sample = sampler.sample()
    finally:
        sampler.close()
    assert sample.cpu_pct is not None and 0.0 <= sample.cpu_pct <= 100.0
    assert sample.ram_total is not None and sample.ram_total > 256 * MIB
    assert sample.ram_used is not None and 0 < sample.ram_used <= sample.ram_total
    assert sample.disk_total is not None and sample.disk_free is not None
    assert 0 < sample.disk_free <= sample.disk_total
    # either NVML answered for each GPU, or the sample says why there are none
    assert sample.gpus or sample.gpu_note
    for gpu in sample.gpus:
        assert gpu.vram_total and gpu.vram_used is not None and gpu.vram_used <= gpu.vram_total


def test_debug_bundle_holds_the_resource_samples(tmp_path):
    paths = JobPaths(tmp_path / "jobs" / "job1")
    paths.root.mkdir(parents=True)
    line = json.dumps(sample_record(_gpu_sample(tmp_path, TRAINING_4090)))
    (paths.root / "resources.jsonl").write_text(line + "\n", encoding="utf-8")
    dest = write_debug_bundle(paths, tmp_path / "bundle.zip", {"state": "failed"}, [],
                              probe_torch=False)
    with zipfile.ZipFile(dest) as zf:
        assert zf.read("resources.jsonl").decode().strip() == line


LIVE_CALLS = ("nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo",
              "nvmlDeviceGetTemperature", "nvmlDeviceGetPowerUsage",
              "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")


def test_the_real_adapter_reads_live_values_from_pynvml(monkeypatch):
    """PynvmlApi's live calls against a stand-in ``pynvml`` that answers with the real
    library's structures; every call it makes exists in the pinned nvidia-ml-py."""
    for name in LIVE_CALLS:
        assert callable(getattr(pynvml, name)), name
    fake = types.ModuleType("pynvml")
    calls: list[tuple[str, tuple]] = []
    util = pynvml.c_nvmlUtilization_t()
    util.gpu, util.memory = 97, 40
    memory = pynvml.c_nvmlMemory_t()
    memory.total, memory.free, memory.used = 24564 * MIB, 4000 * MIB, 20564 * MIB
    handle = object()

    def record(name, value):
        def call(*args):
            calls.append((name, args))
            return value
        return call

    fake.NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    fake.nvmlInit = record("nvmlInit", None)
    fake.nvmlDeviceGetHandleByIndex = record("nvmlDeviceGetHandleByIndex", handle)
    fake.nvmlDeviceGetUtilizationRates = record("nvmlDeviceGetUtilizationRates", util)
    fake.nvmlDeviceGetMemoryInfo = record("nvmlDeviceGetMemoryInfo", memory)
    fake.nvmlDeviceGetTemperature = record("nvmlDeviceGetTemperature", 83)
    fake.nvmlDeviceGetPowerUsage = record("nvmlDeviceGetPowerUsage", 287_450)   # mW
    # an nvidia-ml-py older than the "clocks event" rename has only the throttle call
    fake.nvmlDeviceGetCurrentClocksThrottleReasons = record(
        "nvmlDeviceGetCurrentClocksThrottleReasons",
        pynvml.nvmlClocksThrottleReasonHwThermalSlowdown)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    api = PynvmlApi()
    api.init()
    assert api.utilization(0) == 97
    assert api.memory_used(0) == (20564 * MIB, 24564 * MIB)
    assert api.temperature(0) == 83
    assert ("nvmlDeviceGetTemperature", (handle, pynvml.NVML_TEMPERATURE_GPU)) in calls
    assert api.power_w(0) == 287.45
    assert api.clock_event_reasons(0) & THERMAL_REASONS
    fake.nvmlDeviceGetCurrentClocksEventReasons = record(
        "nvmlDeviceGetCurrentClocksEventReasons", pynvml.nvmlClocksEventReasonSwPowerCap)
    assert not api.clock_event_reasons(0) & THERMAL_REASONS
    assert calls[-1][0] == "nvmlDeviceGetCurrentClocksEventReasons"   # the new name first
    # the thermal bits are NVML's own
    thermal = (pynvml.nvmlClocksEventReasonSwThermalSlowdown
               | pynvml.nvmlClocksEventReasonHwThermalSlowdown)
    assert thermal == THERMAL_REASONS == REASON_SW_THERMAL | REASON_HW_THERMAL
