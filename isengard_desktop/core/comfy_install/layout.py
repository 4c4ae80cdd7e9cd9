"""The managed ComfyUI's folders and what they say about themselves.

::

    <data>/comfyui/
        archives/<archive>           downloaded release archives (kept for a retry)
        <tag>/
            .incomplete              written first, removed last (the trainer runtime's rules:
                                     core.runtime.layout write_marker/read_marker/clear_marker)
            ComfyUI/                 the release's source (main.py …, custom_nodes/)
            venv/                    its own uv environment (the trainer's device lock, then
                                     ComfyUI's requirements; see resources/comfyui/release.toml)
            constraints.txt          the lock's pins, used while installing the requirements
            comfy_install.json       tag, commit, device, lock sha256, installed, source, verify

:func:`inspect_install` reads those files (nothing is started) and says which
:class:`~..runtime.status.RuntimeState` the install is in: the same states and marker rules as
the trainer runtime.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_text
from ..paths import AppPaths
from ..runtime.layout import MARKER_NAME, read_marker, venv_python, write_marker
from ..runtime.locks import lock_sha256
from ..runtime.status import RuntimeDevice, RuntimeState
from .release import ComfyRelease

__all__ = ["INFO_NAME", "ComfyInstallInfo", "ComfyInstallStatus", "ComfyVerify",
           "archives_dir", "comfy_dir", "comfy_root", "inspect_install", "install_folder",
           "list_installs", "read_install_info", "remove_install", "write_install_info"]

INFO_NAME = "comfy_install.json"
SOURCE_NAME = "ComfyUI"


def comfy_root(paths: AppPaths) -> Path:
    return paths.data / "comfyui"


def archives_dir(paths: AppPaths) -> Path:
    return comfy_root(paths) / "archives"


def install_folder(paths: AppPaths, tag: str) -> Path:
    return comfy_root(paths) / tag


def comfy_dir(folder: Path) -> Path:
    """The ComfyUI source inside an install folder (the folder with main.py)."""
    return folder / SOURCE_NAME


@dataclass(frozen=True)
class ComfyVerify:
    """The last check: ComfyUI started and ``/object_info`` listed every node class we need."""

    ok: bool
    problem: str = ""
    missing_nodes: tuple[str, ...] = ()
    node_count: int = 0
    checked: float = 0.0


@dataclass(frozen=True)
class ComfyInstallInfo:
    tag: str
    commit: str
    device: RuntimeDevice
    lock_sha256: str
    installed: float
    source: str = "online"
    verify: ComfyVerify = field(default_factory=lambda: ComfyVerify(ok=False))
    packs: tuple[str, ...] = ()          # custom-node packs installed, "name@commit"

    def as_dict(self) -> dict[str, Any]:
        v = self.verify
        return {"format": 1, "tag": self.tag, "commit": self.commit, "device": self.device.value,
                "lock_sha256": self.lock_sha256, "installed": self.installed,
                "source": self.source, "packs": list(self.packs),
                "verify": {"ok": v.ok, "problem": v.problem,
                           "missing_nodes": list(v.missing_nodes),
                           "node_count": v.node_count, "checked": v.checked}}


def write_install_info(folder: Path, info: ComfyInstallInfo) -> None:
    atomic_write_text(folder / INFO_NAME, json.dumps(info.as_dict(), indent=2))


def read_install_info(folder: Path) -> ComfyInstallInfo | None:
    try:
        data = json.loads((folder / INFO_NAME).read_text(encoding="utf-8"))
        v = data.get("verify") or {}
        return ComfyInstallInfo(
            tag=str(data["tag"]), commit=str(data.get("commit", "")),
            device=RuntimeDevice(data["device"]), lock_sha256=str(data.get("lock_sha256", "")),
            installed=float(data.get("installed", 0.0)), source=str(data.get("source", "")),
            packs=tuple(str(p) for p in data.get("packs", [])),
            verify=ComfyVerify(ok=bool(v.get("ok")), problem=str(v.get("problem", "")),
                               missing_nodes=tuple(str(n) for n in v.get("missing_nodes", [])),
                               node_count=int(v.get("node_count", 0)),
                               checked=float(v.get("checked", 0.0))))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def list_installs(paths: AppPaths) -> list[Path]:
    """Install folders under ``<data>/comfyui`` (those with an info file or a marker)."""
    root = comfy_root(paths)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir()
                  and ((p / INFO_NAME).exists() or (p / MARKER_NAME).exists()))


def remove_install(folder: Path) -> None:
    """Delete an install folder; the marker goes back first so a half-deleted folder reads as
    incomplete, never as ready."""
    if folder.exists():
        write_marker(folder, "being removed")
        shutil.rmtree(folder / "venv", ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class ComfyInstallStatus:
    """Where the managed ComfyUI stands.

    Attributes:
        state: the trainer runtime's states (MISSING … OUTDATED).
        tag: the release it is (or would be) — the pinned one.
        folder: ``<data>/comfyui/<tag>``.
        comfy: the folder with main.py when READY (or an older ready one when OUTDATED).
        python: its venv's interpreter when usable.
        installed_tag / commit: what is installed and usable now ("" when nothing).
        problem: "" when ready, else one sentence saying what is wrong and what to do.
    """

    state: RuntimeState
    tag: str
    folder: Path
    comfy: Path | None = None
    python: Path | None = None
    installed_tag: str = ""
    commit: str = ""
    problem: str = ""
    checked: float = 0.0


def inspect_install(paths: AppPaths, release: ComfyRelease, device: RuntimeDevice,
                    lock: Path) -> ComfyInstallStatus:
    """The state of the managed ComfyUI for ``release`` (reads files only)."""
    folder = install_folder(paths, release.tag)
    if not folder.is_dir():
        older = [p for p in list_installs(paths) if p != folder]
        usable = [(p, i) for p in older if (i := read_install_info(p)) is not None
                  and i.verify.ok and read_marker(p) is None]
        if usable:
            old, old_info = usable[-1]
            return ComfyInstallStatus(
                RuntimeState.OUTDATED, release.tag, folder, comfy=comfy_dir(old),
                python=venv_python(old), installed_tag=old_info.tag, commit=old_info.commit,
                problem=(f"ComfyUI {old_info.tag} is installed; Update installs {release.tag} "
                         "beside it and removes the old one once the new one works."))
        return ComfyInstallStatus(RuntimeState.MISSING, release.tag, folder, problem=(
            "ComfyUI is not installed by Isengard yet: use “Install ComfyUI for me” in "
            "Settings → ComfyUI (or the first-run wizard)."))
    marker = read_marker(folder)
    if marker is not None:
        error = str(marker.get("error") or "")
        return ComfyInstallStatus(RuntimeState.INCOMPLETE, release.tag, folder, problem=(
            f"The ComfyUI install did not finish{': ' + error if error else ''}. Install "
            "again to continue where it stopped."))
    info = read_install_info(folder)
    python = venv_python(folder)
    comfy = comfy_dir(folder)
    if info is None:
        return ComfyInstallStatus(RuntimeState.BROKEN, release.tag, folder, problem=(
            f"{folder / INFO_NAME} is missing or unreadable; install ComfyUI again."))
    if not python.exists() or not (comfy / "main.py").is_file():
        what = python if not python.exists() else comfy / "main.py"
        return ComfyInstallStatus(RuntimeState.BROKEN, release.tag, folder,
                                  installed_tag=info.tag, problem=(
            f"The managed ComfyUI lacks {what}; install it again (Repair)."))
    current = lock_sha256(lock) if lock.exists() else ""
    if info.device != device or (current and info.lock_sha256 != current):
        return ComfyInstallStatus(
            RuntimeState.OUTDATED, release.tag, folder, comfy=comfy, python=python,
            installed_tag=info.tag, commit=info.commit, checked=info.verify.checked,
            problem=(f"The managed ComfyUI was made for the {info.device.value} build of "
                     "PyTorch or an older lock; Update makes it match the trainer's."))
    if not info.verify.ok:
        return ComfyInstallStatus(RuntimeState.BROKEN, release.tag, folder, comfy=comfy,
                                  python=python, installed_tag=info.tag, commit=info.commit,
                                  checked=info.verify.checked, problem=(
            info.verify.problem or "The managed ComfyUI has not passed its check; install it "
                                   "again."))
    return ComfyInstallStatus(RuntimeState.READY, release.tag, folder, comfy=comfy,
                              python=python, installed_tag=info.tag, commit=info.commit,
                              checked=info.verify.checked)
