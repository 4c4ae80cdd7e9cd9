"""The real app process closes cleanly on SIGTERM (logout, `kill`): services shut down and the
log says so, instead of the process dying with trainers or a managed ComfyUI left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_closes_the_app_cleanly(tmp_path):
    home = tmp_path / "home"
    env = dict(os.environ, ISENGARD_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen([sys.executable, "-m", "isengard_desktop"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        logs = home / "logs" / "app"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            texts = [p.read_text() for p in logs.glob("*.jsonl")] if logs.is_dir() else []
            if any("library loaded" in t for t in texts):
                break
            assert proc.poll() is None, "the app exited before it was ready"
            time.sleep(0.1)
        else:
            pytest.fail("the app did not get ready in 60 s")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(p.read_text() for p in Path(logs).glob("*.jsonl"))
    assert '"message": "shut down"' in text
