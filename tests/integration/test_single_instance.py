"""One app instance per data folder (issue 11, item 1): real app processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.services.single_instance import LOCK_FILE_NAME


def _env() -> dict[str, str]:
    return dict(os.environ, QT_QPA_PLATFORM="offscreen")


def _start() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "isengard_desktop"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _log_text() -> str:
    logs = resolve_paths().app_logs
    return "".join(p.read_text() for p in logs.glob("*.jsonl")) if logs.is_dir() else ""


def _wait_ready(proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "library loaded" in _log_text():
            return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.1)
    pytest.fail("the first instance did not get ready")


def _smoke() -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isengard_desktop", "--smoke-test"],
                          env=_env(), capture_output=True, text=True, timeout=120)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_a_second_start_on_the_same_data_folder_exits_and_wakes_the_first(isolated_home):
    first = _start()
    try:
        _wait_ready(first)
        assert (resolve_paths().data / LOCK_FILE_NAME).exists()
        second = _smoke()
        assert second.returncode == 3, second.stderr
        assert "already running with the data folder" in second.stderr
        assert f"(process {first.pid})" in second.stderr
        assert second.stdout.strip() == ""            # it never built an app
        deadline = time.monotonic() + 10
        while "coming to the front" not in _log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "coming to the front" in _log_text()
        assert first.poll() is None
        # a command that only reads still runs beside the app
        check = subprocess.run([sys.executable, "-m", "isengard_desktop", "comfy-check",
                                "--url", "http://127.0.0.1:9", "--json"], env=_env(),
                               capture_output=True, text=True, timeout=120)
        assert "already running" not in check.stderr and check.stdout.strip(), check.stderr
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        # the lock is released: the next start runs
        after = _smoke()
        assert after.returncode == 0, after.stderr
    finally:
        _stop(first)


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_a_stale_lock_of_a_killed_instance_is_taken_over(isolated_home):
    first = _start()
    try:
        _wait_ready(first)
        first.kill()                                  # no chance to release the lock
        first.wait()
        assert (resolve_paths().data / LOCK_FILE_NAME).exists()
        again = _smoke()
        assert again.returncode == 0, again.stderr
        assert '"ready": true' in again.stdout
    finally:
        _stop(first)
