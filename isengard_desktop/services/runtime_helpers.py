"""Short helper children of the self-test (``python -m isengard_desktop.training_runtime
probe`` / ``make-selftest-model``), run as a :class:`~.child_process.ChildProcess` (own
session, so a kill ends whatever they started) so the UI thread never waits.

Each prints one JSON line on stdout; stderr is kept (capped) and written to a log file the
user can read. A timeout kills a child that hangs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from ..core.platform_support import windows_crash_words
from ..core.paths import AppPaths, resolve_paths
from ..core.runtime.python import trainer_python
from .child_process import ChildProcess, OutputChunk, ProcessOutcome, StopIntent

__all__ = ["RUNTIME_MODULE", "HelperOutcome", "HelperProcess"]

RUNTIME_MODULE = "isengard_desktop.training_runtime"
STDERR_CAP_CHARS = 256 * 1024     # the end of stderr that is kept for the log file
ERROR_LINE_CHARS = 300            # the last stderr line quoted in ``why`` is cut here


@dataclass(frozen=True)
class HelperOutcome:
    """How one helper child ended.

    Attributes:
        process: how the process ended.
        data: the JSON object it printed last; None unless it succeeded.
        why: "" when it succeeded, else what went wrong (a clause: "it crashed (…)").
    """

    process: ProcessOutcome
    data: dict[str, Any] | None
    why: str


class HelperProcess(QObject):
    """One short helper child (``training_runtime probe`` / ``make-selftest-model``): its
    stdout is kept whole (one JSON line), stderr is capped and written to ``log_file``.

    Signals:
        finished(HelperOutcome): emitted once, also when it could not be started.
    """

    finished = Signal(object)

    def __init__(self, args: list[str], log_file: Path, timeout_s: float,
                 parent: QObject | None = None, paths: AppPaths | None = None) -> None:
        """The child runs in the trainer's Python (:func:`trainer_python` for ``paths``,
        default: this run's folders); when there is none it ends at once, ``why`` saying
        what to install."""
        super().__init__(parent)
        self._log_file = log_file
        self._timeout_s = timeout_s
        self._out: list[str] = []
        self._err = ""
        self._ended = False
        self._why_killed = ""
        self.python = trainer_python(paths or resolve_paths())
        env = {**self.python.child_env(),
               "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8", "HF_HUB_OFFLINE": "1"}
        program = str(self.python.executable) if self.python.executable else sys.executable
        self.proc = ChildProcess([program, "-m", RUNTIME_MODULE, *args], env=env,
                                 cwd=str(log_file.parent), name=f"helper {args[0]}",
                                 parent=self)
        self.proc.output_received.connect(self._on_output)
        self.proc.finished.connect(self._on_finished)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timeout)

    def start(self) -> None:
        if self.python.executable is None:
            QTimer.singleShot(0, lambda: self._end(
                ProcessOutcome(exit_code=None, crashed=False, error="no trainer runtime"),
                None, self.python.problem))
            return
        self.proc.start()
        self._timer.start(int(self._timeout_s * 1000))

    def kill(self, intent: StopIntent, why: str) -> None:
        """End the child's process tree now; ``why`` becomes the outcome's ``why``."""
        if self.proc.is_running:
            self._why_killed = why
            self.proc.kill(intent)

    def wait(self, ms: int = 3000) -> None:
        """Block until the killed child is gone (app quit only)."""
        self.proc.wait(ms)

    def _on_output(self, chunk: OutputChunk) -> None:
        if chunk.stream == "stdout":
            self._out.append(chunk.text)
        elif chunk.text:
            self._err = (self._err + chunk.text)[-STDERR_CAP_CHARS:]

    def _on_timeout(self) -> None:
        self.kill(StopIntent.TIMEOUT, f"it did not finish within {self._timeout_s:.0f} s")

    def _on_finished(self, outcome: ProcessOutcome) -> None:
        data = None
        for line in reversed("".join(self._out).splitlines()):
            if line.startswith("{"):
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    continue
                break
        last = outcome.tail[-1].strip()[:ERROR_LINE_CHARS] if outcome.tail else ""
        if outcome.failed_to_start:
            self._end(outcome, None, f"{self.proc.argv[0]} could not be started "
                                     f"({outcome.error})")
        elif self._why_killed:
            self._end(outcome, None, self._why_killed)
        elif outcome.crashed or windows_crash_words(outcome.exit_code) is not None:
            how = windows_crash_words(outcome.exit_code)   # Windows: what the crash was
            self._end(outcome, None, f"it crashed{': ' + how if how else ''} "
                                     f"({last or 'no message'})")
        elif isinstance(data, dict) and data.get("error"):
            self._end(outcome, None, str(data["error"]))
        elif outcome.exit_code != 0 or not isinstance(data, dict):
            self._end(outcome, None, f"it exited with code {outcome.exit_code}"
                                     + (f": {last}" if last else ""))
        else:
            self._end(outcome, data, "")

    def _end(self, outcome: ProcessOutcome, data: dict[str, Any] | None, why: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._timer.stop()
        try:
            self._log_file.write_text(self._err, encoding="utf-8")
        except OSError:
            pass
        self.finished.emit(HelperOutcome(process=outcome, data=data, why=why))
