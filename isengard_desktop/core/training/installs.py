"""Where the user's external trainers live (ai-toolkit, diffusion-pipe, kohya sd-scripts).

Qt-free. An :class:`ExternalInstall` is the folder of a trainer checkout and the Python
interpreter that runs it; it comes from the user's settings (``Settings.trainer_installs``)
and is handed to the backend when the registry creates it.

* :func:`validate_install` lists exactly what is wrong with an install (folder, script,
  interpreter, platform; with ``deep=True`` also the packages the interpreter lacks — that
  runs the interpreter, so call it off the UI thread).
* :func:`capability_matrix` says what each backend supports on a platform, and why not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..platform_support import run_text

__all__ = ["CapabilityRow", "ExternalInstall", "TRAINER_KINDS", "TrainerKind",
           "capability_matrix", "current_platform", "install_from_settings", "kind_info",
           "platform_problem", "validate_install"]


@dataclass(frozen=True)
class ExternalInstall:
    """An external trainer checkout: its folder and the Python that runs it (absolute paths;
    empty strings mean "not set")."""

    folder: str = ""
    python: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.folder and self.python)


@dataclass(frozen=True)
class TrainerKind:
    """What an external trainer checkout must contain, and where it runs."""

    key: str                        # settings key and registry key
    label: str
    scripts: tuple[str, ...]        # files that must be in the folder
    packages: tuple[str, ...]       # import names its Python must find
    platforms: tuple[str, ...]      # platforms it runs on (see current_platform)
    url: str
    folder_hint: str                # how to recognise the right folder


TRAINER_KINDS: dict[str, TrainerKind] = {
    "ai-toolkit": TrainerKind(
        "ai-toolkit", "ai-toolkit (ostris)", ("run.py",),
        ("torch", "diffusers", "transformers", "safetensors", "yaml", "toolkit"),
        ("linux", "wsl", "windows"), "https://github.com/ostris/ai-toolkit",
        "the ai-toolkit checkout, the folder that holds run.py"),
    "diffusion-pipe": TrainerKind(
        "diffusion-pipe", "diffusion-pipe (tdrussell)", ("train.py",),
        ("torch", "deepspeed", "toml", "diffusers", "transformers", "peft", "safetensors"),
        ("linux", "wsl"), "https://github.com/tdrussell/diffusion-pipe",
        "the diffusion-pipe checkout, the folder that holds train.py"),
    "kohya": TrainerKind(
        "kohya", "kohya sd-scripts", ("train_network.py", "sdxl_train_network.py"),
        ("torch", "accelerate", "diffusers", "transformers", "safetensors", "toml", "library"),
        ("linux", "wsl", "windows"), "https://github.com/kohya-ss/sd-scripts",
        "the sd-scripts checkout, the folder that holds train_network.py (in the kohya_ss "
        "GUI it is its sd-scripts subfolder)"),
}

_PLATFORM_NAMES = {"linux": "Linux", "wsl": "WSL", "windows": "Windows", "macos": "macOS"}


def kind_info(kind: str) -> TrainerKind:
    """The :class:`TrainerKind` for ``kind``; ValueError names the known ones."""
    try:
        return TRAINER_KINDS[kind]
    except KeyError:
        raise ValueError(f"Unknown trainer {kind!r} (known: {', '.join(TRAINER_KINDS)}).") \
            from None


def install_from_settings(installs: dict[str, dict[str, str]], kind: str) -> ExternalInstall:
    """The install of ``kind`` from ``Settings.trainer_installs`` (empty when not set)."""
    values = installs.get(kind) or {}
    return ExternalInstall(folder=str(values.get("folder", "") or "").strip(),
                           python=str(values.get("python", "") or "").strip())


def current_platform() -> str:
    """``"linux"``, ``"wsl"`` (Linux under Windows), ``"windows"`` or ``"macos"``."""
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    try:
        release = Path("/proc/sys/kernel/osrelease").read_text(encoding="ascii").lower()
    except OSError:
        release = ""
    return "wsl" if "microsoft" in release or "wsl" in release else "linux"


def platform_problem(kind: str, platform: str | None = None) -> str:
    """Why ``kind`` cannot run on ``platform`` (default: this one), or ``""``."""
    info = kind_info(kind)
    platform = platform or current_platform()
    if platform in info.platforms:
        return ""
    where = ", ".join(_PLATFORM_NAMES[p] for p in info.platforms if p != "wsl")
    if kind == "diffusion-pipe":
        if platform == "windows":
            return ("diffusion-pipe needs Linux or WSL: it runs through DeepSpeed, which does "
                    "not work on native Windows. Install diffusion-pipe inside WSL 2 and run "
                    "Isengard there, or pick another trainer.")
        return ("diffusion-pipe needs Linux or WSL with an NVIDIA GPU (DeepSpeed and CUDA); "
                f"it does not run on {_PLATFORM_NAMES.get(platform, platform)}.")
    return (f"{info.label} needs an NVIDIA GPU with CUDA (on {where} or WSL); it does not "
            f"run on {_PLATFORM_NAMES.get(platform, platform)}.")


def _interpreter_problem(python: str) -> str:
    path = Path(python).expanduser()
    if not path.is_absolute():
        return f"The Python interpreter must be an absolute path (got {python!r})."
    if not path.exists():
        return f"The Python interpreter {path} does not exist."
    if path.is_dir():
        return (f"{path} is a folder, not a Python interpreter: choose the python file inside "
                f"it (for example {path / 'bin' / 'python'}).")
    if not os.access(path, os.X_OK):
        return f"The Python interpreter {path} is not executable (check its permissions)."
    return ""


_PROBE = ("import importlib.util, json, sys\n"
          "names = sys.argv[1:]\n"
          "missing = []\n"
          "for n in names:\n"
          "    try:\n"
          "        found = importlib.util.find_spec(n) is not None\n"
          "    except Exception:\n"
          "        found = False\n"
          "    if not found:\n"
          "        missing.append(n)\n"
          "print(json.dumps({'version': list(sys.version_info[:3]), 'missing': missing}))\n")

_PIP_NAMES = {"yaml": "PyYAML", "toolkit": None, "library": None}


def _probe_packages(kind: TrainerKind, install: ExternalInstall, timeout_s: float) -> list[str]:
    """Run the interpreter once (cwd = the install folder) to find missing packages."""
    python = str(Path(install.python).expanduser())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        done = run_text([python, "-c", _PROBE, *kind.packages], cwd=install.folder,
                        timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return [f"The Python interpreter {python} did not answer within {timeout_s:.0f} s."]
    except OSError as exc:
        return [f"The Python interpreter {python} failed to run: {exc.strerror or exc}."]
    lines = done.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        tail = (done.stderr.strip() or done.stdout.strip())[-600:]
        return [f"The Python interpreter {python} failed to run (exit code "
                f"{done.returncode})" + (f": {tail}" if tail else ".")]
    problems = []
    version = tuple(report.get("version") or ())
    if version and version < (3, 10):
        problems.append(f"{python} is Python {'.'.join(map(str, version))}; {kind.label} "
                        "needs Python 3.10 or newer.")
    missing = [str(m) for m in report.get("missing") or []]
    local = [m for m in missing if m in _PIP_NAMES and _PIP_NAMES[m] is None]
    installable = [_PIP_NAMES.get(m) or m for m in missing if m not in local]
    if installable:
        problems.append(
            f"{python} lacks the package{'s' if len(installable) > 1 else ''} "
            f"{', '.join(installable)} that {kind.label} needs. Install its requirements "
            f"with that Python: cd {install.folder} && {python} -m pip install -r "
            "requirements.txt")
    for name in local:
        problems.append(f"{python} cannot import {kind.label}'s own module {name!r} from "
                        f"{install.folder}: is this the right folder?")
    return problems


def validate_install(kind: str, install: ExternalInstall, *, deep: bool = False,
                     platform: str | None = None, timeout_s: float = 60.0) -> list[str]:
    """Everything wrong with ``install`` for ``kind``, one plain sentence each; ``[]`` when
    it looks usable.

    The cheap checks (no process is started): platform, folder, scripts, interpreter.
    ``deep`` also runs the interpreter once to find the packages it lacks (a few seconds;
    call it from an executor, never on the UI thread).
    """
    info = kind_info(kind)
    problems: list[str] = []
    why_not = platform_problem(kind, platform)
    if why_not:
        problems.append(why_not)
    folder_ok = False
    if not install.folder.strip():
        problems.append(f"No folder is set for {info.label}: choose {info.folder_hint}.")
    else:
        folder = Path(install.folder).expanduser()
        if not folder.exists():
            problems.append(f"The {info.label} folder {folder} does not exist.")
        elif not folder.is_dir():
            problems.append(f"{folder} is a file, not a folder: choose {info.folder_hint}.")
        else:
            folder_ok = True
            missing = [s for s in info.scripts if not (folder / s).is_file()]
            if missing:
                problems.append(
                    f"{folder} has no {' or '.join(missing)}: it is not {info.folder_hint} "
                    f"(get it from {info.url}).")
                folder_ok = False
    python_ok = False
    if not install.python.strip():
        problems.append(f"No Python interpreter is set for {info.label}: choose the python of "
                        "the environment you installed its requirements in (for example "
                        "venv/bin/python inside its folder).")
    else:
        problem = _interpreter_problem(install.python)
        if problem:
            problems.append(problem)
        else:
            python_ok = True
    if deep and folder_ok and python_ok:
        problems.extend(_probe_packages(info, install, timeout_s))
    return problems


@dataclass(frozen=True)
class CapabilityRow:
    """One backend on one platform: whether it runs, why not, and what it offers."""

    backend: str
    label: str
    supported: bool
    reason: str          # why not ("" when supported)
    samples: str         # sample images during training
    resume: str
    stop: str            # how "Stop & save" works
    models: str          # model families / types


_FEATURES: tuple[tuple[str, str, str, str, str, str], ...] = (
    # key, label, samples, resume, stop & save, models
    ("builtin", "Built-in (diffusers + peft)", "yes", "yes, from the newest checkpoint",
     "saves a checkpoint, then exits", "SD 1.5, SDXL, Flux dev/schnell, Chroma"),
    ("ai-toolkit", "ai-toolkit", "yes (its sample prompts)",
     "yes, from its newest save", "saves the step in progress, then exits",
     "Flux, SDXL, SD 1.5, Chroma and its other architectures"),
    ("diffusion-pipe", "diffusion-pipe", "no (it has no sampling during training)",
     "yes (--resume_from_checkpoint), from its newest DeepSpeed checkpoint",
     "save_quit file: saves a checkpoint, then exits",
     ("Chroma, SDXL, Flux, SD3, HiDream, Lumina 2, Wan, HunyuanVideo, LTX-Video, Cosmos "
      "and more")),
    ("kohya", "kohya sd-scripts", "yes (--sample_prompts)", "yes (--save_state / --resume)",
     "stops at once; resumes from its newest saved state", "SD 1.5, SDXL, Flux"),
)


def capability_matrix(platform: str | None = None) -> list[CapabilityRow]:
    """One row per backend for ``platform`` (default: this one): whether it runs here, the
    exact reason when it does not, and what it supports."""
    platform = platform or current_platform()
    rows = []
    for key, label, samples, resume, stop, models in _FEATURES:
        reason = "" if key == "builtin" else platform_problem(key, platform)
        rows.append(CapabilityRow(key, label, not reason, reason, samples, resume, stop,
                                  models))
    return rows
