"""Check GPU detection against nvidia-smi on a machine with an NVIDIA GPU.

    python benchmarks/gpu/gpu_detection.py

Runs :func:`detect_machine` with the real NVML adapter, asks ``nvidia-smi`` for the same
facts (name, memory, driver, compute capability, the CUDA version in its header) and prints
one JSON line: what was detected, the lock chosen, every mismatch, and how long detection
took. Exit 1 on a mismatch; exit 0 with a note where there is no ``nvidia-smi`` (no NVIDIA
GPU or driver), so it can run anywhere.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from isengard_desktop.core.hardware.gpu import detect_machine  # noqa: E402
from isengard_desktop.core.hardware.locks import choose_lock  # noqa: E402
from isengard_desktop.core.hardware.machine import GpuVendor  # noqa: E402


def smi(*args: str) -> str:
    return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        info = detect_machine(Path(tmp))
        detect_ms = (time.perf_counter() - start) * 1000
    choice = choose_lock(info)
    gpus = [g for g in info.gpus if g.vendor is GpuVendor.NVIDIA]
    result: dict = {
        "detect_ms": round(detect_ms, 1), "lock": choice.device.value, "reason": choice.reason,
        "problem": choice.problem, "notes": list(info.notes), "ram_mb": info.ram_mb,
        "free_disk_mb": info.free_disk_mb,
        "gpus": [{"index": g.index, "name": g.name, "vram_mb": g.vram_mb,
                  "driver": g.driver_version, "cc": g.compute_capability,
                  "cuda": g.cuda_driver_version} for g in gpus],
    }
    if shutil.which("nvidia-smi") is None:
        result.update(ok=True, note="no nvidia-smi here: nothing to compare against")
        print(json.dumps(result))
        return 0
    rows = smi("--query-gpu=index,name,memory.total,driver_version,compute_cap",
               "--format=csv,noheader,nounits").strip().splitlines()
    header = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", smi())
    cuda = (int(header.group(1)), int(header.group(2))) if header else None
    mismatches: list[str] = []
    by_index = {g.index: g for g in gpus}
    for row in rows:
        index, name, memory, driver, cc = (part.strip() for part in row.split(","))
        gpu = by_index.get(int(index))
        if gpu is None:
            mismatches.append(f"GPU {index} ({name}) not detected")
            continue
        major, minor = (int(x) for x in cc.split("."))
        expected = {"name": name, "vram_mb": int(memory), "driver": driver,
                    "cc": (major, minor), "cuda": cuda}
        got = {"name": gpu.name, "vram_mb": gpu.vram_mb, "driver": gpu.driver_version,
               "cc": gpu.compute_capability, "cuda": gpu.cuda_driver_version}
        mismatches += [f"GPU {index} {k}: detected {got[k]!r}, nvidia-smi {v!r}"
                       for k, v in expected.items() if got[k] != v]
    if len(rows) != len(gpus):
        mismatches.append(f"nvidia-smi lists {len(rows)} GPUs, detection {len(gpus)}")
    result.update(ok=not mismatches, mismatches=mismatches)
    print(json.dumps(result))
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
