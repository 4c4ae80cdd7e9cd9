"""Settings → Self-test, the real thing, in a fresh GUI process: the app's Settings dialog,
the Self-test tab, a click, the real self-test (probe, tiny model, training through the
runner) — and the GUI process never imported torch. (Moved from tests/gui: it runs real
child processes.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

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
    # without a usable GPU the GPU line is a warning, never "OK" (issue 11, item 14)
    gpu_word = "OK" if result["cuda"] else "Warning"
    assert all(r[1] == (gpu_word if r[0] == "GPU (CUDA)" else "OK") for r in out["rows"])
    assert "Everything works" in out["status"]
    lora = Path(result["lora"])
    assert lora.is_file() and str(lora) in out["summary"] and "Loss" in out["summary"]
    assert result["steps"] == 20 and result["first_loss"] and result["last_loss"]
    assert Path(result["folder"]).parent == tmp_path / "home" / "tmp"
    assert f"LoRA written: {lora}" in out["report"]
    assert not (Path(out["data"]) / "jobs").exists() or not any(
        (Path(out["data"]) / "jobs").iterdir())     # the app's own job list is untouched
