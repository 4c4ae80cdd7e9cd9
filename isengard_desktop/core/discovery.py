"""Find the ComfyUI installs and model folders other tools already made on this computer, so
the first-run wizard can offer to link them instead of downloading gigabytes again.

Layouts recognised (each checked by what is inside a folder, never by its name alone):

* **ComfyUI**: a folder holding ``main.py``, a ``comfy/`` package and a ``models/`` folder
  (a git checkout, the Windows portable build's ``ComfyUI_windows_portable/ComfyUI``, or a
  Stability Matrix package). Its Python is looked up beside it (venv, portable build).
* **A1111 / Forge**: a folder holding ``webui.py`` or ``launch.py`` and
  ``models/Stable-diffusion/``; that models folder is offered.
* **Stability Matrix**: a library folder holding ``Models/`` and ``settings.json`` or
  ``Packages/`` (``%APPDATA%/StabilityMatrix``, or ``StabilityMatrix/Data`` in portable mode);
  its ``Models/`` folder is offered, and the packages inside are searched for the two above.
* **ComfyUI Desktop** (the Electron app): a data folder holding ``.venv/``, ``models/`` and
  ``user/`` and no ``main.py`` (see :func:`is_desktop_data`), named by the app's config or
  found by the walk. The ComfyUI code ships inside the app (``resources/ComfyUI``); where it is
  found, the install is offered as a ComfyUI (that code + the data folder's ``.venv`` Python +
  its models), else the data folder's ``models/`` is offered with the address to connect to.

The search is bounded: the usual places first, then the home folder down to
:data:`MAX_DEPTH` levels, skipping hidden folders, virtual environments and build trees, and
stopping after :data:`MAX_FOLDERS` folders. It never follows links out of the tree. Pure and
Qt-free; call it off the UI thread (it reads the disk).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DESKTOP_ADDRESS", "DESKTOP_LABEL", "ComfyInstall", "Discovery", "ModelFolder",
           "comfy_python", "desktop_app_code", "desktop_data_folders", "desktop_data_of",
           "discover", "in_desktop_app", "is_a1111", "is_comfyui", "is_desktop_data",
           "stability_library", "usual_places"]

# ComfyUI Desktop serves on this port unless its settings say otherwise
DESKTOP_ADDRESS = "http://127.0.0.1:8000"
DESKTOP_LABEL = f"ComfyUI Desktop (connect by its address, usually {DESKTOP_ADDRESS})"

MAX_DEPTH = 3            # levels below each searched root (~/AI/tools/ComfyUI)
MAX_FOLDERS = 6000       # folders looked at in one search, all roots together
SKIP_NAMES = frozenset({
    "node_modules", "__pycache__", "site-packages", "venv", ".venv", "env", "Library",
    "AppData", "Windows", "Program Files", "Program Files (x86)", "ProgramData", "proc",
    "sys", "dev", "snap", "Pictures", "Music", "Videos", "Movies", "models", "custom_nodes",
    "output", "outputs", "input", "repositories", "extensions",
})


@dataclass(frozen=True)
class ComfyInstall:
    """A ComfyUI checkout.

    Attributes:
        folder: the folder holding ``main.py``.
        models: its ``models/`` folder.
        python: its own Python when one sits beside it (venv, portable build), else None.
        source: what made it ("ComfyUI", "Stability Matrix", "ComfyUI portable",
            "ComfyUI Desktop").
    """

    folder: Path
    models: Path
    python: Path | None = None
    source: str = "ComfyUI"


@dataclass(frozen=True)
class ModelFolder:
    """A folder of model files another tool keeps.

    Attributes:
        folder: the folder to add to Settings → Model folders.
        kind: "a1111" (A1111/Forge ``models/Stable-diffusion``), "stability-matrix"
            (a Stability Matrix library's ``Models``) or "comfyui-desktop" (a ComfyUI Desktop
            data folder's ``models`` whose app code was not found: connect by its address).
        label: what to call it ("Stable Diffusion web UI Forge", "Stability Matrix").
    """

    folder: Path
    kind: str
    label: str


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found (each list without duplicates, in the order found)."""

    comfy: tuple[ComfyInstall, ...] = ()
    model_folders: tuple[ModelFolder, ...] = ()
    searched: tuple[Path, ...] = field(default=(), repr=False)
    truncated: bool = False     # MAX_FOLDERS was reached before the search ended

    @property
    def empty(self) -> bool:
        return not self.comfy and not self.model_folders


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def is_comfyui(folder: Path) -> bool:
    """Whether ``folder`` is a ComfyUI checkout (``main.py`` + ``comfy/`` + ``models/``)."""
    return (_is_file(folder / "main.py") and _is_dir(folder / "comfy")
            and _is_dir(folder / "models"))


def is_a1111(folder: Path) -> bool:
    """Whether ``folder`` is an A1111 or Forge web UI (``webui.py``/``launch.py`` and
    ``models/Stable-diffusion/``)."""
    return ((_is_file(folder / "webui.py") or _is_file(folder / "launch.py"))
            and _is_dir(folder / "models" / "Stable-diffusion"))


def stability_library(folder: Path) -> Path | None:
    """The Stability Matrix library in ``folder`` (itself, or its portable ``Data/``), or
    None. A library holds ``Models/`` and ``settings.json`` or ``Packages/``."""
    for lib in (folder, folder / "Data"):
        if _is_dir(lib / "Models") and (_is_file(lib / "settings.json")
                                        or _is_dir(lib / "Packages")):
            return lib
    return None


def comfy_python(folder: Path) -> Path | None:
    """ComfyUI's own Python when the folder carries one (venv, portable build)."""
    candidates = [folder / "venv" / "bin" / "python", folder / ".venv" / "bin" / "python",
                  folder / "venv" / "Scripts" / "python.exe",
                  folder / ".venv" / "Scripts" / "python.exe",
                  folder.parent / "python_embeded" / "python.exe"]
    return next((c for c in candidates if _is_file(c)), None)


def is_desktop_data(folder: Path) -> bool:
    """Whether ``folder`` is a ComfyUI Desktop data folder: ``.venv/``, ``models/`` and
    ``user/`` and no ``main.py`` (the code lives in the app, not here)."""
    return (all(_is_dir(folder / name) for name in (".venv", "models", "user"))
            and not _is_file(folder / "main.py"))


def _config_base_path(user_data: Path) -> Path | None:
    """The data folder ComfyUI Desktop's config in ``user_data`` names, or None.

    The app keeps ``basePath`` in ``config.json`` (electron-store; Comfy-Org/desktop
    src/store/desktopSettings.ts:4 ``basePath?: string | null``). Installs from before that
    kept it as ``comfyui.base_path`` in ``extra_models_config.yaml`` beside it
    (src/config/extraModelConfig.ts:7 and ``readBasePathFromConfig``), which is read second.
    """
    import json

    try:
        data = json.loads((user_data / "config.json").read_text(encoding="utf-8"))
        base = data.get("basePath") if isinstance(data, dict) else None
        if isinstance(base, str) and base.strip():
            return Path(base.strip()).expanduser()
    except (OSError, ValueError):
        pass
    try:
        import yaml

        text = (user_data / "extra_models_config.yaml").read_text(encoding="utf-8")
        section = (yaml.safe_load(text) or {}).get("comfyui") or {}
        base = section.get("base_path") if isinstance(section, dict) else None
        if isinstance(base, str) and base.strip():
            return Path(base.strip()).expanduser()
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        pass
    return None


def _desktop_user_data(home: Path, env: Mapping[str, str], os_name: str) -> list[Path]:
    # Electron's app.getPath('userData') for the app named "ComfyUI"
    if os_name == "Windows":
        appdata = env.get("APPDATA")
        return [Path(appdata) / "ComfyUI"] if appdata else [
            home / "AppData" / "Roaming" / "ComfyUI"]
    if os_name == "Darwin":
        return [home / "Library" / "Application Support" / "ComfyUI"]
    return [Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "ComfyUI"]


def desktop_data_folders(home: Path, env: Mapping[str, str] | None = None,
                         os_name: str | None = None) -> list[Path]:
    """The ComfyUI Desktop data folders its config names (``basePath``) that exist and look
    like one (:func:`is_desktop_data`)."""
    env = os.environ if env is None else env
    os_name = os_name or platform.system()
    found = [_config_base_path(u) for u in _desktop_user_data(home, env, os_name)]
    return [p for p in dict.fromkeys(f for f in found if f is not None) if is_desktop_data(p)]


def _desktop_app_places(home: Path, env: Mapping[str, str], os_name: str) -> list[Path]:
    # The app's resources folder is Electron's process.resourcesPath (Comfy-Org/desktop
    # src/install/resourcePaths.ts:18-24, getAppResourcesPath), and ComfyUI's main.py is
    # path.join(getAppResourcesPath(), 'ComfyUI', 'main.py') (src/main-process/comfyServer.ts,
    # mainScriptPath). Where electron-builder installs the app:
    if os_name == "Windows":
        local = Path(env["LOCALAPPDATA"]) if env.get("LOCALAPPDATA") else (
            home / "AppData" / "Local")
        return [local / "Programs" / name / "resources" / "ComfyUI"
                for name in ("@comfyorgcomfyui-electron", "ComfyUI", "comfyui-electron")]
    if os_name == "Darwin":
        return [root / "ComfyUI.app" / "Contents" / "Resources" / "ComfyUI"
                for root in (Path("/Applications"), home / "Applications")]
    return []


def desktop_app_code(home: Path, env: Mapping[str, str] | None = None,
                     os_name: str | None = None) -> Path | None:
    """The ComfyUI code inside the installed ComfyUI Desktop app (its ``resources/ComfyUI``,
    holding ``main.py`` and ``comfy/``), or None when it is not found."""
    env = os.environ if env is None else env
    os_name = os_name or platform.system()
    return next((p for p in _desktop_app_places(home, env, os_name)
                 if _is_file(p / "main.py") and _is_dir(p / "comfy")), None)


def in_desktop_app(folder: Path) -> bool:
    """Whether ``folder`` is the ComfyUI code inside an installed Electron app (ComfyUI
    Desktop's ``resources/ComfyUI``, beside the app's ``app.asar``): files there belong to
    the app and are replaced when it updates, so nothing of ours is written into it."""
    return _is_file(folder.parent / "app.asar")


def desktop_data_of(python: Path) -> Path | None:
    """The ComfyUI Desktop data folder whose ``.venv`` holds ``python``
    (``<data>/.venv/bin/python`` or ``<data>/.venv/Scripts/python.exe``), or None."""
    venv = python.parent.parent
    if venv.name != ".venv":
        return None
    return venv.parent if is_desktop_data(venv.parent) else None


def _a1111_label(folder: Path) -> str:
    name = folder.name.lower()
    if "forge" in name or _is_dir(folder / "modules_forge"):
        return "Stable Diffusion web UI Forge"
    return "Stable Diffusion web UI (A1111)"


def usual_places(home: Path, env: Mapping[str, str] | None = None,
                 os_name: str | None = None) -> list[Path]:
    """Where installs usually are on ``os_name`` ("Linux", "Windows", "Darwin"), checked
    before the home folder is walked. Only folders that exist are returned."""
    env = os.environ if env is None else env
    os_name = os_name or platform.system()
    places = [home / "ComfyUI", home / "Documents" / "ComfyUI", home / "comfyui",
              home / "stable-diffusion-webui", home / "stable-diffusion-webui-forge",
              home / "StabilityMatrix", home / "StabilityMatrix" / "Data"]
    if os_name == "Windows":
        for var in ("APPDATA", "LOCALAPPDATA"):
            if env.get(var):
                places.append(Path(env[var]) / "StabilityMatrix")
        places += [home / "Desktop" / "ComfyUI_windows_portable" / "ComfyUI",
                   home / "Downloads" / "ComfyUI_windows_portable" / "ComfyUI",
                   Path("C:/ComfyUI_windows_portable/ComfyUI"), Path("C:/ComfyUI"),
                   Path("C:/StabilityMatrix/Data")]
    elif os_name == "Darwin":
        places += [home / "Library" / "Application Support" / "StabilityMatrix",
                   Path("/Applications/StabilityMatrix/Data")]
    else:
        xdg_config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        xdg_data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
        places += [xdg_config / "StabilityMatrix", xdg_data / "StabilityMatrix"]
    return [p for p in dict.fromkeys(places) if _is_dir(p)]


class _Search:
    def __init__(self, budget: int, desktop_code: Path | None = None) -> None:
        self.budget = budget
        self.desktop_code = desktop_code
        self.truncated = False
        self.comfy: dict[Path, ComfyInstall] = {}
        self.models: dict[Path, ModelFolder] = {}
        self.seen: set[Path] = set()

    def look(self, folder: Path, source: str = "") -> bool:
        """Check one folder for every layout; True when it was one (do not descend)."""
        if is_comfyui(folder):
            portable = _is_file(folder.parent / "python_embeded" / "python.exe")
            self.comfy.setdefault(folder, ComfyInstall(
                folder, folder / "models", comfy_python(folder),
                source or ("ComfyUI portable" if portable else "ComfyUI")))
            return True
        if is_desktop_data(folder):
            self.desktop(folder)
            return True
        if is_a1111(folder):
            target = folder / "models" / "Stable-diffusion"
            self.models.setdefault(target, ModelFolder(target, "a1111", _a1111_label(folder)))
            return True
        lib = stability_library(folder)
        if lib is not None:
            target = lib / "Models"
            self.models.setdefault(target, ModelFolder(target, "stability-matrix",
                                                       "Stability Matrix"))
            packages = lib / "Packages"
            for child in self._children(packages):
                self.look(child, "Stability Matrix")
            return True
        return False

    def desktop(self, data: Path) -> None:
        """A ComfyUI Desktop data folder: a ComfyUI to launch when the app's code was found,
        else its models folder with the address to connect to."""
        models = data / "models"
        if self.desktop_code is not None:
            self.comfy.setdefault(data, ComfyInstall(self.desktop_code, models,
                                                     comfy_python(data), "ComfyUI Desktop"))
        else:
            self.models.setdefault(models, ModelFolder(models, "comfyui-desktop",
                                                       DESKTOP_LABEL))

    def _children(self, folder: Path) -> list[Path]:
        try:
            with os.scandir(folder) as entries:
                out = []
                for entry in entries:
                    if entry.name.startswith(".") or entry.name in SKIP_NAMES:
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            out.append(Path(entry.path))
                    except OSError:
                        continue
                return sorted(out)
        except OSError:
            return []

    def walk(self, root: Path, depth: int) -> None:
        """Breadth-first below ``root`` down to ``depth`` levels, within the budget."""
        level = [root]
        for _ in range(depth + 1):
            below: list[Path] = []
            for folder in level:
                key = folder.resolve() if folder.is_symlink() else folder
                if key in self.seen:
                    continue
                self.seen.add(key)
                if self.budget <= 0:
                    self.truncated = True
                    return
                self.budget -= 1
                if not self.look(folder):
                    below.extend(self._children(folder))
            level = below
            if not level:
                return


def discover(home: Path | None = None, extra_roots: Iterable[Path] = (), *,
             env: Mapping[str, str] | None = None, os_name: str | None = None,
             max_depth: int = MAX_DEPTH, max_folders: int = MAX_FOLDERS) -> Discovery:
    """Look for ComfyUI installs, A1111/Forge model folders and Stability Matrix libraries in
    the usual places, ``extra_roots`` and under ``home`` (default: the user's home), bounded
    by ``max_depth`` and ``max_folders``."""
    home = Path.home() if home is None else home
    env = os.environ if env is None else env
    os_name = os_name or platform.system()
    search = _Search(max_folders, desktop_app_code(home, env, os_name))
    for data in desktop_data_folders(home, env, os_name):
        search.desktop(data)
        search.seen.add(data)
    places = usual_places(home, env, os_name)
    roots = [*places, *(Path(r) for r in extra_roots)]
    for place in roots:
        search.walk(place, 1)          # the usual places and one level below them
    if _is_dir(home):
        search.walk(home, max_depth)
    return Discovery(tuple(search.comfy.values()), tuple(search.models.values()),
                     (*roots, home), search.truncated)
