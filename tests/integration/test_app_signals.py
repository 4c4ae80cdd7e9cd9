"""The real app process (qasync loop, as `make run` starts it) talks to a ComfyUI server and
closes cleanly on SIGTERM (logout, `kill`): services shut down, network connections close on
the loop, the log says so, and no process or connection is left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.settings import Settings, save_settings

FAKE_COMFY = Path(__file__).resolve().parents[1] / "helpers" / "fake_comfyui_main.py"


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"the process exited while waiting for {what}"
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_app_with_a_comfyui_server_closes_cleanly_on_sigterm(tmp_path, isolated_home):
    comfy_out = tmp_path / "comfy.log"
    with open(comfy_out, "w") as out:
        comfy = subprocess.Popen([sys.executable, str(FAKE_COMFY), "--listen", "127.0.0.1",
                                  "--port", "0", "--log-stdout"], stdout=out,
                                 stderr=subprocess.STDOUT, cwd=tmp_path)   # its input/output
    app = None
    try:
        found: list[str] = []

        def comfy_url() -> bool:
            m = re.search(r"To see the GUI go to: (http://\S+)", comfy_out.read_text())
            if m:
                found.append(m.group(1))
            return bool(m)

        _wait_for(comfy_url, 30, "the ComfyUI stand-in", comfy)
        paths = resolve_paths().ensure()
        save_settings(paths.settings_file, Settings(remote_servers=[found[0]]))

        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONDEVMODE="1")
        app = subprocess.Popen([sys.executable, "-m", "isengard_desktop"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        logs = paths.app_logs

        def log_text() -> str:
            return "".join(p.read_text() for p in logs.glob("*.jsonl")) if logs.is_dir() else ""

        _wait_for(lambda: "is reachable" in log_text() and "node classes" in log_text(), 60,
                  "the app to reach the ComfyUI server", app)
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=30) == 0
        stderr = app.stderr.read()
        assert '"message": "shut down"' in log_text()
        for leak in ("ResourceWarning", "unclosed", "Task was destroyed", "Traceback"):
            assert leak not in stderr, stderr[-2000:]
    finally:
        for proc in (app, comfy):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if app is not None and app.stderr:
            app.stderr.close()
