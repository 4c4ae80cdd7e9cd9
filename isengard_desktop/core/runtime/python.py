"""Which Python runs trainer children, the self-test helpers and external deep checks."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ... import __version__
from ..paths import AppPaths
from .layout import list_runtimes, read_info, read_marker, venv_python
from .status import RuntimeDevice

__all__ = ["ENV_FORCE_RUNTIME", "PythonSource", "TrainerPython", "chosen_device",
           "device_override", "trainer_python"]

# "1": ignore the developer checkout's own torch and use the installed runtime (tests, and a
# developer checking a runtime by hand).
ENV_FORCE_RUNTIME = "ISENGARD_USE_RUNTIME"
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]


class PythonSource(StrEnum):
    CHECKOUT = "checkout"    # a developer checkout: the app's own interpreter has torch
    RUNTIME = "runtime"      # a ready trainer runtime under <data>/runtime/
    NONE = "none"            # nothing can train yet (``problem`` says why)


@dataclass(frozen=True)
class TrainerPython:
    """The interpreter for ``-m isengard_desktop.training_runtime`` children.

    Attributes:
        executable: its path; None when ``source`` is NONE.
        source: where it comes from.
        problem: "" when usable; else one sentence for the user (what to install).
        folder: the runtime folder when ``source`` is RUNTIME.
    """

    executable: Path | None
    source: PythonSource
    problem: str = ""
    folder: Path | None = None

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for a child of this interpreter. A checkout's child finds the
        package through ``PYTHONPATH`` (the source tree first); a runtime's child gets no
        ``PYTHONPATH``/``PYTHONHOME`` at all, so it uses only what the runtime installed
        (a frozen bundle's folders would otherwise shadow the runtime's packages)."""
        env = dict(os.environ if base is None else base)
        if self.source == PythonSource.CHECKOUT:
            root = str(_PACKAGE_ROOT)
            parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in parts if p != root])
        else:
            env.pop("PYTHONPATH", None)
            env.pop("PYTHONHOME", None)
        return env


def device_override(paths: AppPaths) -> RuntimeDevice | None:
    """The trainer build the user chose in Settings → This machine
    (``Settings.runtime_device_override``); None for automatic."""
    from ..settings import load_settings

    try:
        value = load_settings(paths.settings_file).runtime_device_override
        return RuntimeDevice(value) if value else None
    except (OSError, ValueError):
        return None


def _usable(folder: Path) -> bool:
    info = read_info(folder)
    return (read_marker(folder) is None and info is not None and info.verify.ok
            and venv_python(folder).exists())


def _installed(folder: Path) -> float:
    info = read_info(folder)
    return info.installed if info is not None else 0.0


def _version_of(folder: Path) -> str:
    return folder.name.rpartition("-")[0]


def chosen_device(paths: AppPaths) -> RuntimeDevice | None:
    """The device the app uses: the user's override, else that of a usable runtime of this
    version, else of any usable runtime; None when nothing is installed."""
    override = device_override(paths)
    if override is not None:
        return override
    usable = [f for f in list_runtimes(paths) if _usable(f)]
    for folder in usable:
        if _version_of(folder) == __version__:
            return RuntimeDevice(folder.name.rpartition("-")[2])
    if usable:
        return RuntimeDevice(usable[-1].name.rpartition("-")[2])
    return None


def _checkout_has_torch() -> bool:
    if getattr(sys, "frozen", False) or os.environ.get(ENV_FORCE_RUNTIME) == "1":
        return False
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def trainer_python(paths: AppPaths) -> TrainerPython:
    """The interpreter trainer children use: the app's own one on a developer checkout (not
    frozen and ``torch`` findable without importing it), else the ready runtime's. Cheap: reads
    a few small files; never starts a process.

    Among runtimes, the one for this app version and the chosen device wins; while an upgrade
    has not verified yet, the previous version's ready runtime keeps being used."""
    if _checkout_has_torch():
        return TrainerPython(Path(sys.executable), PythonSource.CHECKOUT)
    device = chosen_device(paths)
    folders = list_runtimes(paths)
    usable = [f for f in folders if _usable(f)]
    ranked = sorted(usable, key=lambda f: (
        _version_of(f) == __version__,
        device is not None and f.name.endswith(f"-{device.value}"),
        _installed(f)))
    if ranked:
        best = ranked[-1]
        return TrainerPython(venv_python(best), PythonSource.RUNTIME, folder=best)
    if folders:
        problem = ("The trainer runtime is not ready (its install did not finish or its check "
                   "failed): repair or install it from Help → Set-up assistant → Trainer runtime.")
    else:
        problem = ("Training needs the trainer runtime, which is not installed yet: install it "
                   "from Help → Set-up assistant → Trainer runtime (or the first-run wizard).")
    return TrainerPython(None, PythonSource.NONE, problem)
