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

__all__ = ["ComfyInstall", "Discovery", "ModelFolder", "comfy_python", "discover",
           "is_a1111", "is_comfyui", "stability_library", "usual_places"]

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
        source: what made it ("ComfyUI", "Stability Matrix", "ComfyUI portable").
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
        kind: "a1111" (A1111/Forge ``models/Stable-diffusion``) or "stability-matrix"
            (a Stability Matrix library's ``Models``).
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
    def __init__(self, budget: int) -> None:
        self.budget = budget
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
    search = _Search(max_folders)
    places = usual_places(home, env, os_name)
    roots = [*places, *(Path(r) for r in extra_roots)]
    for place in roots:
        search.walk(place, 1)          # the usual places and one level below them
    if _is_dir(home):
        search.walk(home, max_depth)
    return Discovery(tuple(search.comfy.values()), tuple(search.models.values()),
                     (*roots, home), search.truncated)
