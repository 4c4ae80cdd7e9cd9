"""The trainer runtime's folders and what they say about themselves.

::

    <data>/runtime/
        cache/                       uv's cache (downloads survive a cancel or a failure)
        <app version>-<device>/
            .incomplete              written first, removed last (JSON: started, last error)
            venv/                    the environment uv makes
            runtime.json             app version, device, lock sha256, installed, verify

:func:`inspect` reads those files (no process is started) and says which
:class:`~.status.RuntimeState` a folder is in.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import __version__
from ..fsutil import atomic_write_text
from ..paths import AppPaths
from .locks import lock_file, lock_sha256
from .status import RuntimeDevice, RuntimeState, RuntimeStatus

__all__ = ["INFO_NAME", "MARKER_NAME", "RuntimeInfo", "VerifyResult", "cache_dir", "clear_marker",
           "inspect", "list_runtimes", "read_info", "read_marker", "remove_runtime",
           "runtime_folder", "runtime_root", "venv_python", "write_info", "write_marker"]

INFO_NAME = "runtime.json"
MARKER_NAME = ".incomplete"
VENV_NAME = "venv"
INFO_FORMAT = 1


def runtime_root(paths: AppPaths) -> Path:
    return paths.data / "runtime"


def cache_dir(paths: AppPaths) -> Path:
    """uv's cache: kept across cancelled and failed installs so a retry downloads nothing twice."""
    return runtime_root(paths) / "cache"


def runtime_folder(paths: AppPaths, device: RuntimeDevice | str,
                   version: str = __version__) -> Path:
    return runtime_root(paths) / f"{version}-{RuntimeDevice(device).value}"


def venv_python(folder: Path) -> Path:
    """The runtime's interpreter (it may not exist yet)."""
    venv = folder / VENV_NAME
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


@dataclass(frozen=True)
class VerifyResult:
    """What the last verify found: ``ok``, else ``problem`` (one sentence); ``torch`` and
    ``device_name`` as the probe printed them."""

    ok: bool
    problem: str = ""
    torch: str = ""
    device_name: str = ""
    checked: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problem": self.problem, "torch": self.torch,
                "device_name": self.device_name, "checked": self.checked}


@dataclass(frozen=True)
class RuntimeInfo:
    """``runtime.json``: what a runtime was made from and how its last verify went."""

    app_version: str
    device: RuntimeDevice
    lock_sha256: str
    installed: float
    verify: VerifyResult = field(default_factory=lambda: VerifyResult(ok=False))
    source: str = ""          # "online" or the offline folder it came from

    def as_dict(self) -> dict[str, Any]:
        return {"format": INFO_FORMAT, "app_version": self.app_version,
                "device": self.device.value, "lock_sha256": self.lock_sha256,
                "installed": self.installed, "source": self.source,
                "verify": self.verify.as_dict()}


def write_info(folder: Path, info: RuntimeInfo) -> None:
    atomic_write_text(folder / INFO_NAME, json.dumps(info.as_dict(), indent=2))


def read_info(folder: Path) -> RuntimeInfo | None:
    """``runtime.json`` of ``folder``; None when missing or unreadable."""
    try:
        data = json.loads((folder / INFO_NAME).read_text(encoding="utf-8"))
        verify = data.get("verify") or {}
        return RuntimeInfo(
            app_version=str(data["app_version"]), device=RuntimeDevice(data["device"]),
            lock_sha256=str(data.get("lock_sha256", "")),
            installed=float(data.get("installed", 0.0)), source=str(data.get("source", "")),
            verify=VerifyResult(ok=bool(verify.get("ok")), problem=str(verify.get("problem", "")),
                                torch=str(verify.get("torch", "")),
                                device_name=str(verify.get("device_name", "")),
                                checked=float(verify.get("checked", 0.0))))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_marker(folder: Path, error: str = "") -> None:
    """Write (or update) the ``.incomplete`` marker; ``error`` is the last failure, if any."""
    folder.mkdir(parents=True, exist_ok=True)
    previous = read_marker(folder) or {}
    data = {"started": previous.get("started", time.time()), "error": error}
    atomic_write_text(folder / MARKER_NAME, json.dumps(data))


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker's content; None when there is no marker ({} when it is unreadable)."""
    path = folder / MARKER_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def clear_marker(folder: Path) -> None:
    (folder / MARKER_NAME).unlink(missing_ok=True)


def remove_runtime(folder: Path) -> None:
    """Delete a runtime folder: the marker goes back first so a half-deleted folder reads as
    incomplete, never as ready."""
    if folder.exists():
        write_marker(folder, "being removed")
        shutil.rmtree(folder / VENV_NAME, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


def list_runtimes(paths: AppPaths) -> list[Path]:
    """Every ``<version>-<device>`` folder under ``<data>/runtime`` (newest name last)."""
    root = runtime_root(paths)
    if not root.is_dir():
        return []
    devices = {d.value for d in RuntimeDevice}
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and p.name.rpartition("-")[2] in devices
                  and p.name.rpartition("-")[0])


def inspect(paths: AppPaths, device: RuntimeDevice | str, version: str = __version__,
            lock: Path | None = None) -> RuntimeStatus:
    """The state of the runtime for ``device`` and app ``version`` (default: this app).

    MISSING: no folder (``problem`` mentions a runtime of another version when there is one,
    and the state is then OUTDATED); INCOMPLETE: the marker is there; BROKEN: no interpreter,
    no ``runtime.json`` or a failed verify; OUTDATED: made for another app version or lock;
    READY otherwise. Reads files only."""
    device = RuntimeDevice(device)
    folder = runtime_folder(paths, device, version)
    lock = lock_file(device) if lock is None else lock
    if not folder.is_dir():
        older = [p for p in list_runtimes(paths)
                 if p.name.endswith(f"-{device.value}") and p != folder]
        if older:
            return RuntimeStatus(RuntimeState.OUTDATED, device, folder, problem=(
                f"The trainer runtime in {older[-1].name} was made for another version of the "
                f"app; install the one for version {version}."))
        return RuntimeStatus(RuntimeState.MISSING, device, folder, problem=(
            "The trainer runtime is not installed yet: install it from Help → Set-up "
            "assistant → Trainer runtime (or `isengard runtime install`)."))
    marker = read_marker(folder)
    if marker is not None:
        error = str(marker.get("error") or "")
        return RuntimeStatus(RuntimeState.INCOMPLETE, device, folder, problem=(
            f"The trainer runtime's install did not finish{': ' + error if error else ''}. "
            "Install it again to continue where it stopped."))
    python = venv_python(folder)
    info = read_info(folder)
    if info is None:
        return RuntimeStatus(RuntimeState.BROKEN, device, folder, problem=(
            f"{folder / INFO_NAME} is missing or unreadable; repair or reinstall the trainer "
            "runtime."))
    if not python.exists():
        return RuntimeStatus(RuntimeState.BROKEN, device, folder, problem=(
            f"The trainer runtime's Python ({python}) is missing; repair the trainer runtime."))
    current = lock_sha256(lock) if lock.exists() else ""
    if info.app_version != version or (current and info.lock_sha256 != current):
        what = (f"app version {info.app_version}" if info.app_version != version
                else "an older lock file")
        return RuntimeStatus(RuntimeState.OUTDATED, device, folder, python=python, problem=(
            f"The trainer runtime was made for {what}; install the new one."))
    if not info.verify.ok:
        return RuntimeStatus(RuntimeState.BROKEN, device, folder, python=python, problem=(
            info.verify.problem or "The trainer runtime has not passed its check yet; verify "
            "or repair it."))
    return RuntimeStatus(RuntimeState.READY, device, folder, python=python)
