"""Launching the managed ComfyUI: checks, the extra-model-paths YAML, the port, the log.

Everything here is plain Python that runs on a worker thread (:func:`plan_launch`) or is
called by :class:`~.comfy_server.ComfyServer` on the main thread (:class:`RotatingLog`). No Qt.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from ...core.discovery import (DESKTOP_ADDRESS, comfy_python, desktop_data_of, in_desktop_app,
                               is_desktop_data)
from ...core.fsutil import atomic_write_text, replace
from ...core.paths import ensure_model_layout

__all__ = ["MODEL_SUBFOLDERS", "LaunchPlan", "LaunchProblem", "RotatingLog", "desktop_hint",
           "find_python", "free_port", "install_upload_node", "plan_launch",
           "write_extra_model_paths"]

# sub-folders of a ComfyUI-style models folder that ComfyUI knows
MODEL_SUBFOLDERS = ("checkpoints", "loras", "vae", "text_encoders", "clip", "diffusion_models",
                    "unet", "clip_vision", "controlnet", "upscale_models", "embeddings",
                    "ipadapter", "style_models", "gligen", "hypernetworks", "photomaker",
                    "vae_approx", "ultralytics", "sams")


class LaunchProblem(Exception):
    """The ComfyUI folder or Python cannot be used; ``str(e)`` says why and what to do."""


@dataclass(frozen=True)
class LaunchPlan:
    program: str
    arguments: tuple[str, ...]
    cwd: str
    port: int
    config: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


_HANDED: dict[int, float] = {}        # port -> when free_port gave it out
_HANDED_LOCK = threading.Lock()
HANDED_FOR_S = 120.0                  # a port given out is not given again for this long


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it), never one handed out in
    the last :data:`HANDED_FOR_S` seconds: several managed servers (one per GPU) plan their
    launches at the same time, each on its own thread, and the port is only taken when
    that ComfyUI binds it."""
    with _HANDED_LOCK:
        now = time.monotonic()
        for port, since in list(_HANDED.items()):
            if now - since > HANDED_FOR_S:
                del _HANDED[port]
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _HANDED:
                break
        _HANDED[port] = now
        return port


def find_python(folder: Path) -> Path | None:
    """ComfyUI's own Python when the folder carries one (venv, portable build)."""
    return comfy_python(folder)


def desktop_hint(folder: Path) -> str:
    """What to do when ``folder`` (which has no main.py) is ComfyUI Desktop's data folder
    (its ``.venv``, ``models`` and ``user`` folders; the ComfyUI code itself ships inside the
    Desktop app, ``resources/ComfyUI``); "" when it does not look like one."""
    if not is_desktop_data(folder):
        return ""
    return (" It looks like the data folder of ComfyUI Desktop, which keeps the ComfyUI code "
            "inside its app (resources/ComfyUI in its install folder). Connect to the running "
            "ComfyUI Desktop by its address instead (shown in its settings, usually "
            f"{DESKTOP_ADDRESS}), or choose its resources/ComfyUI folder with the Python "
            f"of {folder / '.venv'}.")


def write_extra_model_paths(target: Path, lora_folder: Path, models_folder: str = "",
                            app_models: Path | None = None) -> Path:
    """Write ComfyUI's extra-model-paths YAML naming our LoRA folder, the sub-folders of
    ``models_folder`` that exist and, with ``app_models``, the app's own models folder in
    ComfyUI's layout (its sub-folders are created here) atomically; returns ``target``."""
    import yaml

    data: dict[str, dict[str, str]] = {"isengard": {"loras": str(lora_folder)}}
    if models_folder:
        root = Path(models_folder).expanduser()
        subs = {name: str(root / name) for name in MODEL_SUBFOLDERS if (root / name).is_dir()}
        if subs:
            data["isengard_models"] = subs
    if app_models is not None:
        folders = ensure_model_layout(app_models)
        data["isengard_app_models"] = {
            str(f.relative_to(app_models)).replace("/", "_").replace("\\", "_"): str(f)
            for f in folders}
    text = ("# Written by Isengard Desktop for the ComfyUI it starts; rewritten at each start.\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    atomic_write_text(target, text)
    return target


def install_upload_node(root: Path, app_data: Path | None) -> Path | None:
    """Put our LoRA upload node into ``root/custom_nodes`` when that ComfyUI lives inside the
    app's data folder (a ComfyUI Isengard installed and owns); a ComfyUI the user chose is
    never changed. Returns the node folder, or None when nothing was done."""
    if app_data is None:
        return None
    try:
        root.resolve().relative_to(app_data.resolve())
    except ValueError:
        return None
    from ...core.comfy.lora_upload import install_node

    try:
        return install_node(root / "custom_nodes")
    except OSError as exc:     # the server still starts; uploads to it are not needed locally
        logger.warning("could not install the LoRA upload node into {}: {}", root, exc)
        return None


def plan_launch(folder: str, python: str, models_folder: str, lora_folder: Path,
                config: Path, app_models: Path | None = None,
                app_data: Path | None = None) -> LaunchPlan:
    """(worker thread) Check the folder and Python, write the YAML (listing the app's
    models folder ``app_models`` too), pick a port; a ComfyUI inside ``app_data`` (one
    Isengard owns) gets our upload node.
    Raises :class:`LaunchProblem` naming what is wrong and how to fix it."""
    if not folder.strip():
        raise LaunchProblem("No ComfyUI folder is set. Choose the folder that holds ComfyUI's "
                            "main.py in Settings → ComfyUI.")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise LaunchProblem(f"The ComfyUI folder {root} does not exist. Choose the folder "
                            "that holds ComfyUI's main.py in Settings → ComfyUI.")
    if not (root / "main.py").is_file():
        raise LaunchProblem(f"The folder {root} has no main.py, so it is not a ComfyUI "
                            "folder. Choose the ComfyUI folder itself (the one with main.py) "
                            f"in Settings → ComfyUI.{desktop_hint(root)}")
    if python.strip():
        exe = Path(python).expanduser()
        if not exe.exists():
            raise LaunchProblem(f"The Python {exe} does not exist. Choose the Python that "
                                "ComfyUI runs with (often venv/bin/python in its folder) in "
                                "Settings → ComfyUI.")
        if exe.is_dir() or not os.access(exe, os.X_OK):
            raise LaunchProblem(f"{exe} is not a Python program that can be run. Choose the "
                                "python executable ComfyUI runs with in Settings → ComfyUI.")
    else:
        found = find_python(root)
        if found is None:
            raise LaunchProblem("No Python is set for ComfyUI and none was found in "
                                f"{root}/venv. Choose the Python that ComfyUI runs with in "
                                "Settings → ComfyUI.")
        exe = found
    write_extra_model_paths(config, lora_folder, models_folder, app_models)
    install_upload_node(root, app_data)
    port = free_port()
    args: tuple[str, ...] = ("-u", "main.py", "--listen", "127.0.0.1", "--port", str(port),
            "--preview-method", "auto", "--extra-model-paths-config", str(config),
            "--disable-auto-launch")
    data = desktop_data_of(exe) if in_desktop_app(root) else None
    if data is not None:
        # ComfyUI Desktop's code with its data folder's Python: keep user files, inputs and
        # outputs in that data folder as the Desktop app does (Comfy-Org/desktop
        # src/main-process/comfyServer.ts, coreLaunchArgs: user-, input- and
        # output-directory under basePath), never inside the app's own files
        args += ("--user-directory", str(data / "user"), "--input-directory",
                 str(data / "input"), "--output-directory", str(data / "output"))
    return LaunchPlan(str(exe), args, str(root), port, config)


class RotatingLog:
    """Append-only text log capped at ``max_bytes`` with ``backups`` older files."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fh: Any = None
        self._size = 0
        self._failed = False

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 (open while the server runs)
        self._size = self._fh.tell()

    def write(self, text: str) -> None:
        data = text.encode("utf-8", errors="replace")
        try:
            if self._fh is None:
                self._open()
            if self._size + len(data) > self.max_bytes and self._size > 0:
                self._rotate()
            self._fh.write(data)
            self._size += len(data)
        except OSError as exc:   # disk full: say so once, keep the server running
            if not self._failed:
                self._failed = True
                logger.warning("cannot write the ComfyUI log {}: {}", self.path, exc)

    def _rotate(self) -> None:
        self._fh.close()
        for n in range(self.backups, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{n - 1}") if n > 1 else self.path
            if src.exists():
                replace(src, self.path.with_name(f"{self.path.name}.{n}"))  # retried on Windows
        self._open()

    def flush(self) -> None:
        if self._fh is not None:
            try:
                self._fh.flush()
            except OSError:
                pass

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
