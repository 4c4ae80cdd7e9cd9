"""Process-level rules, checked in fresh interpreters:

* the GUI process never imports torch, diffusers, transformers, peft, dlib or av (PyAV), nor
  pillow-heif (GPL x265 in its wheel: HEIC photos are read with pi-heif);
* ``core/`` imports no Qt;
* ``isengard --smoke-test`` opens the real window offscreen and prints one JSON line;
* the PySide6 build in use does not leak references to None (6.12.0 on Python 3.11 did).
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import isengard_desktop
import isengard_desktop.core

HEAVY = ("torch", "diffusers", "transformers", "peft", "dlib", "_dlib_pybind11", "av",
         "pillow_heif")
QT = ("PySide6", "qasync", "shiboken6", "pyqtgraph")


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", ISENGARD_HOME=str(tmp_path / "home"))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


def test_gui_process_never_imports_ml_libraries(tmp_path):
    code = """
import json, sys, time
from PySide6.QtWidgets import QApplication
app = QApplication([])
from isengard_desktop.app import build_app
ctx = build_app(install_excepthook=False)
ctx.window.show()
end = time.monotonic() + 15
while not ctx.library.is_ready and time.monotonic() < end:
    app.processEvents(); time.sleep(0.01)
for i in range(ctx.window.tabs.count()):
    ctx.window.tabs.setCurrentIndex(i); app.processEvents()
import isengard_desktop.core.dataset.decode   # what reads photos (HEIC through pi-heif)
heavy = sorted(m for m in sys.modules if m.split('.')[0] in %r)
print(json.dumps({"ready": ctx.library.is_ready, "heavy": heavy,
                  "heic": "pi_heif" in sys.modules}))
ctx.window.close()
from isengard_desktop.lifecycle import run
run(ctx.aclose())
""" % (HEAVY,)  # noqa: UP031 (a code template full of braces)
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["ready"] is True
    assert out["heavy"] == []
    assert out["heic"] is True


def test_core_imports_no_qt(tmp_path):
    modules = sorted(m.name for m in pkgutil.walk_packages(isengard_desktop.core.__path__,
                                                           "isengard_desktop.core."))
    assert "isengard_desktop.core.db.schema" in modules and len(modules) > 8
    code = f"""
import importlib, json, sys
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {QT!r})))
"""
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_python_m_entry_point_works(tmp_path):
    env = dict(os.environ, ISENGARD_HOME=str(tmp_path / "home"), QT_QPA_PLATFORM="offscreen")
    result = subprocess.run([sys.executable, "-m", "isengard_desktop", "--smoke-test"],
                            capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tabs"][0] == "Characters"


def test_smoke_test_prints_one_json_line(tmp_path):
    env = dict(os.environ, ISENGARD_HOME=str(tmp_path / "home"))
    env.pop("QT_QPA_PLATFORM", None)  # --smoke-test must go offscreen by itself
    # the installed `isengard` entry point, started from an unrelated folder
    entry = Path(sys.executable).with_name("isengard")
    assert entry.exists(), "the isengard entry point is not installed"
    result = subprocess.run([str(entry), "--smoke-test"], capture_output=True, text=True,
                            env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    info = json.loads(lines[0])
    assert info["version"] == isengard_desktop.__version__
    assert info["tabs"] == ["Characters", "Dataset", "Training", "Generate", "Video"]
    assert Path(info["data_dir"]) == (tmp_path / "home" / "data").resolve()
    assert (tmp_path / "home" / "data" / "isengard.sqlite3").exists()
    assert list((tmp_path / "home" / "logs" / "app").glob("*.jsonl"))


def test_pyside_does_not_leak_none_references(tmp_path):
    code = """
import sys
from PySide6.QtCore import QCoreApplication, QTimer
app = QCoreApplication([])
t = QTimer()
before = sys.getrefcount(None)
for _ in range(1000):
    t.setInterval(5)
print(sys.getrefcount(None) - before)
"""
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert abs(int(result.stdout.strip())) < 50
