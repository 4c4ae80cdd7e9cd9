"""Short helper children of the self-test (``python -m isengard_desktop.training_runtime
probe`` / ``make-selftest-model``), run with QProcess so the UI thread never waits.

Each prints one JSON line on stdout; stderr is kept (capped) and written to a log file the
user can read. A timeout kills a child that hangs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

__all__ = ["RUNTIME_MODULE", "HelperProcess"]

RUNTIME_MODULE = "isengard_desktop.training_runtime"
_STDERR_CAP = 256 * 1024


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


class HelperProcess(QObject):
    """One short helper child (``training_runtime probe`` / ``make-selftest-model``): its
    stdout is kept whole (one JSON line), stderr is capped and written to ``log_file``.

    Signals:
        done(dict | None, str): the JSON it printed (None if none) and, on failure, why.
    """

    done = Signal(object, str)

    def __init__(self, args: list[str], log_file: Path, timeout_s: float,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._args = args
        self._log_file = log_file
        self._timeout_s = timeout_s
        self._out = bytearray()
        self._err = bytearray()
        self._ended = False
        self._why_killed = ""
        self.proc = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        root = _package_root()
        env.insert("PYTHONPATH", os.pathsep.join([root] + [p for p in parts if p != root]))
        for key, value in (("PYTHONUNBUFFERED", "1"), ("PYTHONIOENCODING", "utf-8"),
                           ("HF_HUB_OFFLINE", "1")):
            env.insert(key, value)
        self.proc.setProcessEnvironment(env)
        self.proc.setWorkingDirectory(str(log_file.parent))
        self.proc.readyReadStandardOutput.connect(
            lambda: self._out.extend(bytes(self.proc.readAllStandardOutput())))
        self.proc.readyReadStandardError.connect(self._read_stderr)
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timeout)

    def start(self) -> None:
        self.proc.start(sys.executable, ["-m", RUNTIME_MODULE, *self._args])
        self._timer.start(int(self._timeout_s * 1000))

    def kill(self, why: str) -> None:
        if self.proc.state() != QProcess.ProcessState.NotRunning:
            self._why_killed = why
            self.proc.kill()

    def wait(self, ms: int = 3000) -> None:
        """Block until the killed child is gone (app quit only)."""
        if self.proc.state() != QProcess.ProcessState.NotRunning:
            self.proc.waitForFinished(ms)

    def _read_stderr(self) -> None:
        self._err.extend(bytes(self.proc.readAllStandardError()))
        if len(self._err) > _STDERR_CAP:
            del self._err[: len(self._err) - _STDERR_CAP]

    def _on_timeout(self) -> None:
        self.kill(f"it did not finish within {self._timeout_s:.0f} s")

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._end(None, f"{sys.executable} could not be started "
                            f"({self.proc.errorString()})")

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._out.extend(bytes(self.proc.readAllStandardOutput()))
        self._read_stderr()
        text = self._out.decode("utf-8", errors="replace")
        data = None
        for line in reversed(text.splitlines()):
            if line.startswith("{"):
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    continue
                break
        if self._why_killed:
            self._end(None, self._why_killed)
        elif status == QProcess.ExitStatus.CrashExit:
            self._end(None, f"it crashed ({self._last_error_line() or 'no message'})")
        elif isinstance(data, dict) and data.get("error"):
            self._end(None, str(data["error"]))
        elif code != 0 or not isinstance(data, dict):
            self._end(None, f"it exited with code {code}"
                            + (f": {self._last_error_line()}" if self._last_error_line() else ""))
        else:
            self._end(data, "")

    def _last_error_line(self) -> str:
        lines = [line.strip() for line in self._err.decode("utf-8", errors="replace").splitlines()
                 if line.strip()]
        return lines[-1][:300] if lines else ""

    def _end(self, data: dict | None, why: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._timer.stop()
        try:
            self._log_file.write_bytes(bytes(self._err))
        except OSError:
            pass
        self.done.emit(data, why)
