"""Settings → Self-test.

* In this process, with a scripted service: the button starts it without blocking, each check
  appears as it arrives, failures say what to do, the result (losses, LoRA) is shown, Cancel
  reaches the service and "Copy report" puts the report on the clipboard.
* In a fresh GUI process, the real thing: the app's Settings dialog, the Self-test tab, a
  click, the real self-test (probe, tiny model, training through the runner) — and the GUI
  process never imported torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.secrets import SecretStore
from isengard_desktop.core.selftest_report import Check, SelfTestResult
from isengard_desktop.core.settings import Settings
from isengard_desktop.core.types import Progress
from isengard_desktop.ui.settings.settings_dialog import SettingsDialog

pytestmark = pytest.mark.gui

CHECKS = [Check("python", True, "Python 3.11.7"),
          Check("cuda", False, "You asked for the GPU, but it cannot be used.",
                "Install the CUDA build of PyTorch."),
          Check("training", True, "Trained 10 steps on CPU")]


class ScriptedSelfTest(QObject):
    """Emits what a real SelfTestService emits, one thing per timer tick."""

    progressed = Signal(object)
    check_finished = Signal(object)
    finished = Signal(object)

    def __init__(self, lora: str, folder: str) -> None:
        super().__init__()
        self.lora, self.folder = lora, folder
        self.started: list[tuple[int, str]] = []
        self.cancelled = False
        self.is_running = False
        self._script: list = []
        self._timer = QTimer(self)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self._tick)

    def start(self, steps: int = 20, device: str = "auto") -> None:
        self.started.append((steps, device))
        self.is_running = True
        self._script = [("p", Progress("Checking Python, PyTorch and the GPU…", 0, 5))]
        for check in CHECKS:
            self._script += [("c", check), ("p", Progress("Training…", 3, 5, "step 5 of 10"))]
        self._script.append(("f", SelfTestResult(
            ok=False, checks=tuple(CHECKS), torch="2.13.0+cpu", device="cpu", first_loss=1.25,
            last_loss=0.75, steps=10, lora=self.lora, folder=self.folder, seconds=12.0,
            app_version="0.1.0")))
        self._timer.start()

    def cancel(self) -> None:
        self.cancelled = True

    def _tick(self) -> None:
        kind, value = self._script.pop(0)
        if kind == "p":
            self.progressed.emit(value)
        elif kind == "c":
            self.check_finished.emit(value)
        else:
            self._timer.stop()
            self.is_running = False
            self.finished.emit(value)


@pytest.fixture
def dialog_and_service(qtbot, tmp_path, memory_keyring):
    folder = tmp_path / "selftest-1"
    folder.mkdir()
    lora = folder / "selftest_lora.safetensors"
    lora.write_bytes(b"x")
    made: list[ScriptedSelfTest] = []

    def factory() -> ScriptedSelfTest:
        made.append(ScriptedSelfTest(str(lora), str(folder)))
        return made[-1]

    dialog = SettingsDialog(resolve_paths(), SecretStore(memory_keyring), Settings(),
                            selftest_factory=factory)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog, made, lora


def test_the_button_runs_the_self_test_and_shows_each_check_then_the_result(
        qtbot, dialog_and_service):
    dialog, made, lora = dialog_and_service
    page = dialog.selftest_page
    assert page is not None and dialog.tabs.tabText(dialog.tabs.indexOf(page)) == "Self-test"
    dialog.tabs.setCurrentWidget(page)
    assert not page.copy_button.isEnabled() and not page.cancel_button.isEnabled()
    page.device.setCurrentIndex(page.device.findData("cpu"))

    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert len(made) == 1 and made[0].started == [(20, "cpu")]
    assert not page.run_button.isEnabled() and page.cancel_button.isEnabled()
    assert page.progress.isVisible()
    # the checks arrive one by one while the UI keeps running
    qtbot.waitUntil(lambda: page.checks.topLevelItemCount() == 1, timeout=5000)
    first = page.checks.topLevelItem(0)
    assert (first.text(0), first.text(1), first.text(2)) == ("Python", "OK", "Python 3.11.7")
    qtbot.waitUntil(lambda: "step 5 of 10" in page.status.text(), timeout=5000)
    qtbot.waitUntil(lambda: page.result is not None, timeout=5000)

    rows = [tuple(page.checks.topLevelItem(i).text(c) for c in range(3))
            for i in range(page.checks.topLevelItemCount())]
    assert rows == [("Python", "OK", "Python 3.11.7"),
                    ("GPU (CUDA)", "Failed", "You asked for the GPU, but it cannot be used."),
                    ("", "", "What to do: Install the CUDA build of PyTorch."),
                    ("Training run", "OK", "Trained 10 steps on CPU")]
    assert "1 problem found: GPU (CUDA)" in page.status.text()
    summary = page.summary.text()
    assert page.summary.isVisible() and str(lora) in summary
    assert "1.2500" in summary and "0.7500" in summary and "step 10" in summary
    assert page.run_button.isEnabled() and not page.cancel_button.isEnabled()
    assert not page.progress.isVisible() and page.open_button.isEnabled()

    qtbot.mouseClick(page.copy_button, Qt.MouseButton.LeftButton)
    copied = QGuiApplication.clipboard().text()
    assert copied == page.result.report_text()
    assert "FAILED  GPU (CUDA)" in copied and "What to do: Install the CUDA build" in copied
    assert f"LoRA written: {lora}" in copied

    # a second run reuses the service and starts from a clean list
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert len(made) == 1 and len(made[0].started) == 2
    assert page.checks.topLevelItemCount() == 0 and not page.copy_button.isEnabled()
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    assert made[0].cancelled and "Cancelling" in page.status.text()
    qtbot.waitUntil(lambda: page.run_button.isEnabled(), timeout=5000)


def test_without_a_factory_there_is_no_self_test_tab(qtbot, memory_keyring):
    dialog = SettingsDialog(resolve_paths(), SecretStore(memory_keyring), Settings())
    qtbot.addWidget(dialog)
    assert dialog.selftest_page is None
    assert "Self-test" not in [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())]


_REAL_RUN = r"""
import json, sys, time
from PySide6.QtWidgets import QApplication
app = QApplication([])
from isengard_desktop.app import build_app
from isengard_desktop.ui.settings.settings_dialog import SettingsDialog
ctx = build_app(install_excepthook=False)
ctx.window.show()
ctx.window.settings_action.trigger()
app.processEvents()
dialog = ctx.window.findChild(SettingsDialog)
page = dialog.selftest_page
dialog.tabs.setCurrentWidget(page)
page.run_button.click()
statuses, counts = [], []
end = time.monotonic() + 200
while page.result is None and time.monotonic() < end:
    app.processEvents()
    text = page.status.text()
    if not statuses or statuses[-1] != text:
        statuses.append(text)
    if not counts or counts[-1] != page.checks.topLevelItemCount():
        counts.append(page.checks.topLevelItemCount())
    time.sleep(0.01)
rows = [[page.checks.topLevelItem(i).text(c) for c in range(3)]
        for i in range(page.checks.topLevelItemCount())]
result = page.result
heavy = sorted(m for m in sys.modules if m.split('.')[0] in
               ("torch", "diffusers", "transformers", "peft"))
print(json.dumps({"rows": rows, "statuses": statuses, "counts": counts,
                  "summary": page.summary.text(), "status": page.status.text(),
                  "result": result.to_dict() if result else None,
                  "report": page.report_text(), "heavy": heavy,
                  "data": str(ctx.paths.data)}))
dialog.close(); ctx.window.close()
from isengard_desktop.lifecycle import run
run(ctx.aclose())
"""


@pytest.mark.timeout(240)
def test_the_real_self_test_from_the_app_settings_never_imports_torch_here(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", ISENGARD_HOME=str(tmp_path / "home"),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _REAL_RUN], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=230)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    result = out["result"]
    assert result is not None, out["statuses"]
    assert result["ok"] is True, out["rows"]
    assert out["heavy"] == []                        # torch ran only in the children
    # checks appeared one at a time, with the stages in between
    assert out["counts"][0] == 0 and out["counts"][-1] == len(out["rows"])
    assert len(out["counts"]) >= 5
    assert any("Checking Python, PyTorch and the GPU" in s for s in out["statuses"])
    assert any("Training the tiny model" in s for s in out["statuses"])
    assert [r[0] for r in out["rows"]] == ["Python", "PyTorch", "GPU (CUDA)",
                                           "Training libraries", "Optional speed-ups",
                                           "Disk space", "Disk writes", "Tiny test model",
                                           "Training run", "LoRA file"]
    assert all(r[1] == "OK" for r in out["rows"])
    assert "Everything works" in out["status"]
    lora = Path(result["lora"])
    assert lora.is_file() and str(lora) in out["summary"] and "Loss" in out["summary"]
    assert result["steps"] == 20 and result["first_loss"] and result["last_loss"]
    assert Path(result["folder"]).parent == tmp_path / "home" / "tmp"
    assert f"LoRA written: {lora}" in out["report"]
    assert not (Path(out["data"]) / "jobs").exists() or not any(
        (Path(out["data"]) / "jobs").iterdir())     # the app's own job list is untouched
