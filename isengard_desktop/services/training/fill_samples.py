"""The checkpoint comparison's "fill the gaps": the built-in trainer's ``sample`` command as a
child process (trainer runtime), rendering the job's sample pictures for saved steps that
have none. The child records what it made in the job's ``compare_events.jsonl``; this run
reports progress and its end, and the comparison then reads the grid again.

Signals:
    progressed(int done, int total): pictures made so far of ``total``.
    finished(bool ok, str message): once; ``message`` says why when not ok.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from ...core.paths import AppPaths
from ...core.runtime.python import trainer_python
from ...core.training.protocol import ErrorEvent, LogEvent, SampleEvent, parse_event
from ..child_process import ChildProcess, OutputChunk, ProcessOutcome, StopIntent
from .records import JobRecord

__all__ = ["SampleRender"]

KILL_GRACE_S = 5.0


class SampleRender(QObject):
    progressed = Signal(int, int)
    finished = Signal(bool, str)

    def __init__(self, paths: AppPaths, record: JobRecord, steps: list[int],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.steps = sorted(set(steps))
        prompts = [p for p in record.spec.sample_prompts if p.strip()]
        self.total = len(self.steps) * len(prompts)
        self.done = 0
        self._error = ""
        self._warning = ""
        self._ended = False
        self.python = trainer_python(paths)
        env = {**self.python.child_env(), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        program = str(self.python.executable) if self.python.executable else sys.executable
        job_dir = Path(record.job_dir)
        self.proc = ChildProcess([program, "-m", "isengard_desktop.training_runtime", "sample",
                                  "--job", str(record.paths.spec), "--job-dir", str(job_dir),
                                  "--steps", ",".join(map(str, self.steps))],
                                 env=env, name="sample pictures", parent=self)
        self.proc.output_received.connect(self._on_output)
        self.proc.finished.connect(self._on_finished)

    def start(self) -> None:
        if self.python.executable is None:
            self._error = f"The sample pictures are made by the trainer. {self.python.problem}"
            QTimer.singleShot(0, lambda: self._end(False))
            return
        self.proc.start()

    def cancel(self) -> None:
        if not self._ended:
            self.proc.stop(StopIntent.CANCEL, kill_grace_s=KILL_GRACE_S)

    def stop_and_wait(self) -> None:
        """App quit only (blocks briefly)."""
        if self.proc.is_running:
            self.proc.stop_and_wait(StopIntent.SHUTDOWN, kill_grace_s=KILL_GRACE_S)

    def _on_output(self, chunk: OutputChunk) -> None:
        if chunk.stream != "stdout":
            return
        for line, _redraw in chunk.lines:
            event = parse_event(line)
            if isinstance(event, SampleEvent):
                self.done += 1
                self.progressed.emit(self.done, self.total)
            elif isinstance(event, ErrorEvent):
                self._error = event.message
            elif isinstance(event, LogEvent) and event.level == "warning":
                self._warning = event.message

    def _on_finished(self, outcome: ProcessOutcome) -> None:
        ok = outcome.exit_code == 0 and not outcome.crashed and not self._error
        if ok and self.done < self.total:
            ok = False
            self._error = (f"{self.total - self.done} of {self.total} pictures could not be "
                           f"made: {self._warning or 'see the job log'}")
        if outcome.stop_intent is StopIntent.CANCEL:
            self._error = "Stopped: the pictures made so far are kept."
        elif not ok and not self._error:
            last = outcome.error or (outcome.tail[-1] if outcome.tail else "")
            self._error = f"The sample pictures could not be made ({last or 'exit code '}" \
                          f"{'' if last else outcome.exit_code})."
        self._end(ok)

    def _end(self, ok: bool) -> None:
        if self._ended:
            return
        self._ended = True
        self.finished.emit(ok, "" if ok else self._error)
