"""The self-test's reasoning (core/selftest_report.py): probe → checks, disk, LoRA, folders, report."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from isengard_desktop.core.selftest_report import (Check, SelfTestResult, disk_checks,
                                            environment_checks, lora_check, prune_old_runs,
                                            remove_sandbox_extras, training_device)

LIBS = {"diffusers": "0.42.1", "transformers": "5.23.0", "peft": "0.21.2",
        "safetensors": "0.8.0"}


def probe(**changes) -> dict:
    data = {"python": "3.11.7", "executable": "/venv/bin/python", "torch": "2.13.0+cu124",
            "torch_error": None, "torch_import_s": 1.2, "nvidia_driver": None,
            "cuda": {"available": True, "version": "12.4", "device_name": "NVIDIA RTX 4090",
                     "vram_total": 24 << 30, "vram_free": 20 << 30, "bf16": True,
                     "error": None},
            "libraries": dict(LIBS), "optional": {"bitsandbytes": "0.45.0", "torchao": "0.18"}}
    data.update(changes)
    return data


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_working_gpu_setup_passes_and_names_the_card():
    checks = by_name(environment_checks(probe(), "auto"))
    assert all(c.ok for c in checks.values())
    assert list(checks) == ["python", "torch", "cuda", "libraries", "optional"]
    assert "NVIDIA RTX 4090, 24.0 GB VRAM (20.0 GB free), CUDA 12.4" in checks["cuda"].detail
    assert training_device(probe(), "auto") == "cuda"
    assert training_device(probe(), "cpu") == "cpu"


def test_cpu_only_machine_is_fine_on_auto_and_a_plain_failure_on_cuda():
    p = probe(torch="2.13.0+cpu", cuda={"available": False, "version": None})
    auto = by_name(environment_checks(p, "auto"))["cuda"]
    assert auto.ok and "CPU-only build" in auto.detail and "runs on the CPU" in auto.detail
    asked = by_name(environment_checks(p, "cuda"))["cuda"]
    assert not asked.ok and asked.detail.startswith("You asked for the GPU, but it cannot be")
    assert "CUDA build of PyTorch" in asked.fix and "CPU" in asked.fix
    assert training_device(p, "auto") == "cpu"


def test_nvidia_card_with_a_cpu_only_pytorch_is_the_classic_broken_setup():
    p = probe(torch="2.13.0+cpu", cuda={"available": False, "version": None},
              nvidia_driver="NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54")
    cuda = by_name(environment_checks(p, "auto"))["cuda"]
    assert not cuda.ok and "has an NVIDIA driver" in cuda.detail and "CPU-only" in cuda.detail
    assert "CUDA" in cuda.fix


def test_a_gpu_that_cannot_compute_fails_with_the_error():
    p = probe(cuda={"available": True, "version": "12.4", "device_name": "RTX 3060",
                    "error": "RuntimeError: CUDA error: no kernel image is available"})
    cuda = by_name(environment_checks(p, "auto"))["cuda"]
    assert not cuda.ok and "RTX 3060" in cuda.detail and "no kernel image" in cuda.detail
    assert "driver" in cuda.fix


def test_missing_torch_libraries_and_old_python_are_named():
    p = probe(python="3.9.1", torch=None, torch_error="ImportError: libcudart.so.12 missing",
              libraries=dict(LIBS, peft=None))
    checks = by_name(environment_checks(p, "auto"))
    assert not checks["python"].ok and "3.11" in checks["python"].fix
    assert not checks["torch"].ok and "libcudart.so.12" in checks["torch"].detail
    assert "cuda" not in checks
    assert not checks["libraries"].ok and checks["libraries"].detail.startswith("Missing: peft")
    assert "pip install peft" in checks["libraries"].fix
    nothing = environment_checks(None, "auto", "it did not finish within 180 s")
    assert len(nothing) == 1 and not nothing[0].ok and "180 s" in nothing[0].detail


def test_disk_checks_pass_on_a_writable_folder_and_leave_nothing(tmp_path):
    data, scratch = tmp_path / "data", tmp_path / "scratch"
    data.mkdir()
    checks = by_name(disk_checks(data, scratch))
    assert checks["disk_space"].ok and "free on the drive of" in checks["disk_space"].detail
    assert checks["disk_write"].ok and str(data) in checks["disk_write"].detail
    assert list(data.iterdir()) == [] and list(scratch.iterdir()) == []


def test_disk_checks_fail_plainly_where_nothing_can_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    checks = by_name(disk_checks(blocker / "data", blocker / "scratch"))
    assert not checks["disk_space"].ok and not checks["disk_write"].ok
    assert str(blocker / "data") in checks["disk_write"].detail
    assert "read-only" in checks["disk_write"].fix


def _safetensors(path: Path, names: list[str]) -> Path:
    header = {n: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
              for i, n in enumerate(names)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4 * len(names))
    return path


def test_lora_check_wants_kohya_keys_with_alphas(tmp_path):
    good = _safetensors(tmp_path / "good.safetensors", [
        "lora_unet_a.lora_down.weight", "lora_unet_a.lora_up.weight", "lora_unet_a.alpha"])
    assert lora_check(str(good)).ok and "1 LoRA modules" in lora_check(str(good)).detail
    diffusers = _safetensors(tmp_path / "d.safetensors", ["unet.a.lora_A.weight"])
    assert not lora_check(str(diffusers)).ok
    assert "kohya layout" in lora_check(str(diffusers)).detail
    (tmp_path / "junk.safetensors").write_bytes(b"12")
    assert "cannot be read" in lora_check(str(tmp_path / "junk.safetensors")).detail
    assert not lora_check(None).ok


def test_sandbox_tidying_and_pruning(tmp_path):
    tmp = tmp_path / "app-tmp"
    root = tmp / "selftest-20260101-000000"
    job = root / "data" / "jobs" / "abc"
    (job / "checkpoints").mkdir(parents=True)
    (job / "lora.safetensors").write_bytes(b"x")
    (root / "assets" / "model" / "unet").mkdir(parents=True)
    (root / "assets" / "model" / "unet" / "w.safetensors").write_bytes(b"x")
    (root / "data" / "isengard.sqlite3").write_bytes(b"x")
    (root / "probe.log").write_text("log")
    remove_sandbox_extras(root, [job, root / "probe.log", root / "model.log"])
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == ["data", "data/jobs", "data/jobs/abc", "data/jobs/abc/checkpoints",
                    "data/jobs/abc/lora.safetensors", "probe.log"]

    for stamp in ("20260101-000001", "20260101-000002", "20260101-000003"):
        (tmp / f"selftest-{stamp}").mkdir()
    (tmp / "unrelated").mkdir()
    removed = prune_old_runs(tmp, keep=3)
    assert removed == [root]
    assert sorted(p.name for p in tmp.iterdir()) == [
        "selftest-20260101-000001", "selftest-20260101-000002", "selftest-20260101-000003",
        "unrelated"]


def test_report_and_json_line():
    result = SelfTestResult(
        ok=False, checks=(Check("torch", True, "PyTorch 2.13"),
                          Check("cuda", False, "No GPU.", "Install the driver.")),
        torch="2.13", device="cpu", first_loss=1.5, last_loss=1.25, steps=10,
        lora="/x/l.safetensors", folder="/x", seconds=3.25, app_version="0.1.0")
    text = result.report_text()
    assert text.splitlines()[0] == "Isengard Desktop 0.1.0 self-test: 1 problem found (3.2 s)"
    assert "  ok      PyTorch     PyTorch 2.13" in text
    assert "  FAILED  GPU (CUDA)  No GPU." in text
    assert "What to do: Install the driver." in text
    assert "Loss: 1.5000 at step 1, 1.2500 at step 10 (on cpu)" in text
    line = result.to_json()
    assert "\n" not in line
    data = json.loads(line)
    assert data["ok"] is False and data["lora"] == "/x/l.safetensors"
    assert data["checks"][1] == {"name": "cuda", "ok": False, "detail": "No GPU.",
                                 "fix": "Install the driver."}
    assert {"torch", "cuda", "device", "first_loss", "last_loss", "steps", "seconds"} <= set(data)
