"""Light checks of the developer entry points: bootstrap.sh, the Makefile and the CI script.

Fast and offline: nothing here creates a venv or installs anything.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "bootstrap.sh"

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _make_recipe(target: str) -> str:
    """The recipe lines of one Makefile target (tab-indented lines after 'target:')."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    recipe: list[str] = []
    inside = False
    for line in lines:
        if re.match(rf"^{re.escape(target)}\s*:(?!=)", line):
            inside = True
            continue
        if inside:
            if line.startswith("\t"):
                recipe.append(line.strip())
            elif line.strip() and not line.startswith("#"):
                break
    return "\n".join(recipe)


@needs_bash
def test_bootstrap_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(BOOTSTRAP)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr


def test_ci_script_runs_the_readme_test_command() -> None:
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    commands = [ln.strip() for ln in text.splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands[-1] == "make test"


def test_make_test_bootstraps_and_runs_pytest_offscreen() -> None:
    recipe = _make_recipe("test")
    assert "bootstrap.sh --test" in recipe
    assert re.search(r"-m pytest\b", recipe), recipe
    assert "QT_QPA_PLATFORM=offscreen" in recipe
    assert "$(PYTEST_ARGS)" in recipe
    # Nothing may swallow pytest's exit code (5 = no tests collected must fail).
    assert "|| true" not in recipe and "; true" not in recipe
    assert not any(line.startswith(("-", "@-")) for line in recipe.splitlines())  # make's ignore-errors


def test_make_run_bootstraps_and_launches_the_package() -> None:
    recipe = _make_recipe("run")
    assert "bootstrap.sh" in recipe
    assert "-m isengard_desktop" in recipe


@needs_bash
def test_check_only_reports_the_python_it_would_use(tmp_path: Path) -> None:
    # Run a copy of the script next to a copy of pyproject.toml so the real .venv is never touched
    # and nothing is installed even if --check-only were broken.
    shutil.copy2(BOOTSTRAP, tmp_path / "bootstrap.sh")
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run(["bash", str(tmp_path / "bootstrap.sh"), "--check-only"],
                            capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"python: (.+) \(Python (\d+)\.(\d+)\.(\d+)\S*\)", result.stdout)
    assert match, result.stdout
    interpreter, major, minor = match.group(1), int(match.group(2)), int(match.group(3))
    assert (major, minor) >= (3, 11)
    # The reported version is really the one of the interpreter it names.
    reported = subprocess.run([interpreter, "-c", "import platform; print(platform.python_version())"],
                              capture_output=True, text=True, timeout=30)
    assert reported.stdout.strip() == ".".join(match.group(i) for i in (2, 3, 4))
    assert not (tmp_path / ".venv").exists()
    assert ".venv: missing, would be created" in result.stdout


@needs_bash
def test_bootstrap_rejects_unknown_options() -> None:
    result = subprocess.run(["bash", str(BOOTSTRAP), "--no-such-flag"], capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "unknown option" in result.stderr


def test_make_test_runs_ruff_and_mypy_before_pytest_from_the_test_extra() -> None:
    import tomllib

    lines = _make_recipe("test").splitlines()
    order = [next(i for i, line in enumerate(lines) if tool in line)
             for tool in ("bootstrap.sh --test", "-m ruff check", "-m mypy", "-m pytest")]
    assert order == sorted(order), lines
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = {req.split("==")[0].lower() for req in project["project"]["optional-dependencies"]["test"]}
    assert {"ruff", "mypy"} <= pins
    assert "ruff" in project["tool"] and "mypy" in project["tool"]
