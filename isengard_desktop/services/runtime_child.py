"""One child program in the trainer runtime's Python that answers in JSON lines on stdout: the
face analysis (``services/face_analysis.py`` ``FaceRun``) and the video clips child
(``services/video/clips_child.py`` ``ClipsRun``) — both ``python -m
isengard_desktop.analysis_runtime <command>``, whose libraries (dlib, PyAV) never load in the
GUI process.

:class:`RuntimeChildRun` owns the :class:`~.child_process.ChildProcess` (own session, tree
kill), finds the runtime's Python (:func:`~..core.runtime.python.trainer_python`; without one,
``start`` ends the run at once with ``missing_text`` and what to install), parses each stdout
line that is a JSON object and hands it to :meth:`on_event`, turns a failed exit into one
sentence, and emits ``finished(result())`` exactly once — also when it could not start or was
cancelled. Subclasses say what an event means and what the result is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from loguru import logger
from PySide6.QtCore import QObject, QTimer, Signal

from ..core.paths import AppPaths
from ..core.runtime.python import trainer_python
from .child_process import ChildProcess, OutputChunk, ProcessOutcome, StopIntent

__all__ = ["ANALYSIS_MODULE", "RuntimeChildRun"]

ANALYSIS_MODULE = "isengard_desktop.analysis_runtime"


class RuntimeChildRun(QObject):
    """See the module docstring. ``finished(object)``: :meth:`result`, emitted once."""

    finished = Signal(object)

    def __init__(self, paths: AppPaths, args: Sequence[str], *, name: str, missing_text: str,
                 failed_text: str, kill_grace_s: float = 2.0,
                 parent: QObject | None = None) -> None:
        """``args`` follow ``python -m <ANALYSIS_MODULE>``; ``name`` is the child's name in
        the logs; ``missing_text`` starts the problem when there is no trainer runtime;
        ``failed_text`` starts it when the child exits badly without saying why;
        ``kill_grace_s``: how long a stopped child may take before it is killed."""
        super().__init__(parent)
        self._kill_grace_s = kill_grace_s
        self._name = name
        self._missing_text = missing_text
        self._failed_text = failed_text
        self._problem = ""
        self._ended = False
        self._cancelled = False
        self.python = trainer_python(paths)
        env = {**self.python.child_env(), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        program = str(self.python.executable) if self.python.executable else sys.executable
        self.proc = ChildProcess([program, "-m", ANALYSIS_MODULE, *args], env=env, name=name,
                                 parent=self)
        self.proc.output_received.connect(self._on_output)
        self.proc.finished.connect(self._on_finished)

    # -- what subclasses say -------------------------------------------------------------------
    def on_event(self, event: dict[str, Any], line: str) -> None:
        """One protocol event (a JSON object line of stdout)."""

    def result(self) -> Any:
        """What ``finished`` carries."""
        raise NotImplementedError

    # -- control -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.python.executable is None:
            self._problem = f"{self._missing_text} {self.python.problem}"
            QTimer.singleShot(0, self._end)
            return
        self.proc.start()

    def cancel(self) -> None:
        """End the child's process tree (no-op once it ended)."""
        if not self._ended:
            self._cancelled = True
            if self.proc.is_running:
                self.proc.stop(StopIntent.CANCEL, kill_grace_s=self._kill_grace_s)
            else:
                QTimer.singleShot(0, self._end)

    def stop_and_wait(self) -> None:
        """App quit only (blocks briefly)."""
        if self.proc.is_running:
            self._cancelled = True
            self.proc.stop_and_wait(StopIntent.SHUTDOWN, kill_grace_s=self._kill_grace_s)

    # -- the child's output --------------------------------------------------------------------
    def _on_output(self, chunk: OutputChunk) -> None:
        if chunk.stream != "stdout":
            return
        for line, _redraw in chunk.lines:
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError as exc:
                logger.warning("{}: unreadable event line ({}): {:.200}", self._name, exc, line)
                continue
            if isinstance(event, dict):
                self.on_event(event, line)

    def _on_finished(self, outcome: ProcessOutcome) -> None:
        if not self._problem and not self._cancelled and not outcome.succeeded:
            last = outcome.tail[-1] if outcome.tail else "no message"
            self._problem = f"{self._failed_text} {outcome.describe()}: {last}"
        self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self.finished.emit(self.result())
