"""The self-test's child-side helpers (they need torch, so they never run in the app).

    python -m isengard_desktop.training_runtime probe
    python -m isengard_desktop.training_runtime make-selftest-model <folder>

``probe`` prints one JSON object on stdout describing Python, PyTorch, CUDA and the training
libraries; it never fails (what could not be found or loaded is reported as an error string).
``make-selftest-model`` writes a tiny random SD1.5-like model (``<folder>/model``) and a
small captioned dataset (``<folder>/dataset``) and prints ``{"model": ..., "dataset": ...}``.
Everything else (warnings, progress bars) goes to stderr.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REQUIRED = ("diffusers", "transformers", "peft", "safetensors")
OPTIONAL = ("bitsandbytes", "torchao")


def _version(name: str) -> str | None:
    """The installed version of ``name`` (metadata only: nothing is imported)."""
    if importlib.util.find_spec(name) is None:
        return None
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def nvidia_driver() -> str | None:
    """The NVIDIA driver's description if one is installed on this machine, else None."""
    if sys.platform == "win32":
        # the driver installs its CUDA library (and nvidia-smi) into System32
        system32 = Path(os.environ.get("SYSTEMROOT", r"C:\Windows")) / "System32"
        if (system32 / "nvcuda.dll").is_file():
            return "NVIDIA driver (nvcuda.dll found)"
    proc = Path("/proc/driver/nvidia/version")
    if proc.is_file():
        try:
            return proc.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
        except (OSError, IndexError):
            return "NVIDIA driver"
    if shutil.which("nvidia-smi"):
        return "NVIDIA driver (nvidia-smi found)"
    return None


def _cuda_info(torch: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"available": False, "version": torch.version.cuda,
                            "device_name": None, "vram_total": None, "vram_free": None,
                            "bf16": None, "error": None}
    try:
        info["available"] = bool(torch.cuda.is_available())
    except Exception as exc:  # noqa: BLE001 - a broken driver is a finding, not a crash
        info["error"] = f"{type(exc).__name__}: {exc}"
        return info
    if not info["available"]:
        return info
    try:
        index = torch.cuda.current_device()
        info["device_name"] = torch.cuda.get_device_name(index)
        info["device_count"] = torch.cuda.device_count()
        free, total = torch.cuda.mem_get_info(index)
        info["vram_total"], info["vram_free"] = int(total), int(free)
        info["bf16"] = bool(torch.cuda.is_bf16_supported())
        # A real kernel: "available" alone does not prove that the GPU can compute.
        a = torch.ones(64, 64, device="cuda")
        value = float((a @ a).sum().item())
        torch.cuda.synchronize()
        if value != 64.0 * 64 * 64:
            info["error"] = f"a test multiplication on the GPU gave {value}, not {64 ** 3}"
    except Exception as exc:  # noqa: BLE001
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def probe() -> dict[str, Any]:
    """What this Python can train with. Imports torch (and nothing heavier)."""
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(terse=True),
        "torch": None, "torch_error": None,
        "cuda": {"available": False, "version": None, "device_name": None, "vram_total": None,
                 "vram_free": None, "bf16": None, "error": None},
        "nvidia_driver": nvidia_driver(),
        "libraries": {name: _version(name) for name in REQUIRED},
        "optional": {name: _version(name) for name in OPTIONAL},
    }
    began = time.monotonic()
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        out["torch_error"] = f"{type(exc).__name__}: {exc}"
        return out
    out["torch"] = torch.__version__
    out["torch_import_s"] = round(time.monotonic() - began, 2)
    out["cpu_threads"] = torch.get_num_threads()
    out["cuda"] = _cuda_info(torch)
    return out


def make_selftest_model(folder: Path) -> dict[str, str]:
    """Write the tiny model and dataset under ``folder``; return their paths."""
    from . import tiny_models as tiny

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny.build_sd15(folder / "model")
    dataset = tiny.make_dataset(folder / "dataset", count=4, size=(64, 64))
    return {"model": str(model), "dataset": str(dataset)}


def main(command: str, folder: Path | None = None) -> int:
    """Run one helper; exactly one JSON line goes to stdout, the rest to stderr."""
    real_stdout = sys.stdout
    # Libraries may print to stdout (progress bars, notices): keep stdout for our one line.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            if command == "probe":
                result: dict[str, Any] = probe()
            else:
                assert folder is not None
                result = make_selftest_model(folder)
            code = 0
        except Exception as exc:  # noqa: BLE001 - reported as JSON, traceback on stderr
            import traceback

            traceback.print_exc(file=sys.stderr)
            result = {"error": f"{type(exc).__name__}: {exc}"}
            code = 1
    real_stdout.write(json.dumps(result) + "\n")
    real_stdout.flush()
    return code
