"""Regenerate the trainer runtime's lock files (``make locks``).

Compiles, with ``uv pip compile --generate-hashes``, the locks whose wheels the reachable
package index serves (see ``resources/runtime/locks.toml``; entries with ``compiled = true``):

* ``cpu.txt``   Linux x86_64, torch ``2.13.0+cpu`` from the local wheel folder (``WHEELS``,
  default ``/opt/wheels``; uv does not read pip's configuration, so it is passed explicitly),
  everything else from PyPI.
* ``cu130.txt`` Linux x86_64, PyPI's default torch 2.13.0 wheel (built with CUDA 13.0).
* ``mps.txt``   macOS arm64, PyPI's macOS wheel (Metal / MPS).
* ``cpu-windows.txt`` Windows x86_64, PyPI's torch 2.13.0 (the CPU build on Windows).

The app's own pins (pyproject.toml) are written to ``app-pins.txt`` and used as constraints,
so packages the runtime shares with the app (PyYAML, numpy, …) get the versions the app is
tested with. cu126 and ROCm builds are served only by PyTorch's own indexes, which cannot be
reached here: their entries in locks.toml hold the index and pins with ``compiled = false``.

Run with the dev venv's Python (it holds the pinned ``uv``): ``.venv/bin/python
packaging/compile_locks.py [device ...]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = Path("resources/runtime")           # relative: the locks' "via" comments stay portable
PYPI = "https://pypi.org/simple"
PYTHON_VERSION = "3.11"

# PyPI's torch 2.13.0 macOS wheel is macosx_14_0_arm64; uv targets macOS 13 unless told.
MACOS_TARGET = "14.0"

# device -> (uv --python-platform, extra uv arguments)
COMPILED: dict[str, tuple[str, list[str]]] = {
    "cpu": ("x86_64-manylinux_2_28", ["--find-links", "{wheels}",
                                      "--constraint", str(RUNTIME / "cpu-torch.txt")]),
    "cu130": ("x86_64-manylinux_2_28", []),
    "mps": ("aarch64-apple-darwin", []),
    # Windows: PyPI's torch 2.13.0 win_amd64 wheel is the CPU build (its version.py says +cpu)
    "cpu-windows": ("x86_64-pc-windows-msvc", []),
}


def app_pins() -> list[str]:
    """Every ``name==version`` in pyproject's dependencies (comments and markers dropped)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [dep.split(";")[0].strip() for dep in data["project"]["dependencies"]
            if "==" in dep and not dep.startswith("torch==")]


def compile_lock(device: str, wheels: str) -> None:
    platform, extra = COMPILED[device]
    cmd = [sys.executable, "-m", "uv", "pip", "compile", str(RUNTIME / "requirements.in"),
           "--generate-hashes", "--no-header", "--quiet", "--index-url", PYPI,
           "--python-version", PYTHON_VERSION, "--python-platform", platform,
           "--constraint", str(RUNTIME / "app-pins.txt"),
           *[arg.format(wheels=wheels) for arg in extra],
           "--output-file", str(RUNTIME / f"{device}.txt")]
    print("+", " ".join(cmd), flush=True)
    env = {**os.environ, "MACOSX_DEPLOYMENT_TARGET": MACOS_TARGET}
    subprocess.run(cmd, cwd=ROOT, check=True, env=env)


def main(argv: list[str]) -> int:
    wheels = os.environ.get("WHEELS", "/opt/wheels")
    devices = argv or list(COMPILED)
    unknown = [d for d in devices if d not in COMPILED]
    if unknown:
        print(f"cannot compile {', '.join(unknown)} here (known: {', '.join(COMPILED)}); "
              "see resources/runtime/locks.toml", file=sys.stderr)
        return 2
    (ROOT / RUNTIME / "app-pins.txt").write_text(
        "# The app's pins (pyproject.toml), used as constraints by `make locks`. Generated.\n"
        + "\n".join(app_pins()) + "\n", encoding="utf-8")
    for device in devices:
        try:
            compile_lock(device, wheels)
        except subprocess.CalledProcessError as exc:
            print(f"the {device} lock could not be compiled (uv exit {exc.returncode})",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
