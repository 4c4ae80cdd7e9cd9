"""Settings → Trainers: folder + Python per trainer, Browse, Check (on an executor) with the
exact problems, the capability matrix, and OK handing trainer_installs to the owner."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QLabel, QLineEdit, QPushButton, QTableWidget

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.secrets import SecretStore
from isengard_desktop.core.settings import Settings
from isengard_desktop.ui.settings.settings_dialog import SettingsDialog
from isengard_desktop.ui.settings.trainers_page import TrainersPageWidget

pytestmark = pytest.mark.gui


def find(widget, cls, name):
    child = widget.findChild(cls, name)
    assert child is not None, name
    return child


def make_page(qtbot, installs=None, **kw) -> TrainersPageWidget:
    page = TrainersPageWidget(installs or {}, platform=kw.pop("platform", "linux"), **kw)
    qtbot.addWidget(page)
    page.show()
    return page


def good_python(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho '{\"version\": [3, 11, 7], \"missing\": []}'\n")
    path.chmod(0o755)
    return path


def test_fields_show_the_settings_and_installs_reads_them_back(qtbot):
    page = make_page(qtbot, {"diffusion-pipe": {"folder": "/opt/dp", "python": "/opt/dp/py"}})
    assert find(page, QLineEdit, "trainer_folder_diffusion-pipe").text() == "/opt/dp"
    assert find(page, QLineEdit, "trainer_python_diffusion-pipe").text() == "/opt/dp/py"
    assert find(page, QLineEdit, "trainer_folder_kohya").text() == ""
    assert page.installs() == {"diffusion-pipe": {"folder": "/opt/dp", "python": "/opt/dp/py"}}
    qtbot.keyClicks(find(page, QLineEdit, "trainer_folder_kohya"), " /opt/sd-scripts ")
    find(page, QLineEdit, "trainer_folder_diffusion-pipe").clear()
    find(page, QLineEdit, "trainer_python_diffusion-pipe").clear()
    assert page.installs() == {"kohya": {"folder": "/opt/sd-scripts", "python": ""}}


@pytest.mark.skipif(sys.platform == "win32",
                    reason="a #!/bin/sh fake interpreter: Windows cannot run a shell script as a program")
def test_browse_fills_the_folder_and_finds_its_venv_python(qtbot, tmp_path, monkeypatch):
    checkout = tmp_path / "ai-toolkit"
    python = good_python(checkout / "venv" / "bin" / "python")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(checkout))
    page = make_page(qtbot)
    qtbot.mouseClick(find(page, QPushButton, "trainer_folder_browse_ai-toolkit"),
                     Qt.MouseButton.LeftButton)
    assert page.installs() == {"ai-toolkit": {"folder": str(checkout), "python": str(python)}}
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("/usr/bin/python3", ""))
    qtbot.mouseClick(find(page, QPushButton, "trainer_python_browse_ai-toolkit"),
                     Qt.MouseButton.LeftButton)
    assert page.installs()["ai-toolkit"]["python"] == "/usr/bin/python3"


@pytest.mark.skipif(sys.platform == "win32",
                    reason="a #!/bin/sh fake interpreter: Windows cannot run a shell script as a program")
def test_check_runs_off_the_ui_thread_and_shows_exact_problems(qtbot, tmp_path):
    page = make_page(qtbot)
    missing = tmp_path / "no-such-folder"
    qtbot.keyClicks(find(page, QLineEdit, "trainer_folder_diffusion-pipe"), str(missing))
    qtbot.keyClicks(find(page, QLineEdit, "trainer_python_diffusion-pipe"), "python3")
    button = find(page, QPushButton, "trainer_check_diffusion-pipe")
    result = find(page, QLabel, "trainer_result_diffusion-pipe")
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: button.isEnabled(), timeout=10_000)
    assert result.text() == (
        f"• The diffusion-pipe (tdrussell) folder {missing} does not exist.\n"
        "• The Python interpreter must be an absolute path (got 'python3').")
    assert result.property("error") is True
    # a real checkout + an interpreter that has every package: ready
    checkout = tmp_path / "diffusion-pipe"
    checkout.mkdir()
    (checkout / "train.py").write_text("# train\n")
    python = good_python(tmp_path / "venv" / "bin" / "python")
    for name, value in (("folder", checkout), ("python", python)):
        field = find(page, QLineEdit, f"trainer_{name}_diffusion-pipe")
        field.clear()
        qtbot.keyClicks(field, str(value))
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert not button.isEnabled() and result.text().startswith("Checking")
    qtbot.waitUntil(lambda: button.isEnabled(), timeout=10_000)
    assert result.text() == f"Ready: {checkout} runs with {python}."
    assert result.property("error") is False


def test_the_real_interpreter_check_names_missing_packages(qtbot, tmp_path):
    checkout = tmp_path / "diffusion-pipe"
    checkout.mkdir()
    (checkout / "train.py").write_text("")
    page = make_page(qtbot, {"diffusion-pipe": {"folder": str(checkout),
                                                "python": sys.executable}})
    button = find(page, QPushButton, "trainer_check_diffusion-pipe")
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: button.isEnabled(), timeout=30_000)
    text = find(page, QLabel, "trainer_result_diffusion-pipe").text()
    assert f"{sys.executable} lacks the package" in text and "deepspeed" in text


def test_injected_check_and_the_windows_matrix(qtbot):
    calls = []

    def check(kind, install, done):
        calls.append((kind, install))
        done(["diffusion-pipe needs Linux or WSL: …"])

    page = make_page(qtbot, {"diffusion-pipe": {"folder": "/dp", "python": "/dp/python"}},
                     check=check, platform="windows")
    result = find(page, QLabel, "trainer_result_diffusion-pipe")
    assert result.text().startswith("diffusion-pipe needs Linux or WSL")   # before any check
    assert find(page, QLabel, "trainer_result_kohya").text() == ""
    page.check("diffusion-pipe")
    assert calls[0][0] == "diffusion-pipe" and calls[0][1].python == "/dp/python"
    assert result.text() == "• diffusion-pipe needs Linux or WSL: …"
    matrix = find(page, QTableWidget, "trainer_matrix")
    rows = {matrix.item(r, 0).text(): [matrix.item(r, c).text() for c in range(6)]
            for r in range(matrix.rowCount())}
    assert list(rows) == ["Built-in (diffusers + peft)", "ai-toolkit", "diffusion-pipe",
                          "kohya sd-scripts"]
    assert rows["diffusion-pipe"][1].startswith("no: diffusion-pipe needs Linux or WSL")
    assert rows["diffusion-pipe"][2].startswith("no")                    # no sample images
    assert rows["kohya sd-scripts"][1] == "yes"
    linux = make_page(qtbot, platform="linux")
    lm = find(linux, QTableWidget, "trainer_matrix")
    assert all(lm.item(r, 1).text() == "yes" for r in range(lm.rowCount()))


def test_settings_dialog_has_the_page_and_ok_saves_trainer_installs(qtbot):
    paths = resolve_paths()
    start = Settings(trainer_installs={"kohya": {"folder": "/opt/k", "python": "/opt/k/py"}})
    dialog = SettingsDialog(paths, SecretStore(), start)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.tabs.tabText(dialog.tabs.indexOf(dialog.trainers_page)) == "Trainers"
    qtbot.keyClicks(find(dialog, QLineEdit, "trainer_folder_diffusion-pipe"), "/opt/dp")
    qtbot.keyClicks(find(dialog, QLineEdit, "trainer_python_diffusion-pipe"), "/opt/dp/python")
    with qtbot.waitSignal(dialog.settings_saved, timeout=2000) as blocker:
        dialog.accept()
    assert blocker.args[0].trainer_installs == {
        "kohya": {"folder": "/opt/k", "python": "/opt/k/py"},
        "diffusion-pipe": {"folder": "/opt/dp", "python": "/opt/dp/python"}}
