"""Build an offline trainer-runtime payload: a folder to copy to a USB stick.

    python packaging/offline_payload.py --device cpu [--lock FILE] [--out dist/offline-cpu]
    make offline-payload DEVICE=cpu

The folder holds ``wheels/`` (every wheel the lock names, hash-checked by pip, plus the app's
own wheel), the lock itself and ``manifest.json`` (sizes and SHA-256 of every file, see
``isengard_desktop/core/runtime/manifest.py``). The app's "Install from a folder" checks the
manifest and installs with ``--no-index``: no network at all.

Needs a network connection (or pip's find-links) for the wheels: run it on a connected machine
with the same operating system and CPU architecture as the target (wheels are per platform).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isengard_desktop.core.runtime.locks import lock_file  # noqa: E402
from isengard_desktop.core.runtime.manifest import write_manifest  # noqa: E402
from isengard_desktop.core.runtime.status import RuntimeDevice  # noqa: E402

__all__ = ["build_app_wheel", "build_payload", "download_wheels"]


def download_wheels(lock: Path, dest: Path) -> None:
    """``pip download`` every wheel of ``lock`` (binary only, no dependency resolution: the
    lock is complete; pip checks each file against the lock's hashes)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "-q", "-r", str(lock), "-d", str(dest)],
                   check=True)


def build_app_wheel(dest: Path) -> Path:
    """The app's own wheel (no dependencies), built from this checkout into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("isengard_desktop-*.whl"))
    for old in before:
        old.unlink()
    build = ROOT / "build" / "app-wheel"
    shutil.rmtree(build, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(build), str(ROOT)],
                   check=True, cwd=ROOT)
    wheel = next(build.glob("isengard_desktop-*.whl"))
    target = dest / wheel.name
    shutil.move(str(wheel), target)
    return target


def _link(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def build_payload(device: RuntimeDevice | str, lock: Path, out: Path,
                  wheelhouse: Path | None = None, app_wheel: Path | None = None) -> Path:
    """Make ``out`` an offline payload for ``lock``. ``wheelhouse``: a folder already holding
    the lock's wheels (linked instead of downloaded); ``app_wheel``: a prebuilt app wheel."""
    device = RuntimeDevice(device)
    if out.exists():
        shutil.rmtree(out)
    wheels = out / "wheels"
    wheels.mkdir(parents=True)
    if wheelhouse is not None:
        for wheel in wheelhouse.glob("*.whl"):
            if not wheel.name.startswith("isengard_desktop-"):
                _link(wheel, wheels / wheel.name)
    else:
        download_wheels(lock, wheels)
    if app_wheel is not None:
        _link(app_wheel, wheels / app_wheel.name)
        built = wheels / app_wheel.name
    else:
        built = build_app_wheel(wheels)
    shutil.copy2(lock, out / lock.name)
    write_manifest(out, device=device, lock_name=lock.name,
                   app_wheel=built.relative_to(out).as_posix())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", required=True, choices=[d.value for d in RuntimeDevice],
                        help="which lock (resources/runtime/<device>.txt)")
    parser.add_argument("--lock", type=Path, help="another lock file (default: the device's)")
    parser.add_argument("--out", type=Path, help="the folder to make (default: "
                                                 "dist/offline-<device>)")
    args = parser.parse_args(argv)
    lock = args.lock or lock_file(args.device)
    if not lock.is_file():
        print(f"no lock file {lock}: see packaging/README.md (trainer runtime locks)",
              file=sys.stderr)
        return 2
    out = args.out or ROOT / "dist" / f"offline-{args.device}"
    began = time.monotonic()
    build_payload(args.device, lock, out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 1e6:,.0f} MB in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
