"""tasks.py: the README's run/test commands in a form that runs on Windows (issue 13, item 13).
The Windows branch (Scripts\\python.exe) is driven through its ``windows`` flag; the install
steps follow pyproject.toml and are skipped when .venv was made from the same inputs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("isengard_tasks", ROOT / "tasks.py")
assert _spec is not None and _spec.loader is not None
tasks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tasks)
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_windows_uses_the_scripts_interpreter():
    assert tasks.venv_python(Path("C:/src/.venv"), windows=True) == \
        Path("C:/src/.venv") / "Scripts" / "python.exe"
    assert tasks.venv_python(Path("/src/.venv"), windows=False) == Path("/src/.venv/bin/python")
    steps = tasks.plan("test", ["-k", "dataset"], windows=True, env={})
    py = str(tasks.venv_python(windows=True))
    assert steps == [
        [py, "-m", "pip", "--no-input", "--disable-pip-version-check", "install", "-e",
         f"{ROOT}[test]"],
        [py, "-m", "ruff", "check", "."], [py, "-m", "mypy"],
        [py, "-m", "pytest", "-q", "-k", "dataset"],
    ]


def test_run_installs_torch_from_the_cuda_index_first_and_only_when_needed():
    env = {"ISENGARD_TORCH_INDEX": "https://example.invalid/cu128"}
    steps = tasks.plan("run", [], windows=True, env=env)
    assert steps[0][-3:] == ["--index-url", "https://example.invalid/cu128",
                             tasks.torch_pin(PYPROJECT)]
    assert tasks.torch_pin(PYPROJECT).startswith("torch==")
    assert steps[-1][1:] == ["-m", "isengard_desktop"]
    # a .venv made from the same inputs (also one made for the tests) is not reinstalled
    for extras in ("", "test"):
        made = tasks.stamp(extras, PYPROJECT, env["ISENGARD_TORCH_INDEX"])
        assert len(tasks.plan("run", [], windows=True, env=env, installed=made)) == 1
    assert len(tasks.plan("test", [], env={}, installed=tasks.stamp("", PYPROJECT, ""))) == 4


def test_dry_run_prints_the_steps_and_runs_nothing():
    done = subprocess.run([sys.executable, str(ROOT / "tasks.py"), "--dry-run", "test", "-x"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].endswith("-m pytest -q -x")
    bad = subprocess.run([sys.executable, str(ROOT / "tasks.py"), "--dry-run", "deploy"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0 and "unknown command 'deploy'" in bad.stderr
