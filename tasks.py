#!/usr/bin/env python3
"""The README's two developer commands on any system, Windows included (stdlib only).

    py -3.11 tasks.py run      set up .venv (first time: a few minutes) and start the app
    py -3.11 tasks.py test     set up .venv with the test extra, then ruff, mypy and pytest
                               (offscreen Qt); extra arguments go to pytest

(``python3 tasks.py run`` on Linux and macOS; ``make run`` / ``make test`` do the same there
through bootstrap.sh, which also checks Qt's system libraries.) Run it with the Python that
should own .venv (3.11 is the tested one). ``--dry-run`` prints the steps and runs nothing.

Environment: ``ISENGARD_TORCH_INDEX=<url>`` installs torch from that package index first (a
CUDA build; the version stays the one pinned in pyproject.toml), as bootstrap.sh does.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP_NAME = ".isengard-tasks-stamp"
MIN_PYTHON = (3, 11)


def venv_python(root: Path = VENV, *, windows: bool | None = None) -> Path:
    """The venv's interpreter: Scripts\\python.exe on Windows, bin/python elsewhere."""
    on_windows = os.name == "nt" if windows is None else windows
    return root / "Scripts" / "python.exe" if on_windows else root / "bin" / "python"


def torch_pin(pyproject: str) -> str:
    """The ``torch==X`` requirement pinned in pyproject.toml."""
    match = re.search(r'"(torch==[^";\s]+)"', pyproject)
    if match is None:
        raise SystemExit("tasks.py: no torch pin in pyproject.toml")
    return match.group(1)


def stamp(extras: str, pyproject: str, torch_index: str) -> str:
    """What the installed .venv was made from: reinstall when it changes."""
    text = f"{extras}\n{torch_index}\n{pyproject}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan(command: str, args: list[str], *, windows: bool | None = None,
         env: dict[str, str] | None = None, installed: str = "") -> list[list[str]]:
    """The commands ``command`` runs, in order (the venv's creation is not one of them).
    ``installed``: the stamp of the current .venv ("" when none); the install steps are left
    out when it matches."""
    env = dict(os.environ if env is None else env)
    py = str(venv_python(windows=windows))
    extras = "test" if command == "test" else ""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    torch_index = env.get("ISENGARD_TORCH_INDEX", "")
    steps: list[list[str]] = []
    ready = {stamp(extras, pyproject, torch_index)}
    if command == "run":          # a .venv made for the tests runs the app too
        ready.add(stamp("test", pyproject, torch_index))
    if installed not in ready:
        pip = [py, "-m", "pip", "--no-input", "--disable-pip-version-check", "install"]
        if torch_index:
            steps.append([*pip, "--index-url", torch_index, torch_pin(pyproject)])
        steps.append([*pip, "-e", f"{ROOT}[{extras}]" if extras else str(ROOT)])
    if command == "run":
        steps.append([py, "-m", "isengard_desktop", *args])
    elif command == "test":
        steps += [[py, "-m", "ruff", "check", "."], [py, "-m", "mypy"],
                  [py, "-m", "pytest", "-q", *args]]
    else:
        raise SystemExit(f"tasks.py: unknown command {command!r} (run or test)")
    return steps


def main(argv: list[str]) -> int:
    dry = "--dry-run" in argv
    argv = [a for a in argv if a != "--dry-run"]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    if sys.version_info < MIN_PYTHON:
        print(f"tasks.py: Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed "
              f"(this is {sys.version.split()[0]}); on Windows: py -3.11 tasks.py {command}",
              file=sys.stderr)
        return 1
    stamp_file = VENV / STAMP_NAME
    installed = stamp_file.read_text(encoding="utf-8").strip() if stamp_file.is_file() else ""
    steps = plan(command, args, installed=installed)
    if dry:
        if not venv_python().exists():
            print(f"would create {VENV} with {sys.executable}")
        for step in steps:
            print(subprocess.list2cmdline(step))
        return 0
    if not venv_python().exists():
        print(f"[tasks] creating {VENV}")
        venv.create(VENV, with_pip=True)
    env = dict(os.environ, PYTHONUTF8="1")
    if command == "test":
        env["QT_QPA_PLATFORM"] = "offscreen"
    for step in steps:
        print("[tasks]", subprocess.list2cmdline(step), flush=True)
        code = subprocess.call(step, cwd=ROOT, env=env)
        if code != 0:
            return code
        if "install" in step and "-e" in step:
            stamp_file.write_text(plan_stamp(command), encoding="utf-8")
    return 0


def plan_stamp(command: str) -> str:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return stamp("test" if command == "test" else "", pyproject,
                 os.environ.get("ISENGARD_TORCH_INDEX", ""))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
